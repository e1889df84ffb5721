package feed

// The fast path decodes the canonical byte layouts that the partner sends and that
// AppendJSON and AppendRecordingLine write, without a JSON parser:
//
//	{"type":"QUOTE","data":{"isin":"DJ40J281M584","price":1365.25}}
//	{"type":"ADD","data":{"isin":"DJ40J281M584","description":"x y z"}}
//	{"type":"DELETE","data":{"isin":"DJ40J281M584","description":"x y z"}}
//	{"type":"DELETE","data":{"isin":"DJ40J281M584"}}
//
// and the same preceded by "ts" in a recorded line:
//
//	{"ts":"2026-11-26T13:00:01.25Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}
//
// It is an optimisation only: it either produces exactly the Message the general path
// (fastjson) would produce, or it declines and the caller runs the general path on the
// whole input. It declines anything unusual — whitespace, another key order, extra or
// repeated keys, escapes or control characters in strings, a timestamp not in UTC 'Z' form,
// trailing bytes, and every value it would reject — so all rejections, with their reasons
// and details, come from the general path alone.
//
// Why an accepted input decodes identically: the layout is matched byte for byte from the
// first to the last byte of the input, so the input is exactly one JSON object with the keys
// in the listed order, each present once (a repeated key would need more bytes than the
// layout has room for: string contents are checked to contain no '"'). String contents
// contain no backslash, so fastjson's string value is the raw bytes. The price bytes, ended
// by the final "}}", are accepted by ParsePrice only if they form a JSON number, which fastjson
// scans to exactly the same bytes (its number scan stops at the '}') and passes to
// ParsePrice unchanged.

// The fixed parts of the canonical layouts.
const (
	fastFramePrefix = `{"type":"`  // start of a partner frame
	fastTSPrefix    = `{"ts":"`    // start of a recorded line, before the timestamp
	fastTSToType    = `","type":"` // between the timestamp and the type
	fastQuoteHead   = `QUOTE","data":{"isin":"`
	fastAddHead     = `ADD","data":{"isin":"`
	fastDeleteHead  = `DELETE","data":{"isin":"`
	fastPriceKey    = `","price":`        // between the ISIN and the price
	fastDescKey     = `","description":"` // between the ISIN and the description
	fastNoDescEnd   = `"}}`               // after the ISIN of a DELETE without description, or after a description
	fastEnd         = `}}`                // after the price
)

// Bounds on the length of a timestamp in the recorder's form: "2006-01-02T15:04:05Z" plus
// an optional '.' and 1 to 9 fractional digits.
const (
	fastMinTSLen = len("2006-01-02T15:04:05Z")
	fastMaxTSLen = len("2006-01-02T15:04:05.999999999Z")
)

// decodeFrameFast decodes frame into m (all fields but TS) if it has one of the canonical
// layouts and is valid; it reports false, leaving m unchanged, for anything else.
func decodeFrameFast(frame []byte, m *Message) bool {
	if len(frame) < len(fastFramePrefix) || string(frame[:len(fastFramePrefix)]) != fastFramePrefix {
		return false
	}
	return decodeBodyFast(frame[len(fastFramePrefix):], m)
}

// decodeRecordedFast decodes line into m if it has one of the canonical recorded layouts
// and is valid, with "ts" in UTC ('Z') form; it reports false, leaving m unchanged, for
// anything else.
//
// Consecutive lines nearly always fall into the same minute, so d remembers the text of the
// last minute parsed ("2026-11-26T13:00") and its value, and then parses only the seconds
// and the fraction: the result is the same as parseRFC3339's, which is made of the same two
// steps.
func (d *Decoder) decodeRecordedFast(line []byte, m *Message) bool {
	if len(line) < len(fastTSPrefix) || string(line[:len(fastTSPrefix)]) != fastTSPrefix {
		return false
	}
	b := line[len(fastTSPrefix):]
	n := fastMinTSLen // the timestamp's closing quote comes after at least this many bytes
	for n < len(b) && n <= fastMaxTSLen && b[n] != '"' {
		n++
	}
	if n >= len(b) || n > fastMaxTSLen || b[n-1] != 'Z' {
		return false
	}
	// parseRFC3339Minute and parseRFC3339Rest accept only digits and "-:.Tt" before the 'Z',
	// so the bytes of an accepted timestamp contain no '"' or backslash and are fastjson's
	// string value as they are.
	tb := b[:n]
	minuteText := tb[:rfc3339MinuteLen]
	if !d.tsMinuteValid || string(minuteText) != string(d.tsMinuteText[:]) {
		minute, ok := parseRFC3339Minute(minuteText)
		if !ok {
			return false
		}
		copy(d.tsMinuteText[:], minuteText)
		d.tsMinute, d.tsMinuteValid = minute, true
	}
	ts, ok := parseRFC3339Rest(d.tsMinute, tb[rfc3339MinuteLen:])
	if !ok {
		return false
	}
	b = b[n:]
	if len(b) < len(fastTSToType) || string(b[:len(fastTSToType)]) != fastTSToType {
		return false
	}
	var tmp Message
	if !decodeBodyFast(b[len(fastTSToType):], &tmp) {
		return false
	}
	tmp.TS = ts
	*m = tmp
	return true
}

// decodeBodyFast decodes b, what follows `"type":"` up to the end of the input, into m
// (all fields but TS) if it has one of the canonical layouts and is valid; it reports false,
// leaving m unchanged, for anything else.
func decodeBodyFast(b []byte, m *Message) bool {
	var kind Kind
	switch {
	case len(b) >= len(fastQuoteHead) && string(b[:len(fastQuoteHead)]) == fastQuoteHead:
		kind, b = KindQuote, b[len(fastQuoteHead):]
	case len(b) >= len(fastAddHead) && string(b[:len(fastAddHead)]) == fastAddHead:
		kind, b = KindAdd, b[len(fastAddHead):]
	case len(b) >= len(fastDeleteHead) && string(b[:len(fastDeleteHead)]) == fastDeleteHead:
		kind, b = KindDelete, b[len(fastDeleteHead):]
	default:
		return false
	}
	if len(b) < ISINLen {
		return false
	}
	isin, ok := ParseISINBytes(b[:ISINLen])
	if !ok {
		return false
	}
	b = b[ISINLen:]

	if kind == KindQuote {
		// `","price":` NUMBER `}}` and nothing after.
		if len(b) < len(fastPriceKey)+1+len(fastEnd) || string(b[:len(fastPriceKey)]) != fastPriceKey ||
			string(b[len(b)-len(fastEnd):]) != fastEnd {
			return false
		}
		num := b[len(fastPriceKey) : len(b)-len(fastEnd)]
		if !isNumberText(num) {
			return false
		}
		price, err := ParsePrice(num)
		if err != nil {
			return false
		}
		m.Kind, m.ISIN, m.Price, m.Description = kind, isin, price, ""
		return true
	}

	if kind == KindDelete && string(b) == fastNoDescEnd {
		m.Kind, m.ISIN, m.Price, m.Description = kind, isin, 0, ""
		return true
	}
	// `","description":"` TEXT `"}}` and nothing after.
	if len(b) < len(fastDescKey)+len(fastNoDescEnd) || string(b[:len(fastDescKey)]) != fastDescKey ||
		string(b[len(b)-len(fastNoDescEnd):]) != fastNoDescEnd {
		return false
	}
	raw := b[len(fastDescKey) : len(b)-len(fastNoDescEnd)]
	for _, c := range raw {
		// '"' would end the string early (the rest would then be more JSON, perhaps a
		// repeated key), a backslash starts an escape; control characters are left to the
		// general path too.
		if c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	m.Kind, m.ISIN, m.Price, m.Description = kind, isin, 0, CleanDescription(raw)
	return true
}

// isNumberText reports whether b is made only of bytes that may appear in a JSON number. It
// keeps the fast path from building an error (which allocates) for a price it will hand to
// the general path anyway in the common cases ("1}}}", a string, null, …); ParsePrice
// checks the grammar.
func isNumberText(b []byte) bool {
	for _, c := range b {
		if !(isDigit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
			return false
		}
	}
	return true
}
