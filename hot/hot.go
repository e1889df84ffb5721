// Package hot detects hot instruments (SPEC §4.5): an aggregated quote is hot when its price
// differs from the reference price — the price of the latest quote of the same incarnation at
// or before ts − window — by more than a threshold percentage. An Event is emitted on every
// rising edge (a hot quote whose predecessor was not hot or had no reference), so a move that
// stays hot fires once.
//
// The package is pure logic: no I/O, no clock, no goroutines. Time is the int64 event time
// (Unix nanoseconds) passed with each quote, so replays and recovery are deterministic.
// The decision is exact: it is made on the integer micro-prices with 128-bit arithmetic and an
// exact decimal threshold; floating point never takes part in it.
//
// A Detector keeps, per incarnation, a sorted ring buffer of (ts, price) covering the window
// (plus a lateness allowance for out-of-order quotes and the newest entry before it, the
// reference candidate). Observe is O(1) amortised for quotes in time order; a quote that
// arrives out of time order costs time proportional to its displacement. The whole state can
// be snapshotted (AppendState) and restored (RestoreState) for crash-safe checkpoints.
package hot

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// Defaults of Options (SPEC §4.5: --hot-threshold 10, --hot-window 5m).
const (
	DefaultWindow = 5 * time.Minute
	// DefaultLateness is how far a quote may lag behind the newest quote of its incarnation
	// and still be evaluated exactly (see Options.Lateness).
	DefaultLateness = 30 * time.Second
)

// maxThresholdDecimals bounds the fractional digits of a Threshold so that 10^decimals fits a
// uint64 and the 128-bit comparison cannot overflow.
const maxThresholdDecimals = 18

// ErrThreshold is wrapped by every error of ParseThreshold.
var ErrThreshold = errors.New("invalid hot threshold")

// Threshold is an exact, positive decimal percentage, e.g. 10 or 7.5: the value is
// num / den with den = 10^decimals, normalised (no trailing fractional zeros) so that ==
// compares values. The zero value means "unset"; New replaces it with the default of 10.
type Threshold struct {
	num uint64
	den uint64
}

// DefaultThreshold returns the default threshold, 10 %.
func DefaultThreshold() Threshold { return Threshold{num: 10, den: 1} }

// ParseThreshold parses an exact decimal percentage: digits with an optional fractional part
// ("10", "7.5", "0.25", "10.000001"). It must be greater than zero; at most 18 fractional
// digits and 19 significant digits are accepted. Signs, exponents and "%" are rejected.
func ParseThreshold(s string) (Threshold, error) {
	var t Threshold
	if s == "" {
		return t, fmt.Errorf("%w: empty (want a decimal percentage like 10 or 7.5)", ErrThreshold)
	}
	seenDot, digits, frac := false, 0, 0
	var num uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && !seenDot:
			seenDot = true
		case c >= '0' && c <= '9':
			digits++
			if seenDot {
				frac++
			}
			if num == 0 && c == '0' && !seenDot {
				continue // leading zero
			}
			hi, lo := bits.Mul64(num, 10)
			lo, carry := bits.Add64(lo, uint64(c-'0'), 0)
			if hi != 0 || carry != 0 {
				return t, fmt.Errorf("%w: %q has too many digits", ErrThreshold, s)
			}
			num = lo
		default:
			return t, fmt.Errorf("%w: %q is not a decimal percentage like 10 or 7.5", ErrThreshold, s)
		}
	}
	if digits == 0 || (seenDot && frac == 0) {
		return t, fmt.Errorf("%w: %q is not a decimal percentage like 10 or 7.5", ErrThreshold, s)
	}
	for frac > 0 && num%10 == 0 && num != 0 {
		num /= 10
		frac--
	}
	if num == 0 {
		return t, fmt.Errorf("%w: %q must be greater than 0", ErrThreshold, s)
	}
	if frac > maxThresholdDecimals {
		return t, fmt.Errorf("%w: %q has more than %d decimals", ErrThreshold, s, maxThresholdDecimals)
	}
	den := uint64(1)
	for i := 0; i < frac; i++ {
		den *= 10
	}
	return Threshold{num: num, den: den}, nil
}

// IsZero reports whether t is the zero value (unset).
func (t Threshold) IsZero() bool { return t.num == 0 }

// AppendText appends the exact decimal form of t ("10", "7.5") to b.
func (t Threshold) AppendText(b []byte) []byte {
	if t.IsZero() {
		return append(b, '0')
	}
	digits := 0
	for d := t.den; d > 1; d /= 10 {
		digits++
	}
	return appendDecimal(b, false, t.num/t.den, t.num%t.den, digits)
}

// String returns the exact decimal form of t ("10", "7.5").
func (t Threshold) String() string { return string(t.AppendText(nil)) }

// MarshalText implements encoding.TextMarshaler.
func (t Threshold) MarshalText() ([]byte, error) { return t.AppendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseThreshold.
func (t *Threshold) UnmarshalText(b []byte) error { return t.Set(string(b)) }

// Set parses s with ParseThreshold into t; with Type and String, *Threshold satisfies
// pflag.Value, so it can be bound directly to a flag.
func (t *Threshold) Set(s string) error {
	v, err := ParseThreshold(s)
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Type names the flag value type for pflag help output.
func (t *Threshold) Type() string { return "percent" }

// Exceeds reports whether the move from reference r to price p is more than t percent,
// exactly (|p − r| × 100 > t × r), as the detector decides. The zero Threshold is exceeded
// by every move. r must be a valid price (positive).
func (t Threshold) Exceeds(p, r feed.Price) bool {
	if t.IsZero() {
		return true
	}
	if p <= 0 || r <= 0 || p > feed.MaxPrice || r > feed.MaxPrice {
		return false
	}
	return t.exceeded(int64(p), int64(r))
}

// exceeded reports whether |p − r| × 100 > t × r, exactly. r must be positive and |p − r|
// below 2^57 (any two valid prices).
func (t Threshold) exceeded(p, r int64) bool {
	d := p - r
	if d < 0 {
		d = -d
	}
	lh, ll := bits.Mul64(uint64(d)*100, t.den)
	rh, rl := bits.Mul64(t.num, uint64(r))
	return lh > rh || lh == rh && ll > rl
}

// Options configures a Detector. Use DefaultOptions and override fields.
type Options struct {
	// Threshold is the percentage a move must exceed to be hot (default 10; exactly the
	// threshold is not hot). The zero value means the default.
	Threshold Threshold
	// Window is how far back the reference quote lies (default 5m). Zero or negative means
	// the default.
	Window time.Duration
	// Lateness is how far a quote's ts may lag behind the newest ts of its incarnation and
	// still be evaluated exactly (default 30s; zero or negative means the default). The
	// detector keeps history for window + lateness. A quote later than that is still
	// recorded and evaluated against the history kept; if the quote its reference would be
	// has already been dropped, it counts as having no reference (no event).
	Lateness time.Duration
}

// DefaultOptions returns threshold 10 %, window 5 minutes, lateness 30 seconds.
func DefaultOptions() Options {
	return Options{Threshold: DefaultThreshold(), Window: DefaultWindow, Lateness: DefaultLateness}
}

// withDefaults fills unset fields.
func (o Options) withDefaults() Options {
	if o.Threshold.IsZero() {
		o.Threshold = DefaultThreshold()
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Lateness <= 0 {
		o.Lateness = DefaultLateness
	}
	return o
}

// Percent is a signed percentage rounded to six decimals (micro-percent), round half to
// even on the magnitude. It covers every ratio of two valid prices (up to ~10^17 %), which an
// int64 of micro-percent would not. The zero value is 0 %. Percents are comparable with ==.
type Percent struct {
	neg   bool
	whole uint64 // integer percent
	micro uint32 // millionths of a percent, 0 … 999,999
}

// Change returns (p − r) / r × 100 as a Percent, rounded to six decimals half to even.
// p and r must be valid prices (0 < price ≤ feed.MaxPrice); for anything else (e.g. a zero
// reference from malformed input) it returns 0 rather than dividing by zero.
func Change(p, r feed.Price) Percent {
	var out Percent
	if p <= 0 || r <= 0 || p > feed.MaxPrice || r > feed.MaxPrice {
		return out
	}
	d := int64(p) - int64(r)
	if d < 0 {
		out.neg = true
		d = -d
	}
	a, den := uint64(d)*100, uint64(r)
	out.whole, a = a/den, a%den
	hi, lo := bits.Mul64(a, 1_000_000)
	q, rem := bits.Div64(hi, lo, den) // hi < den because a < den
	if rem > den-rem || rem == den-rem && q%2 == 1 {
		q++
		if q == 1_000_000 {
			q = 0
			out.whole++
		}
	}
	out.micro = uint32(q)
	if out.whole == 0 && out.micro == 0 {
		out.neg = false
	}
	return out
}

// Sign returns −1, 0 or +1.
func (c Percent) Sign() int {
	switch {
	case c.whole == 0 && c.micro == 0:
		return 0
	case c.neg:
		return -1
	}
	return 1
}

// Micro returns the percentage in millionths of a percent (11.5 % → 11,500,000) and
// whether it fits an int64 (it does for any change up to ±9.2 × 10^12 %).
func (c Percent) Micro() (int64, bool) {
	hi, lo := bits.Mul64(c.whole, 1_000_000)
	lo, carry := bits.Add64(lo, uint64(c.micro), 0)
	if hi != 0 || carry != 0 || lo > 1<<63-1 {
		return 0, false
	}
	if c.neg {
		return -int64(lo), true
	}
	return int64(lo), true
}

// Float64 returns an approximation of the percentage for metrics and logs; never use it for
// decisions.
func (c Percent) Float64() float64 {
	f := float64(c.whole) + float64(c.micro)/1e6
	if c.neg {
		return -f
	}
	return f
}

// AppendText appends the decimal form with no trailing zeros ("11.5", "-10.000001", "12") to b.
func (c Percent) AppendText(b []byte) []byte {
	return appendDecimal(b, c.neg, c.whole, uint64(c.micro), 6)
}

// String returns the decimal form with no trailing zeros ("11.5", "-10.000001", "12").
func (c Percent) String() string { return string(c.AppendText(nil)) }

// MarshalJSON prints the percentage as a JSON number.
func (c Percent) MarshalJSON() ([]byte, error) { return c.AppendText(nil), nil }

// appendDecimal appends [-]whole[.frac] where frac has the given number of digits, trailing
// zeros removed.
func appendDecimal(b []byte, neg bool, whole, frac uint64, digits int) []byte {
	if neg {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, whole, 10)
	if frac == 0 {
		return b
	}
	var buf [20]byte
	for i := digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := digits
	for n > 0 && buf[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, buf[:n]...)
}

// Event is one rising edge: a quote that became hot (SPEC §4.5).
type Event struct {
	// ID is the WAL sequence of the triggering quote: stable across restarts and replays.
	ID uint64
	// ISIN is the instrument of the triggering quote.
	ISIN feed.ISIN
	// Incarnation is the incarnation (the WAL sequence of its ADD) of the instrument.
	Incarnation uint64
	// TS is the event time of the triggering quote, Unix nanoseconds UTC.
	TS int64
	// Price is the price of the triggering quote.
	Price feed.Price
	// ReferencePrice is the price of the reference quote.
	ReferencePrice feed.Price
	// ReferenceTS is the event time of the reference quote, Unix nanoseconds UTC.
	ReferenceTS int64
	// ChangePercent is (Price − ReferencePrice) / ReferencePrice × 100, rounded to six
	// decimals half to even (see Change). Its magnitude is strictly greater than the
	// threshold in exact arithmetic; after rounding it can print as the threshold itself
	// (e.g. 10.0000001 % prints as 10).
	ChangePercent Percent
}

// AppendJSON appends the SPEC §4.5 JSON object of e to b:
// {"id","isin","ts","price","referencePrice","referenceTs","changePercent"}, timestamps
// RFC 3339 with nanoseconds in UTC, prices and the change as exact JSON numbers.
func (e Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, e.ID, 10)
	b = append(b, `,"isin":"`...)
	b = append(b, e.ISIN[:]...)
	b = append(b, `","ts":"`...)
	b = time.Unix(0, e.TS).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","price":`...)
	b = e.Price.AppendText(b)
	b = append(b, `,"referencePrice":`...)
	b = e.ReferencePrice.AppendText(b)
	b = append(b, `,"referenceTs":"`...)
	b = time.Unix(0, e.ReferenceTS).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","changePercent":`...)
	b = e.ChangePercent.AppendText(b)
	return append(b, '}')
}

// MarshalJSON returns the SPEC §4.5 JSON object of e (see AppendJSON).
func (e Event) MarshalJSON() ([]byte, error) { return e.AppendJSON(make([]byte, 0, 192)), nil }
