package feed

import (
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Decoder decodes partner frames (SPEC §2) and recorded lines (SPEC §3) into Messages.
//
// A Decoder keeps its parse buffers between calls, so decoding a QUOTE allocates nothing in
// steady state; reuse one per goroutine. It is not safe for concurrent use. The zero value is
// ready to use.
//
// Frames and lines in the canonical layouts (fixed key order, no whitespace, no escapes; see
// fastpath.go) are decoded directly from their bytes; everything else goes through a full
// JSON parse. Both give the same result for every input.
//
// Decoding rules:
//   - the frame must be one JSON object (else ReasonMalformedJSON);
//   - "type" must be a string (else ReasonMissingField) naming ADD, DELETE or QUOTE, exactly
//     in upper case (else ReasonUnknownType);
//   - "data" must be an object with a string "isin" (else ReasonMissingField) that is a valid
//     ISIN (else ReasonBadISIN);
//   - QUOTE: "data.price" must be present (else ReasonMissingField) and a JSON number that
//     ParsePrice accepts (else ReasonBadPrice: strings, null and booleans included);
//   - ADD: "data.description" must be a string (else ReasonMissingField);
//   - DELETE: "data.description" may be absent or null (it is not needed to delete an
//     instrument) and then decodes as ""; when present otherwise it must be a string (else
//     ReasonMissingField);
//   - descriptions are cleaned (SPEC §14; see CleanDescription): each byte that is not part
//     of valid UTF-8 (as AppendJSONString does) and each control character — C0 (U+0000–
//     U+001F: NUL, ESC, tab and newline included), DEL and C1 (U+0080–U+009F) — is replaced
//     by U+FFFD, so that partner text can neither carry terminal escape sequences nor NUL
//     bytes downstream, and every decoded message re-encodes to itself;
//   - unknown fields, and fields that do not belong to the type (a QUOTE's description, an
//     ADD's price), are ignored.
type Decoder struct {
	// MaxSize rejects frames longer than MaxSize bytes with ReasonOversized; 0 means no
	// limit.
	MaxSize int

	p   fastjson.Parser
	num []byte // scratch for the text of the price

	// The minute of the last timestamp the fast path parsed: its text ("2026-11-26T13:00")
	// and its Unix seconds (see decodeRecordedFast).
	tsMinuteText  [rfc3339MinuteLen]byte
	tsMinute      int64
	tsMinuteValid bool
}

// NewDecoder returns a Decoder that rejects frames longer than maxSize bytes (0: no limit).
func NewDecoder(maxSize int) *Decoder { return &Decoder{MaxSize: maxSize} }

// Decode decodes one partner frame such as
//
//	{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}
//
// into m, setting Kind, ISIN, Price (0 unless a QUOTE) and Description ("" for a QUOTE).
// It does not touch m.TS. A rejected frame returns a *DecodeError and leaves m unchanged.
func (d *Decoder) Decode(frame []byte, m *Message) error {
	if (d.MaxSize <= 0 || len(frame) <= d.MaxSize) && decodeFrameFast(frame, m) {
		return nil
	}
	return d.decodeGeneral(frame, m)
}

// decodeGeneral is Decode without the fast path: the full JSON parse that every frame the
// fast path does not recognise goes through, and the reference the fast path is tested
// against.
func (d *Decoder) decodeGeneral(frame []byte, m *Message) error {
	if d.MaxSize > 0 && len(frame) > d.MaxSize {
		return oversized(len(frame), d.MaxSize)
	}
	o, err := d.parseObject(frame)
	if err != nil {
		return err
	}
	return d.decodeBody(o, m)
}

// DecodeRecorded decodes one recorded line (SPEC §3), without its line terminator: the
// partner message as for Decode plus "ts", an RFC 3339 timestamp (UTC or with an offset,
// which is converted to UTC; up to 9 fractional digits), stored in m.TS as Unix nanoseconds.
// A missing or invalid "ts" is rejected with ReasonBadTimestamp (checked before the rest of
// the message). A rejected line returns a *DecodeError and leaves m unchanged.
func (d *Decoder) DecodeRecorded(line []byte, m *Message) error {
	if (d.MaxSize <= 0 || len(line) <= d.MaxSize) && d.decodeRecordedFast(line, m) {
		return nil
	}
	return d.decodeRecordedGeneral(line, m)
}

// decodeRecordedGeneral is DecodeRecorded without the fast path (see decodeGeneral).
func (d *Decoder) decodeRecordedGeneral(line []byte, m *Message) error {
	if d.MaxSize > 0 && len(line) > d.MaxSize {
		return oversized(len(line), d.MaxSize)
	}
	o, err := d.parseObject(line)
	if err != nil {
		return err
	}
	tv := o.Get("ts")
	if tv == nil {
		return &DecodeError{Reason: ReasonBadTimestamp, Detail: `"ts" missing`}
	}
	if tv.Type() != fastjson.TypeString {
		return &DecodeError{Reason: ReasonBadTimestamp, Detail: `"ts" is ` + typeName(tv) + ", not a string"}
	}
	tb, _ := tv.StringBytes()
	ts, ok := parseRFC3339(tb)
	if !ok {
		return &DecodeError{Reason: ReasonBadTimestamp, Detail: `"ts" ` + quoteDetail(tb) + ": not an RFC 3339 time in range"}
	}
	var tmp Message
	if err := d.decodeBody(o, &tmp); err != nil {
		return err
	}
	tmp.TS = ts
	*m = tmp
	return nil
}

func oversized(n, limit int) *DecodeError {
	return &DecodeError{Reason: ReasonOversized, Detail: strconv.Itoa(n) + " bytes, limit " + strconv.Itoa(limit)}
}

// parseObject parses b as one JSON object.
func (d *Decoder) parseObject(b []byte) (*fastjson.Object, error) {
	v, err := d.p.ParseBytes(b)
	if err != nil {
		return nil, &DecodeError{Reason: ReasonMalformedJSON, Detail: err.Error()}
	}
	if v.Type() != fastjson.TypeObject {
		return nil, &DecodeError{Reason: ReasonMalformedJSON, Detail: "a JSON value that is " + typeName(v) + ", not an object"}
	}
	o, _ := v.Object()
	return o, nil
}

// decodeBody decodes "type" and "data" of the parsed object o into m (all fields but TS).
func (d *Decoder) decodeBody(o *fastjson.Object, m *Message) error {
	tv := o.Get("type")
	if tv == nil {
		return missing(`"type" missing`)
	}
	if tv.Type() != fastjson.TypeString {
		return missing(`"type" is ` + typeName(tv) + ", not a string")
	}
	tb, _ := tv.StringBytes()
	var kind Kind
	switch {
	case string(tb) == "QUOTE": // the comparison does not allocate
		kind = KindQuote
	case string(tb) == "ADD":
		kind = KindAdd
	case string(tb) == "DELETE":
		kind = KindDelete
	default:
		return &DecodeError{Reason: ReasonUnknownType, Detail: `"type" ` + quoteDetail(tb)}
	}
	dv := o.Get("data")
	if dv == nil {
		return missing(`"data" missing`)
	}
	if dv.Type() != fastjson.TypeObject {
		return missing(`"data" is ` + typeName(dv) + ", not an object")
	}
	data, _ := dv.Object()

	iv := data.Get("isin")
	if iv == nil {
		return missing(`"data.isin" missing`)
	}
	if iv.Type() != fastjson.TypeString {
		return missing(`"data.isin" is ` + typeName(iv) + ", not a string")
	}
	ib, _ := iv.StringBytes()
	isin, ok := ParseISINBytes(ib)
	if !ok {
		return &DecodeError{Reason: ReasonBadISIN, Detail: `"data.isin" ` + quoteDetail(ib) + ": not 12 characters [A-Z0-9]"}
	}

	switch kind {
	case KindQuote:
		pv := data.Get("price")
		if pv == nil {
			return missing(`"data.price" missing`)
		}
		if pv.Type() != fastjson.TypeNumber {
			return &DecodeError{Reason: ReasonBadPrice, Detail: `"data.price" is ` + typeName(pv) + ", not a number"}
		}
		d.num = pv.MarshalTo(d.num[:0]) // a number marshals to its exact source text
		price, err := ParsePrice(d.num)
		if err != nil {
			return err
		}
		m.Kind, m.ISIN, m.Price, m.Description = kind, isin, price, ""
		return nil
	default:
		var desc string
		dsv := data.Get("description")
		switch {
		case dsv == nil || dsv.Type() == fastjson.TypeNull:
			if kind == KindAdd {
				return missing(`"data.description" missing`)
			}
		case dsv.Type() != fastjson.TypeString:
			return missing(`"data.description" is ` + typeName(dsv) + ", not a string")
		default:
			db, _ := dsv.StringBytes()
			desc = CleanDescription(db)
		}
		m.Kind, m.ISIN, m.Price, m.Description = kind, isin, 0, desc
		return nil
	}
}

// typeName names the JSON type of v for error details: "a string", "null", …
func typeName(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeNull:
		return "null"
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeString:
		return "a string"
	default:
		return "a number"
	}
}

func missing(detail string) *DecodeError {
	return &DecodeError{Reason: ReasonMissingField, Detail: detail}
}

// CleanDescription returns the partner text b as a description: valid UTF-8 without control
// characters. Every byte that is not part of valid UTF-8 and every control character
// (Unicode category Cc: U+0000–U+001F, U+007F, U+0080–U+009F) is replaced by U+FFFD. The
// rule keeps the instrument (rejecting its ADD would drop all its quotes for a cosmetic
// fault) while making sure a description never reaches a terminal, a CSV file or a log with
// NUL bytes, escape sequences or line breaks in it. Clean text is returned unchanged.
func CleanDescription(b []byte) string {
	if isClean(b) {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if (r == utf8.RuneError && size == 1) || isControl(r) {
			out = append(out, "\ufffd"...)
		} else {
			out = append(out, b[i:i+size]...)
		}
		i += size
	}
	return string(out)
}

// isClean reports whether b is valid UTF-8 without control characters.
func isClean(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if (r == utf8.RuneError && size == 1) || isControl(r) {
			return false
		}
		i += size
	}
	return true
}

// isControl reports whether r is a control character (Unicode category Cc).
func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }

// Bounds, in Unix seconds, of the timestamps accepted: whole seconds whose nanoseconds
// (plus up to 999,999,999) fit in an int64 (1677-09-21 to 2262-04-11).
const (
	minTSSec = -9_223_372_036
	maxTSSec = 9_223_372_035
)

// parseRFC3339 parses an RFC 3339 date-time ("2026-11-26T13:00:01.25Z",
// "2026-11-26T14:00:01+01:00") into Unix nanoseconds UTC without allocating. It accepts 'T'
// or 't' and 'Z' or 'z' (RFC 3339 §5.6), 1 to 9 fractional digits, and rejects leap seconds
// and instants outside the int64 nanosecond range.
func parseRFC3339(b []byte) (int64, bool) {
	// YYYY-MM-DDTHH:MM:SS at least, plus a zone.
	if len(b) < 20 {
		return 0, false
	}
	minute, ok := parseRFC3339Minute(b[:rfc3339MinuteLen])
	if !ok {
		return 0, false
	}
	return parseRFC3339Rest(minute, b[rfc3339MinuteLen:])
}

// rfc3339MinuteLen is the length of the part of an RFC 3339 date-time up to the minute,
// "2026-11-26T13:00".
const rfc3339MinuteLen = 16

// parseRFC3339Minute parses the first rfc3339MinuteLen bytes of an RFC 3339 date-time,
// "2026-11-26T13:00", into the Unix seconds of the start of that minute, read as UTC (the
// zone offset comes later, see parseRFC3339Rest). b must have rfc3339MinuteLen bytes.
func parseRFC3339Minute(b []byte) (int64, bool) {
	if len(b) != rfc3339MinuteLen || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' {
		return 0, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return 0, false
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 {
		return 0, false
	}
	return daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60), true
}

// parseRFC3339Rest parses what follows the minute in an RFC 3339 date-time, ":01.25Z" or
// ":01+01:00", and returns the instant in Unix nanoseconds UTC, given the Unix seconds of
// the minute as parseRFC3339Minute returned them.
func parseRFC3339Rest(minute int64, b []byte) (int64, bool) {
	// :SS plus at least one byte of zone.
	if len(b) < 4 || b[0] != ':' {
		return 0, false
	}
	sec, ok := digits(b[1:3])
	if !ok || sec > 59 {
		return 0, false
	}
	rest := b[3:]
	var nanos int
	if rest[0] == '.' {
		k := 1
		for k < len(rest) && isDigit(rest[k]) {
			k++
		}
		nd := k - 1
		if nd < 1 || nd > 9 {
			return 0, false
		}
		nanos, _ = digits(rest[1:k])
		for j := nd; j < 9; j++ {
			nanos *= 10
		}
		rest = rest[k:]
	}
	var offset int // seconds east of UTC
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest[1:3])
		om, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, false
		}
		offset = oh*3600 + om*60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	unix := minute + int64(sec) - int64(offset)
	if unix < minTSSec || unix > maxTSSec {
		return 0, false
	}
	return unix*1e9 + int64(nanos), true
}

// daysFromCivil returns the number of days from 1970-01-01 to the valid proleptic Gregorian
// date year-month-day (as time.Date counts them), by H. Hinnant's days_from_civil: years
// start on March 1 so that the leap day comes last, and eras of 400 years have 146,097 days.
func daysFromCivil(year, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := year / 400
	if year < 0 {
		era = (year - 399) / 400
	}
	yoe := year - era*400                     // year of era, 0–399
	doy := (153*((month+9)%12)+2)/5 + day - 1 // day of the year starting March 1, 0–365
	doe := yoe*365 + yoe/4 - yoe/100 + doy    // day of era, 0–146096
	return int64(era)*146_097 + int64(doe) - 719_468
}

// digits parses b, all ASCII digits, as a non-negative int.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
