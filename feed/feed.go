// Package feed speaks the partner's protocol: the ADD/DELETE/QUOTE messages of the two
// websocket streams (SPEC §2), the recorded JSONL form of them (SPEC §3), exact fixed-point
// prices (SPEC §4.1), and the reasons a message is rejected (SPEC §8).
//
// Everything downstream (WAL, candles, hot detection) works on the types defined here:
// ISIN, Price, Kind and Message. Time is carried as int64 Unix nanoseconds (UTC) on the hot
// path; conversion to time.Time happens at the edges.
package feed

import (
	"strconv"
	"time"
)

// ISINLen is the length of an ISIN: 12 characters [A-Z0-9].
const ISINLen = 12

// ISIN is an instrument identifier: exactly 12 characters of [A-Z0-9]. The partner's ISINs
// are random (no check digit is verified). The zero value is not a valid ISIN.
type ISIN [ISINLen]byte

// String returns the 12-character ISIN.
func (i ISIN) String() string { return string(i[:]) }

// IsZero reports whether i is the zero value.
func (i ISIN) IsZero() bool { return i == ISIN{} }

// ParseISIN validates s as an ISIN.
func ParseISIN(s string) (ISIN, bool) { return parseISIN(s) }

// ParseISINBytes is ParseISIN for a byte slice; it does not allocate.
func ParseISINBytes(b []byte) (ISIN, bool) { return parseISIN(b) }

// parseISIN is on the decoding path of every message, so it has no branch per character:
// with letters and digits mixed at random, a test per character mispredicted about every
// other time (a third of the decoder's time); the base-36 table flags every invalid byte
// instead.
func parseISIN[T string | []byte](b T) (ISIN, bool) {
	var isin ISIN
	if len(b) != ISINLen {
		return isin, false
	}
	var bad byte
	for j := range ISINLen {
		c := b[j]
		bad |= base36[c]
		isin[j] = c
	}
	if bad&0x80 != 0 {
		return ISIN{}, false
	}
	return isin, true
}

// Price is a fixed-point price in micro-units: price × 1,000,000 (SPEC §4.1).
type Price int64

// PriceScale is the number of micro-units in one price unit.
const PriceScale = 1_000_000

// MaxPrice is the largest valid price (1,000,000,000 units). Valid prices satisfy
// 0 < p ≤ MaxPrice.
const MaxPrice Price = 1_000_000_000 * PriceScale

// String prints the exact decimal with no trailing zeros: 1365.25, 11, 0.000001.
func (p Price) String() string { return string(p.AppendText(nil)) }

// AppendText appends the exact decimal form of p to b.
func (p Price) AppendText(b []byte) []byte {
	v := int64(p)
	if v < 0 {
		b = append(b, '-')
		v = -v // MinInt64 cannot occur: prices are bounded
	}
	b = strconv.AppendInt(b, v/PriceScale, 10)
	frac := v % PriceScale
	if frac == 0 {
		return b
	}
	var digits [6]byte
	for i := 5; i >= 0; i-- {
		digits[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := 6
	for n > 0 && digits[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, digits[:n]...)
}

// MarshalJSON prints the price as an exact JSON number.
func (p Price) MarshalJSON() ([]byte, error) { return p.AppendText(nil), nil }

// Kind is the type of a partner message.
type Kind uint8

// The message kinds of the partner protocol. The numeric values are part of the WAL format
// and must never change.
const (
	KindAdd    Kind = 1 // an instrument became active
	KindDelete Kind = 2 // an instrument was removed
	KindQuote  Kind = 3 // a price for an active instrument
)

// String returns the protocol name of the kind ("ADD", "DELETE", "QUOTE").
func (k Kind) String() string {
	switch k {
	case KindAdd:
		return "ADD"
	case KindDelete:
		return "DELETE"
	case KindQuote:
		return "QUOTE"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// MaxDenseRef bounds the Refs that consumers index arrays by (Message.Ref): the ISINs of
// larger ones (a partner that sent over a million ISINs to one data directory) are looked
// up by hashing only, so that such an array stays within a few MiB.
const MaxDenseRef = 1 << 20

// Message is one decoded partner message, stamped with its arrival time.
type Message struct {
	// TS is the arrival time in Unix nanoseconds, UTC. Zero until stamped.
	TS   int64
	Kind Kind
	ISIN ISIN
	// Ref is a small dense number for ISIN plus one, zero when none is known: the id the
	// WAL's ISIN dictionary gave it (wal.Log.Append sets it on the messages it writes,
	// the WAL's readers on the records they return). It never changes for an ISIN in one
	// data directory, so consumers downstream may index arrays by it instead of hashing
	// the ISIN — as a hint only: they must check the ISIN they find there.
	Ref uint32
	// Price is set for KindQuote only.
	Price Price
	// Description is set for KindAdd and KindDelete.
	Description string
}

// Time returns TS as a UTC time.Time.
func (m *Message) Time() time.Time { return time.Unix(0, m.TS).UTC() }

// UnmarshalJSON parses an exact JSON number (see ParsePrice).
func (p *Price) UnmarshalJSON(b []byte) error {
	v, err := ParsePrice(b)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ArrivalResolution is the resolution of the arrival times a live ingest stamps (SPEC §2:
// quotes carry no timestamp; the receiver stamps each message with its arrival time).
// Milliseconds are the resolution of the partner's recordings, far below the jitter of an
// arrival over a network, and what the compact forms downstream expect: the hot detector's
// windows hold 8-byte points only for whole-millisecond times (16 bytes otherwise, which
// doubled a live ingest's memory) and the WAL's time deltas are shorter.
const ArrivalResolution = time.Millisecond

// ArrivalTime returns t as an arrival time: Unix nanoseconds, rounded down to a whole
// ArrivalResolution. Rounding down keeps every message in the minute it arrived in.
func ArrivalTime(t time.Time) int64 {
	ns := t.UnixNano()
	r := ns % int64(ArrivalResolution)
	if r < 0 {
		r += int64(ArrivalResolution)
	}
	return ns - r
}
