package feed

import "strconv"

// priceDigits is the number of decimal digits of MaxPrice in micro-units (1e15 has 16).
const priceDigits = 16

// maxExponent bounds the magnitude of a parsed exponent. Anything beyond it is certainly
// too large or rounds to zero, whatever the mantissa, since the mantissa's length is bounded
// by the frame size (far below this).
const maxExponent = 1 << 40

// ParsePrice converts the exact text of a JSON number (SPEC §4.1) to micro-units without
// going through float64. The text must follow the JSON number grammar: an optional '-', an
// integer part without leading zeros, an optional fraction, an optional exponent
// (1e2, 1.5E-3, 12345e-10). More than 6 decimals are rounded half to even. The rounded
// price must satisfy 0 < p ≤ MaxPrice.
//
// The work is linear in len(text) and nothing is allocated unless the text is rejected;
// absurd exponents (1e999999999) are rejected at once as too large or as rounding to zero.
// Every error is a *DecodeError with Reason ReasonBadPrice.
func ParsePrice(text []byte) (Price, error) {
	if p, ok := parsePlainPrice(text); ok {
		return p, nil
	}
	return parsePrice(text)
}

// parsePlainPrice is ParsePrice's fast path for the shape of nearly every price on the
// wire, an integer part of up to 10 digits and at most 6 decimals, without sign or
// exponent: the value is exact, no rounding. ok is false for anything else, including
// every text ParsePrice rejects, which takes the general path.
func parsePlainPrice(text []byte) (Price, bool) {
	var whole int64
	i := 0
	for i < len(text) && i <= 10 && isDigit(text[i]) {
		whole = whole*10 + int64(text[i]-'0')
		i++
	}
	if i == 0 || i > 10 || text[0] == '0' && i > 1 {
		return 0, false
	}
	micro := whole * PriceScale
	if i < len(text) {
		if text[i] != '.' {
			return 0, false
		}
		var frac int64
		j := i + 1
		for j < len(text) && j-i <= 6 && isDigit(text[j]) {
			frac = frac*10 + int64(text[j]-'0')
			j++
		}
		if j != len(text) || j-i-1 == 0 || j-i-1 > 6 {
			return 0, false
		}
		micro += frac * pow10[6-(j-i-1)]
	}
	if micro <= 0 || micro > int64(MaxPrice) {
		return 0, false
	}
	return Price(micro), true
}

// pow10 holds 10^k for k in 0..6.
var pow10 = [...]int64{1, 10, 100, 1_000, 10_000, 100_000, 1_000_000}

// parsePrice is ParsePrice's general path.
func parsePrice(text []byte) (Price, error) {
	// Grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
	i := 0
	neg := false
	if i < len(text) && text[i] == '-' {
		neg = true
		i++
	}
	intStart := i
	for i < len(text) && isDigit(text[i]) {
		i++
	}
	intEnd := i
	switch {
	case intEnd == intStart:
		return 0, priceError(text, "not a JSON number")
	case text[intStart] == '0' && intEnd-intStart > 1:
		return 0, priceError(text, "leading zero")
	}
	fracStart, fracEnd := i, i
	if i < len(text) && text[i] == '.' {
		i++
		fracStart = i
		for i < len(text) && isDigit(text[i]) {
			i++
		}
		fracEnd = i
		if fracEnd == fracStart {
			return 0, priceError(text, "no digits after the decimal point")
		}
	}
	var exp int64
	if i < len(text) && (text[i] == 'e' || text[i] == 'E') {
		i++
		expNeg := false
		if i < len(text) && (text[i] == '+' || text[i] == '-') {
			expNeg = text[i] == '-'
			i++
		}
		expStart := i
		for i < len(text) && isDigit(text[i]) {
			if exp < maxExponent {
				exp = exp*10 + int64(text[i]-'0')
			}
			i++
		}
		if i == expStart {
			return 0, priceError(text, "no digits in the exponent")
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(text) {
		return 0, priceError(text, "not a JSON number")
	}
	if neg {
		return 0, priceError(text, "not positive")
	}

	// The significant digits D are the integer and fraction digits without leading zeros;
	// the value is D × 10^(exp − len(fraction)), so the micro-units are D × 10^shift.
	digits := digitSeq{a: text[intStart:intEnd], b: text[fracStart:fracEnd]}
	lead := digits.leadingZeros()
	n := int64(digits.len() - lead)
	if n == 0 {
		return 0, priceError(text, "not positive")
	}
	shift := exp - int64(fracEnd-fracStart) + 6
	// keep is the number of leading significant digits forming the integral micro-units.
	keep := n + shift
	if keep > priceDigits {
		// At least 10^16 micro-units, whatever the rounding.
		return 0, priceError(text, "too large")
	}
	if keep < 0 {
		// Below 0.1 micro-units: rounds to zero.
		return 0, priceError(text, "rounds to zero")
	}
	var micro int64
	for k := int64(0); k < keep && k < n; k++ {
		micro = micro*10 + int64(digits.at(lead+int(k))-'0')
	}
	for k := n; k < keep; k++ { // trailing zeros implied by a positive shift
		micro *= 10
	}
	if keep < n {
		// Round half to even on the dropped digits.
		first := digits.at(lead + int(keep))
		roundUp := false
		switch {
		case first > '5':
			roundUp = true
		case first == '5':
			roundUp = micro%2 == 1 || digits.anyNonZero(lead+int(keep)+1)
		}
		if roundUp {
			micro++
		}
	}
	if micro == 0 {
		return 0, priceError(text, "rounds to zero")
	}
	if micro > int64(MaxPrice) {
		return 0, priceError(text, "too large")
	}
	return Price(micro), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digitSeq is the concatenation of two digit runs (integer and fraction part) without
// copying them.
type digitSeq struct{ a, b []byte }

func (d digitSeq) len() int { return len(d.a) + len(d.b) }

func (d digitSeq) at(k int) byte {
	if k < len(d.a) {
		return d.a[k]
	}
	return d.b[k-len(d.a)]
}

func (d digitSeq) leadingZeros() int {
	n := d.len()
	k := 0
	for k < n && d.at(k) == '0' {
		k++
	}
	return k
}

func (d digitSeq) anyNonZero(from int) bool {
	for k := from; k < d.len(); k++ {
		if d.at(k) != '0' {
			return true
		}
	}
	return false
}

// maxDetailText bounds how much of a rejected value is quoted in an error detail.
const maxDetailText = 40

func priceError(text []byte, why string) *DecodeError {
	return &DecodeError{Reason: ReasonBadPrice, Detail: "price " + quoteDetail(text) + ": " + why}
}

// quoteDetail quotes b for an error detail, shortened to maxDetailText bytes.
func quoteDetail(b []byte) string {
	if len(b) > maxDetailText {
		return strconv.Quote(string(b[:maxDetailText])) + "…"
	}
	return strconv.Quote(string(b))
}
