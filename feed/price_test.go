package feed

import (
	"encoding/json"
	"errors"
	"math/big"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParsePrice(t *testing.T) {
	type tc struct {
		in   string
		want Price  // micro-units when accepted
		err  string // substring of the detail when rejected
	}
	tests := []tc{
		// plain decimals
		{in: "1365.25", want: 1_365_250_000},
		{in: "11", want: 11_000_000},
		{in: "0.5", want: 500_000},
		{in: "0.000001", want: 1},
		{in: "100.1234", want: 100_123_400},
		{in: "1.000000", want: 1_000_000},
		{in: "1.0000000000000000000000000", want: 1_000_000},
		// half to even at the 7th decimal
		{in: "0.0000005", err: "rounds to zero"},
		{in: "0.00000050000000000001", want: 1},
		{in: "0.0000004999999999", err: "rounds to zero"},
		{in: "0.0000006", want: 1},
		{in: "0.0000015", want: 2},
		{in: "0.0000025", want: 2},
		{in: "0.0000035", want: 4},
		{in: "1.2345675", want: 1_234_568},
		{in: "1.23456750", want: 1_234_568},
		{in: "1.2345665", want: 1_234_566},
		{in: "1.23456650000", want: 1_234_566},
		{in: "1.23456650001", want: 1_234_567},
		{in: "1.2345664999", want: 1_234_566},
		{in: "2.5000005", want: 2_500_000},
		{in: "2.5000015", want: 2_500_002},
		{in: "0.0000005" + strings.Repeat("0", 5000) + "1", want: 1},
		{in: "0.00000001", err: "rounds to zero"},
		// exponents
		{in: "1e2", want: 100_000_000},
		{in: "1E2", want: 100_000_000},
		{in: "1E+2", want: 100_000_000},
		{in: "1e+02", want: 100_000_000},
		{in: "125e-2", want: 1_250_000},
		{in: "1.5E-3", want: 1_500},
		{in: "1.5e-7", err: "rounds to zero"},
		{in: "2.5e-7", err: "rounds to zero"},
		{in: "2.51e-7", err: "rounds to zero"}, // 0.251 micro-units
		{in: "5.1e-7", want: 1},
		{in: "5e-7", err: "rounds to zero"},
		{in: "15e-7", want: 2},
		{in: "12345e-10", want: 1},
		{in: "0.1e10", want: MaxPrice},
		{in: "10000000000e-1", want: MaxPrice},
		{in: "0.00001365250e8", want: 1_365_250_000},
		{in: "1e-6", want: 1},
		{in: "0e0", err: "not positive"},
		{in: "1e0", want: 1_000_000},
		{in: "1e-0", want: 1_000_000},
		// absurd exponents: fast rejections
		{in: "1e999999999", err: "too large"},
		{in: "1e99999999999999999999999999999999", err: "too large"},
		{in: "1e-999999999", err: "rounds to zero"},
		{in: "1e-99999999999999999999999999999999", err: "rounds to zero"},
		{in: "0e999999999999", err: "not positive"},
		{in: "0.000e-99999999999999999999", err: "not positive"},
		// zero, negative
		{in: "0", err: "not positive"},
		{in: "0.0", err: "not positive"},
		{in: "-0", err: "not positive"},
		{in: "-0.0", err: "not positive"},
		{in: "-1", err: "not positive"},
		{in: "-1365.25", err: "not positive"},
		{in: "-1e999999999", err: "not positive"},
		// the upper bound
		{in: "1000000000", want: MaxPrice},
		{in: "1e9", want: MaxPrice},
		{in: "1000000000.000000", want: MaxPrice},
		{in: "1000000000.0000001", want: MaxPrice},
		{in: "1000000000.0000005", want: MaxPrice}, // tie, 1e15 is even
		{in: "1000000000.00000051", err: "too large"},
		{in: "1000000000.000001", err: "too large"},
		{in: "999999999.9999995", want: MaxPrice}, // tie, …999 odd → up
		{in: "999999999.999999", want: MaxPrice - 1},
		{in: "1000000001", err: "too large"},
		{in: "1e10", err: "too large"},
		{in: "99999999999999999999", err: "too large"},
		{in: "9223372036854775807", err: "too large"},
		{in: "18446744073709551617", err: "too large"},
		// not JSON numbers
		{in: "", err: "not a JSON number"},
		{in: "-", err: "not a JSON number"},
		{in: "+1", err: "not a JSON number"},
		{in: "01", err: "leading zero"},
		{in: "00.5", err: "leading zero"},
		{in: "-01", err: "leading zero"},
		{in: ".5", err: "not a JSON number"},
		{in: "5.", err: "no digits after the decimal point"},
		{in: "5.e3", err: "no digits after the decimal point"},
		{in: "1e", err: "no digits in the exponent"},
		{in: "1e+", err: "no digits in the exponent"},
		{in: "1.2.3", err: "not a JSON number"},
		{in: "--1", err: "not a JSON number"},
		{in: "1 ", err: "not a JSON number"},
		{in: " 1", err: "not a JSON number"},
		{in: "0x10", err: "not a JSON number"},
		{in: "1_000", err: "not a JSON number"},
		{in: "NaN", err: "not a JSON number"},
		{in: "nan", err: "not a JSON number"},
		{in: "inf", err: "not a JSON number"},
		{in: "-Infinity", err: "not a JSON number"},
		{in: `"1"`, err: "not a JSON number"},
		{in: "null", err: "not a JSON number"},
		{in: "true", err: "not a JSON number"},
		{in: "１", err: "not a JSON number"}, // fullwidth digit
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			got, err := ParsePrice([]byte(tt.in))
			if tt.err != "" {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("ParsePrice(%q) = %d, %v; want a *DecodeError", tt.in, got, err)
				}
				if de.Reason != ReasonBadPrice || !strings.Contains(de.Detail, tt.err) {
					t.Fatalf("ParsePrice(%q) error = %q (%s); want bad_price containing %q", tt.in, de.Detail, de.Reason, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePrice(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
			if ref, ok, known := refParsePrice(tt.in); !known || !ok || ref != got {
				t.Fatalf("reference for %q = %d, %v; ParsePrice gave %d", tt.in, ref, ok, got)
			}
		})
	}
}

func TestParsePriceAbsurdIsFast(t *testing.T) {
	in := []byte("1e" + strings.Repeat("9", 1<<20))
	start := time.Now()
	allocs := testing.AllocsPerRun(3, func() { _, _ = ParsePrice(in) })
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("ParsePrice of a 1 MiB exponent took %v", d)
	}
	// The rejection allocates its error (and the quoted detail), not in proportion to the
	// input.
	if allocs > 10 {
		t.Fatalf("ParsePrice of a 1 MiB exponent: %v allocations", allocs)
	}
}

func TestPriceStringExact(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"1365.25", "1365.25"},
		{"11", "11"},
		{"11.000000", "11"},
		{"1e2", "100"},
		{"0.000001", "0.000001"},
		{"0.1", "0.1"},
		{"1000000000", "1000000000"},
		{"1.2345675", "1.234568"},
		{"100.1234", "100.1234"},
	}
	for _, tt := range tests {
		p, err := ParsePrice([]byte(tt.in))
		if err != nil {
			t.Fatalf("ParsePrice(%q): %v", tt.in, err)
		}
		if got := p.String(); got != tt.want {
			t.Errorf("ParsePrice(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		q, err := ParsePrice([]byte(p.String()))
		if err != nil || q != p {
			t.Errorf("re-parse of %q = %d, %v; want %d", p.String(), q, err, p)
		}
	}
}

// TestParsePriceAgainstReference compares ParsePrice with an independent big.Rat
// implementation on random numbers around the rounding digit and the bounds.
func TestParsePriceAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for i := 0; i < n; i++ {
		s := randomNumber(rng)
		got, err := ParsePrice([]byte(s))
		ref, ok, _ := refParsePrice(s)
		if ok != (err == nil) || (ok && got != ref) {
			t.Fatalf("ParsePrice(%q) = %d, %v; reference %d, %v", s, got, err, ref, ok)
		}
	}
}

// TestPlainPriceMatchesGeneral: whenever the fast path takes a text, the general path
// gives the same price (random numbers, and edge cases of the fast path's shape).
func TestPlainPriceMatchesGeneral(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	texts := []string{"0", "0.1", "0.000001", "0.0000001", "1", "1.", ".1", "01", "01.5", "00",
		"1000000000", "1000000000.000001", "999999999.999999", "9999999999", "10000000000",
		"12.1234567", "12.123456", "12.12345e1", "12e1", "-1", "1.5.5", "1..5", "1a", " 1", "1 "}
	for i := 0; i < 50000; i++ {
		texts = append(texts, randomNumber(rng))
	}
	taken := 0
	for _, s := range texts {
		fast, ok := parsePlainPrice([]byte(s))
		if !ok {
			continue
		}
		taken++
		general, err := parsePrice([]byte(s))
		if err != nil || general != fast {
			t.Fatalf("%q: fast path %d, general path %d, %v", s, fast, general, err)
		}
	}
	if taken < len(texts)/10 {
		t.Fatalf("the fast path took only %d of %d texts", taken, len(texts))
	}
}

func randomNumber(rng *rand.Rand) string {
	var b strings.Builder
	if rng.Intn(10) == 0 {
		b.WriteByte('-')
	}
	switch rng.Intn(4) {
	case 0:
		b.WriteByte('0')
	default:
		b.WriteByte(byte('1' + rng.Intn(9)))
		for k := rng.Intn(11); k > 0; k-- {
			b.WriteByte(byte('0' + rng.Intn(10)))
		}
	}
	if rng.Intn(3) > 0 {
		b.WriteByte('.')
		for k := 1 + rng.Intn(12); k > 0; k-- {
			// Favour 0, 5 and 9 to hit ties and carries.
			b.WriteByte("0123456789055599"[rng.Intn(16)])
		}
	}
	if rng.Intn(3) == 0 {
		b.WriteByte("eE"[rng.Intn(2)])
		b.WriteString([]string{"", "+", "-"}[rng.Intn(3)])
		b.WriteString(strconv.Itoa(rng.Intn(20)))
	}
	return b.String()
}

// refParsePrice is the reference: JSON grammar via encoding/json, exact value via big.Rat,
// round half to even, range check. known is false for inputs with huge exponents, which
// big.Rat would choke on.
func refParsePrice(s string) (p Price, ok, known bool) {
	if !json.Valid([]byte(s)) || len(s) == 0 || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') {
		return 0, false, true
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || e > 1000 || e < -1000 {
			return 0, false, false
		}
	}
	r, valid := new(big.Rat).SetString(s)
	if !valid {
		return 0, false, true
	}
	r.Mul(r, big.NewRat(PriceScale, 1))
	if r.Sign() <= 0 {
		return 0, false, true
	}
	q, rem := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	switch new(big.Int).Lsh(rem, 1).Cmp(r.Denom()) {
	case 1:
		q.Add(q, big.NewInt(1))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(1))
		}
	}
	if q.Sign() <= 0 || q.Cmp(big.NewInt(int64(MaxPrice))) > 0 {
		return 0, false, true
	}
	return Price(q.Int64()), true, true
}

func FuzzParsePrice(f *testing.F) {
	for _, s := range []string{
		"1365.25", "11", "0", "-0", "-1", "0.0000005", "0.0000015", "0.0000025", "1.23456750",
		"1e2", "1E+2", "125e-2", "1.5e-7", "12345e-10", "1e999999999", "1e-999999999",
		"1000000000", "1000000000.0000005", "1000000000.000001", "999999999.9999995",
		"01", ".5", "5.", "1e", "NaN", "inf", `"1"`, "null", "true", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := ParsePrice(in)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != ReasonBadPrice {
				t.Fatalf("ParsePrice(%q): error %v is not a bad_price *DecodeError", in, err)
			}
			if ref, ok, _ := refParsePrice(string(in)); ok {
				t.Fatalf("ParsePrice(%q) rejected (%v); reference accepts %d", in, err, ref)
			}
			return
		}
		if p <= 0 || p > MaxPrice {
			t.Fatalf("ParsePrice(%q) = %d, out of range", in, p)
		}
		if !json.Valid(in) {
			t.Fatalf("ParsePrice(%q) accepted invalid JSON", in)
		}
		s := p.String()
		q, err := ParsePrice([]byte(s))
		if err != nil || q != p {
			t.Fatalf("ParsePrice(%q) = %d prints %q which re-parses to %d, %v", in, p, s, q, err)
		}
		if ref, ok, known := refParsePrice(string(in)); known && (!ok || ref != p) {
			t.Fatalf("ParsePrice(%q) = %d; reference %d, %v", in, p, ref, ok)
		}
	})
}

func TestArrivalTime(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(1, 999_999), 1_000_000_000},
		{time.Unix(1, 1_000_000), 1_001_000_000},
		{time.Unix(1, 1_999_999), 1_001_000_000},
		{time.Unix(0, -1), -1_000_000},
		{time.Unix(0, -1_000_000), -1_000_000},
		{time.Unix(0, -1_000_001), -2_000_000},
	} {
		if got := ArrivalTime(tc.in); got != tc.want {
			t.Errorf("ArrivalTime(%d ns) = %d, want %d", tc.in.UnixNano(), got, tc.want)
		}
	}
}
