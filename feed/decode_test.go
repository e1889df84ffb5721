package feed

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func mustISIN(s string) ISIN {
	i, ok := ParseISIN(s)
	if !ok {
		panic("bad test ISIN " + s)
	}
	return i
}

// decodeCase is a frame and how Decode must decode it.
type decodeCase struct {
	name   string
	frame  string
	want   Message
	reason Reason
}

// decodeCases is the table of TestDecode, shared with the fast path tests.
func decodeCases() []decodeCase {
	isin := mustISIN("LS342I184454")
	return []decodeCase{
		{name: "quote", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}`,
			want: Message{Kind: KindQuote, ISIN: isin, Price: 1_365_250_000}},
		{name: "quote integer", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":11}}`,
			want: Message{Kind: KindQuote, ISIN: isin, Price: 11_000_000}},
		{name: "quote exponent", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":1.5E+3}}`,
			want: Message{Kind: KindQuote, ISIN: isin, Price: 1_500_000_000}},
		{name: "quote whitespace and order", frame: " {\n\t\"data\" : { \"price\" : 2 , \"isin\" : \"LS342I184454\" } , \"type\" : \"QUOTE\" } \r\n",
			want: Message{Kind: KindQuote, ISIN: isin, Price: 2_000_000}},
		{name: "quote extra fields ignored", frame: `{"type":"QUOTE","seq":7,"data":{"isin":"LS342I184454","price":3,"description":"x","extra":[1,{"a":null}]}}`,
			want: Message{Kind: KindQuote, ISIN: isin, Price: 3_000_000}},
		{name: "quote escaped isin", frame: `{"type":"QUOTE","data":{"isin":"\u004cS342I184454","price":1}}`,
			want: Message{Kind: KindQuote, ISIN: isin, Price: 1_000_000}},
		{name: "quote escaped key", frame: `{"typ\u0065":"QUOTE","data":{"isin":"LS342I184454","price":1}}`,
			want: Message{Kind: KindQuote, ISIN: isin, Price: 1_000_000}},
		{name: "add", frame: `{"type":"ADD","data":{"isin":"LS342I184454","description":"elementum eos accumsan"}}`,
			want: Message{Kind: KindAdd, ISIN: isin, Description: "elementum eos accumsan"}},
		{name: "add escapes and unicode", frame: `{"type":"ADD","data":{"isin":"LS342I184454","description":"a \"b\"\n\u00e9 \ud83d\ude00 ü"}}`,
			want: Message{Kind: KindAdd, ISIN: isin, Description: "a \"b\"\ufffd\u00e9 \U0001F600 ü"}},
		{name: "add empty description", frame: `{"type":"ADD","data":{"isin":"LS342I184454","description":""}}`,
			want: Message{Kind: KindAdd, ISIN: isin}},
		{name: "add invalid utf8 description", frame: "{\"type\":\"ADD\",\"data\":{\"isin\":\"LS342I184454\",\"description\":\"a\xffb\"}}",
			want: Message{Kind: KindAdd, ISIN: isin, Description: "a\uFFFDb"}},
		{name: "add price ignored", frame: `{"type":"ADD","data":{"isin":"LS342I184454","description":"d","price":-1}}`,
			want: Message{Kind: KindAdd, ISIN: isin, Description: "d"}},
		{name: "delete", frame: `{"type":"DELETE","data":{"isin":"LS342I184454","description":"elementum eos accumsan"}}`,
			want: Message{Kind: KindDelete, ISIN: isin, Description: "elementum eos accumsan"}},
		{name: "delete without description", frame: `{"type":"DELETE","data":{"isin":"LS342I184454"}}`,
			want: Message{Kind: KindDelete, ISIN: isin}},
		{name: "delete null description", frame: `{"type":"DELETE","data":{"isin":"LS342I184454","description":null}}`,
			want: Message{Kind: KindDelete, ISIN: isin}},

		// malformed_json
		{name: "empty", frame: ``, reason: ReasonMalformedJSON},
		{name: "blank", frame: "  \n", reason: ReasonMalformedJSON},
		{name: "truncated", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":1`, reason: ReasonMalformedJSON},
		{name: "trailing garbage", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":1}}x`, reason: ReasonMalformedJSON},
		{name: "two objects", frame: `{"type":"QUOTE"}{"type":"QUOTE"}`, reason: ReasonMalformedJSON},
		{name: "array", frame: `[{"type":"QUOTE"}]`, reason: ReasonMalformedJSON},
		{name: "string", frame: `"QUOTE"`, reason: ReasonMalformedJSON},
		{name: "number", frame: `1`, reason: ReasonMalformedJSON},
		{name: "null", frame: `null`, reason: ReasonMalformedJSON},
		{name: "single quotes", frame: `{'type':'QUOTE'}`, reason: ReasonMalformedJSON},
		{name: "binary", frame: "\x00\x01\x02", reason: ReasonMalformedJSON},
		{name: "deep nesting", frame: strings.Repeat("[", 100000), reason: ReasonMalformedJSON},

		// missing_field
		{name: "no type", frame: `{"data":{"isin":"LS342I184454","price":1}}`, reason: ReasonMissingField},
		{name: "type null", frame: `{"type":null,"data":{"isin":"LS342I184454","price":1}}`, reason: ReasonMissingField},
		{name: "type number", frame: `{"type":3,"data":{"isin":"LS342I184454","price":1}}`, reason: ReasonMissingField},
		{name: "no data", frame: `{"type":"QUOTE"}`, reason: ReasonMissingField},
		{name: "data string", frame: `{"type":"QUOTE","data":"LS342I184454"}`, reason: ReasonMissingField},
		{name: "data array", frame: `{"type":"QUOTE","data":[]}`, reason: ReasonMissingField},
		{name: "no isin", frame: `{"type":"QUOTE","data":{"price":1}}`, reason: ReasonMissingField},
		{name: "isin number", frame: `{"type":"QUOTE","data":{"isin":342184454,"price":1}}`, reason: ReasonMissingField},
		{name: "isin null", frame: `{"type":"ADD","data":{"isin":null,"description":"d"}}`, reason: ReasonMissingField},
		{name: "no price", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454"}}`, reason: ReasonMissingField},
		{name: "add no description", frame: `{"type":"ADD","data":{"isin":"LS342I184454"}}`, reason: ReasonMissingField},
		{name: "add null description", frame: `{"type":"ADD","data":{"isin":"LS342I184454","description":null}}`, reason: ReasonMissingField},
		{name: "add number description", frame: `{"type":"ADD","data":{"isin":"LS342I184454","description":12}}`, reason: ReasonMissingField},
		{name: "delete object description", frame: `{"type":"DELETE","data":{"isin":"LS342I184454","description":{}}}`, reason: ReasonMissingField},
		{name: "nested type only", frame: `{"data":{"type":"QUOTE","isin":"LS342I184454","price":1}}`, reason: ReasonMissingField},

		// unknown_type
		{name: "lowercase type", frame: `{"type":"quote","data":{"isin":"LS342I184454","price":1}}`, reason: ReasonUnknownType},
		{name: "other type", frame: `{"type":"TRADE","data":{"isin":"LS342I184454","price":1}}`, reason: ReasonUnknownType},
		{name: "empty type", frame: `{"type":"","data":{"isin":"LS342I184454","price":1}}`, reason: ReasonUnknownType},
		{name: "padded type", frame: `{"type":"QUOTE ","data":{"isin":"LS342I184454","price":1}}`, reason: ReasonUnknownType},
		{name: "unknown type wins over missing data", frame: `{"type":"HELLO"}`, reason: ReasonUnknownType},

		// bad_isin
		{name: "lowercase isin", frame: `{"type":"QUOTE","data":{"isin":"ls342i184454","price":1}}`, reason: ReasonBadISIN},
		{name: "11 chars", frame: `{"type":"QUOTE","data":{"isin":"LS342I18445","price":1}}`, reason: ReasonBadISIN},
		{name: "13 chars", frame: `{"type":"QUOTE","data":{"isin":"LS342I1844545","price":1}}`, reason: ReasonBadISIN},
		{name: "empty isin", frame: `{"type":"ADD","data":{"isin":"","description":"d"}}`, reason: ReasonBadISIN},
		{name: "unicode isin", frame: `{"type":"QUOTE","data":{"isin":"LS342I18445Ä","price":1}}`, reason: ReasonBadISIN},
		{name: "fullwidth isin", frame: `{"type":"QUOTE","data":{"isin":"ＬS342I18445","price":1}}`, reason: ReasonBadISIN},
		{name: "isin with space", frame: `{"type":"DELETE","data":{"isin":"LS342 184454"}}`, reason: ReasonBadISIN},
		{name: "isin with NUL", frame: `{"type":"QUOTE","data":{"isin":"LS342I18445\u0000","price":1}}`, reason: ReasonBadISIN},

		// bad_price
		{name: "price zero", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":0}}`, reason: ReasonBadPrice},
		{name: "price negative zero", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":-0}}`, reason: ReasonBadPrice},
		{name: "price negative", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":-1365.25}}`, reason: ReasonBadPrice},
		{name: "price rounds to zero", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":0.0000005}}`, reason: ReasonBadPrice},
		{name: "price too large", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":1000000000.000001}}`, reason: ReasonBadPrice},
		{name: "price absurd exponent", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":1e999999999}}`, reason: ReasonBadPrice},
		{name: "price string", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":"1365.25"}}`, reason: ReasonBadPrice},
		{name: "price null", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":null}}`, reason: ReasonBadPrice},
		{name: "price true", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":true}}`, reason: ReasonBadPrice},
		{name: "price false", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":false}}`, reason: ReasonBadPrice},
		{name: "price object", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":{"v":1}}}`, reason: ReasonBadPrice},
		{name: "price array", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":[1]}}`, reason: ReasonBadPrice},
		{name: "price NaN", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":NaN}}`, reason: ReasonBadPrice},
		{name: "price inf", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":inf}}`, reason: ReasonBadPrice},
		{name: "price -Inf", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":-Inf}}`, reason: ReasonBadPrice},
		{name: "price leading zero", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":01}}`, reason: ReasonBadPrice},
		{name: "price plus", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":+1}}`, reason: ReasonBadPrice},
		{name: "price two dots", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":1.2.3}}`, reason: ReasonBadPrice},
		{name: "price hex", frame: `{"type":"QUOTE","data":{"isin":"LS342I184454","price":0x10}}`, reason: ReasonMalformedJSON},
	}
}

func TestDecode(t *testing.T) {
	tests := decodeCases()
	var d Decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sentinel := Message{TS: 42, Kind: KindDelete, ISIN: mustISIN("ZZZZZZZZZZZZ"), Price: 7, Description: "old"}
			m := sentinel
			err := d.Decode([]byte(tt.frame), &m)
			if tt.reason != "" {
				var de *DecodeError
				if !errors.As(err, &de) || de.Reason != tt.reason {
					t.Fatalf("Decode(%q) = %v; want reason %s", tt.frame, err, tt.reason)
				}
				if de.Detail == "" || de.Line != 0 {
					t.Fatalf("Decode(%q) error %+v: want a detail and no line", tt.frame, de)
				}
				if m != sentinel {
					t.Fatalf("Decode(%q) rejected but changed the message to %+v", tt.frame, m)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.frame, err)
			}
			want := tt.want
			want.TS = 42 // untouched
			if m != want {
				t.Fatalf("Decode(%q) = %+v; want %+v", tt.frame, m, want)
			}
		})
	}
}

func TestDecodeOversized(t *testing.T) {
	frame := []byte(`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}`)
	d := NewDecoder(len(frame))
	var m Message
	if err := d.Decode(frame, &m); err != nil {
		t.Fatalf("frame of exactly MaxSize: %v", err)
	}
	d.MaxSize = len(frame) - 1
	err := d.Decode(frame, &m)
	var de *DecodeError
	if !errors.As(err, &de) || de.Reason != ReasonOversized {
		t.Fatalf("frame over MaxSize: %v; want oversized", err)
	}
	err = d.DecodeRecorded(append([]byte(`{"ts":"2026-11-26T13:00:01Z",`), frame[1:]...), &m)
	if !errors.As(err, &de) || de.Reason != ReasonOversized {
		t.Fatalf("line over MaxSize: %v; want oversized", err)
	}
}

// recordedTSCase is a value of "ts" and how DecodeRecorded must decode it in front of
// recordedTSBody.
type recordedTSCase struct {
	ts     string // the raw JSON value of "ts", "" for none
	want   time.Time
	reason Reason
}

// recordedTSBody is the message that follows "ts" in the recordedTSCases.
const recordedTSBody = `"type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}`

// recordedTSCases is the table of TestDecodeRecorded, shared with the fast path tests.
func recordedTSCases() []recordedTSCase {
	base := time.Date(2026, 11, 26, 13, 0, 1, 0, time.UTC)
	return []recordedTSCase{
		{ts: `"2026-11-26T13:00:01Z"`, want: base},
		{ts: `"2026-11-26T13:00:01.250Z"`, want: base.Add(250 * time.Millisecond)},
		{ts: `"2026-11-26T13:00:01.5Z"`, want: base.Add(500 * time.Millisecond)},
		{ts: `"2026-11-26T13:00:01.123456789Z"`, want: base.Add(123456789)},
		{ts: `"2026-11-26T13:00:01.000000001Z"`, want: base.Add(1)},
		{ts: `"2026-11-26T14:00:01+01:00"`, want: base},
		{ts: `"2026-11-26T08:30:01.5-04:30"`, want: base.Add(500 * time.Millisecond)},
		{ts: `"2026-11-27T00:00:01+11:00"`, want: base},
		{ts: `"2026-11-26T13:00:01+00:00"`, want: base},
		{ts: `"2026-11-26t13:00:01z"`, want: base},
		{ts: `"2024-02-29T00:00:00Z"`, want: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{ts: `"2000-02-29T00:00:00Z"`, want: time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC)},
		{ts: `"1970-01-01T00:00:00Z"`, want: time.Unix(0, 0)},
		{ts: `"1969-12-31T23:59:59.999999999Z"`, want: time.Unix(0, -1)},
		{ts: `"2262-04-11T23:47:15Z"`, want: time.Unix(9_223_372_035, 0)},
		{ts: `"1677-09-21T00:12:44Z"`, want: time.Unix(-9_223_372_036, 0)},
		{ts: `"2026-11-26T13:00:01.2\u0035Z"`, want: base.Add(250 * time.Millisecond)},

		{ts: ``, reason: ReasonBadTimestamp},
		{ts: `null`, reason: ReasonBadTimestamp},
		{ts: `1795957201`, reason: ReasonBadTimestamp},
		{ts: `""`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26T13:00:01"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26 13:00:01Z"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26T13:00:01.Z"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26T13:00:01.1234567891Z"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26T13:00:01ZZ"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26T13:00:01+0100"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26T13:00:01+24:00"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26T13:00:60Z"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26T24:00:00Z"`, reason: ReasonBadTimestamp},
		{ts: `"2026-13-26T13:00:01Z"`, reason: ReasonBadTimestamp},
		{ts: `"2026-00-26T13:00:01Z"`, reason: ReasonBadTimestamp},
		{ts: `"2026-02-29T13:00:01Z"`, reason: ReasonBadTimestamp},
		{ts: `"1900-02-29T13:00:01Z"`, reason: ReasonBadTimestamp},
		{ts: `"2026-04-31T13:00:01Z"`, reason: ReasonBadTimestamp},
		{ts: `"2026-11-26T13:00:0xZ"`, reason: ReasonBadTimestamp},
		{ts: `"+2026-11-26T13:00:01Z"`, reason: ReasonBadTimestamp},
		{ts: `"9999-12-31T23:59:59Z"`, reason: ReasonBadTimestamp}, // beyond int64 nanoseconds
		{ts: `"0001-01-01T00:00:00Z"`, reason: ReasonBadTimestamp},
		{ts: `"2262-04-11T23:47:17Z"`, reason: ReasonBadTimestamp},
	}
}

func TestDecodeRecorded(t *testing.T) {
	const body = recordedTSBody
	tests := recordedTSCases()
	var d Decoder
	for _, tt := range tests {
		t.Run(tt.ts, func(t *testing.T) {
			line := "{" + body + "}"
			if tt.ts != "" {
				line = `{"ts":` + tt.ts + "," + body + "}"
			}
			m := Message{TS: 7}
			err := d.DecodeRecorded([]byte(line), &m)
			if tt.reason != "" {
				var de *DecodeError
				if !errors.As(err, &de) || de.Reason != tt.reason {
					t.Fatalf("DecodeRecorded(%s) = %v; want %s", line, err, tt.reason)
				}
				if m != (Message{TS: 7}) {
					t.Fatalf("rejected line changed the message: %+v", m)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeRecorded(%s): %v", line, err)
			}
			want := Message{TS: tt.want.UnixNano(), Kind: KindQuote, ISIN: mustISIN("DJ40J281M584"), Price: 11_000_000}
			if m != want {
				t.Fatalf("DecodeRecorded(%s) = %+v (%v); want %+v (%v)", line, m, m.Time(), want, tt.want.UTC())
			}
		})
	}
	// The body is checked like Decode's, after the timestamp.
	for _, c := range []struct {
		line   string
		reason Reason
	}{
		{`{"ts":"2026-11-26T13:00:01Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":0}}`, ReasonBadPrice},
		{`{"ts":"2026-11-26T13:00:01Z","type":"NOPE","data":{}}`, ReasonUnknownType},
		{`{"ts":"nope","type":"NOPE","data":{}}`, ReasonBadTimestamp},
		{`{"ts":"2026-11-26T13:00:01Z","type":"QUOTE"`, ReasonMalformedJSON},
		{`["ts"]`, ReasonMalformedJSON},
	} {
		var m Message
		err := d.DecodeRecorded([]byte(c.line), &m)
		var de *DecodeError
		if !errors.As(err, &de) || de.Reason != c.reason {
			t.Errorf("DecodeRecorded(%s) = %v; want %s", c.line, err, c.reason)
		}
	}
}

// TestParseRFC3339AgainstTime cross-checks the timestamp parser with the time package on
// many instants and offsets.
func TestParseRFC3339AgainstTime(t *testing.T) {
	zones := []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", -(9*3600 + 30*60)), time.FixedZone("", 14*3600)}
	for i := int64(0); i < 5000; i++ {
		ns := (i*7919*1_000_003_777*1013 + i*i*13) % 9e18
		ns -= 4.5e18
		tm := time.Unix(0, ns).In(zones[i%int64(len(zones))])
		s := tm.Format(time.RFC3339Nano)
		got, ok := parseRFC3339([]byte(s))
		if !ok || got != ns {
			t.Fatalf("parseRFC3339(%q) = %d, %v; want %d", s, got, ok, ns)
		}
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	msgs := []Message{
		{Kind: KindQuote, ISIN: mustISIN("LS342I184454"), Price: 1_365_250_000},
		{Kind: KindQuote, ISIN: mustISIN("DJ40J281M584"), Price: 11_000_000},
		{Kind: KindQuote, ISIN: mustISIN("000000000000"), Price: 1},
		{Kind: KindQuote, ISIN: mustISIN("ZZZZZZZZZZZZ"), Price: MaxPrice},
		{Kind: KindAdd, ISIN: mustISIN("LS342I184454"), Description: "elementum eos accumsan"},
		{Kind: KindAdd, ISIN: mustISIN("LS342I184454"), Description: ""},
		// Decoded descriptions hold no control characters (CleanDescription), only U+FFFD.
		{Kind: KindAdd, ISIN: mustISIN("LS342I184454"), Description: "quote\" backslash\\ nl\ufffd tab\ufffd é 😀 \u2028"},
		{Kind: KindDelete, ISIN: mustISIN("LS342I184454"), Description: "x y z"},
		{Kind: KindDelete, ISIN: mustISIN("LS342I184454")},
	}
	var d Decoder
	for _, m := range msgs {
		frame := AppendJSON(nil, &m)
		var got Message
		if err := d.Decode(frame, &got); err != nil {
			t.Fatalf("Decode(AppendJSON(%+v)) = %s: %v", m, frame, err)
		}
		if got != m {
			t.Fatalf("Decode(%s) = %+v; want %+v", frame, got, m)
		}
		m.TS = time.Date(2026, 11, 26, 13, 0, 1, 250_000_000, time.UTC).UnixNano()
		line := AppendRecordingLine(nil, &m)
		if err := d.DecodeRecorded(bytes.TrimSuffix(line, []byte("\n")), &got); err != nil {
			t.Fatalf("DecodeRecorded(%s): %v", line, err)
		}
		if got != m {
			t.Fatalf("DecodeRecorded(%s) = %+v; want %+v", line, got, m)
		}
	}
	// Price.String in the encoded form is exact.
	frame := string(AppendJSON(nil, &msgs[0]))
	if !strings.Contains(frame, `"price":1365.25}`) {
		t.Errorf("AppendJSON = %s; want the price printed as 1365.25", frame)
	}
	frame = string(AppendJSON(nil, &msgs[1]))
	if !strings.Contains(frame, `"price":11}`) {
		t.Errorf("AppendJSON = %s; want the price printed as 11", frame)
	}
}

// TestDecodeGolden decodes every line of testdata/decode.input and compares the outcome with
// testdata/decode.golden. Lines starting with "rec " are decoded with DecodeRecorded, others
// with Decode; '#' lines and empty lines are comments. Run with -update to rewrite.
func TestDecodeGolden(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "decode.input"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var d Decoder
	sc := bufio.NewScanner(bytes.NewReader(in))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var m Message
		var err error
		if rest, ok := strings.CutPrefix(line, "rec "); ok {
			err = d.DecodeRecorded([]byte(rest), &m)
		} else {
			err = d.Decode([]byte(line), &m)
		}
		fmt.Fprintf(&out, "%s\n=> %s\n\n", line, describe(&m, err))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "decode.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestDecodeGolden -update ./feed/ to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		gotLines, wantLines := strings.Split(out.String(), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gotLines) || i < len(wantLines); i++ {
			var g, w string
			if i < len(gotLines) {
				g = gotLines[i]
			}
			if i < len(wantLines) {
				w = wantLines[i]
			}
			if g != w {
				t.Fatalf("decode.golden differs at line %d:\n got: %s\nwant: %s\n(run with -update if the change is intended)", i+1, g, w)
			}
		}
	}
}

// describe prints a decode outcome for the golden file.
func describe(m *Message, err error) string {
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			return "reject " + de.Error()
		}
		return "error " + err.Error()
	}
	var b strings.Builder
	if m.TS != 0 {
		b.WriteString(m.Time().Format(time.RFC3339Nano) + " ")
	}
	b.WriteString(m.Kind.String() + " " + m.ISIN.String())
	if m.Kind == KindQuote {
		b.WriteString(" price=" + m.Price.String())
	} else {
		b.WriteString(" description=" + string(AppendJSONString(nil, m.Description)))
	}
	return b.String()
}

func TestDecodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	var d Decoder
	var m Message
	quote := []byte(`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}`)
	rec := []byte(`{"ts":"2026-11-26T13:00:01.250Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}`)
	del := []byte(`{"type":"DELETE","data":{"isin":"LS342I184454"}}`)
	for name, f := range map[string]func(){
		"Decode QUOTE":          func() { mustNil(t, d.Decode(quote, &m)) },
		"DecodeRecorded QUOTE":  func() { mustNil(t, d.DecodeRecorded(rec, &m)) },
		"Decode DELETE no desc": func() { mustNil(t, d.Decode(del, &m)) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per call; want 0", name, n)
		}
	}
}

func mustNil(t *testing.T, err error) {
	if err != nil {
		t.Fatal(err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1e2}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":0.0000015}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":"1"}}`,
		`{"type":"ADD","data":{"isin":"LS342I184454","description":"elementum eos accumsan"}}`,
		`{"type":"ADD","data":{"isin":"LS342I184454","description":"a\"\\\u00e9\ud83d\ude00\ud800x\u0000"}}`,
		"{\"type\":\"ADD\",\"data\":{\"isin\":\"LS342I184454\",\"description\":\"\xff\xfe\"}}",
		`{"type":"DELETE","data":{"isin":"LS342I184454"}}`,
		`{"ts":"2026-11-26T13:00:01.250Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}`,
		`{"ts":"2026-11-26T14:00:01.250+01:00","type":"ADD","data":{"isin":"DJ40J281M584","description":""}}`,
		`{"type":"QUOTE","data":{"isin":"ls342i184454","price":1}}`,
		`{"type":"quote"}`, `[]`, `{`, `nan`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var d Decoder
		var m Message
		if err := d.Decode(in, &m); err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode(%q): error %v is not a *DecodeError", in, err)
			}
		} else {
			checkValid(t, in, &m)
			frame := AppendJSON(nil, &m)
			var again Message
			if err := d.Decode(frame, &again); err != nil || again != m {
				t.Fatalf("Decode(%q) = %+v, re-encoded as %s decodes to %+v, %v", in, m, frame, again, err)
			}
		}
		m = Message{}
		if err := d.DecodeRecorded(in, &m); err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("DecodeRecorded(%q): error %v is not a *DecodeError", in, err)
			}
			return
		}
		checkValid(t, in, &m)
		line := AppendRecordingLine(nil, &m)
		var again Message
		if err := d.DecodeRecorded(line[:len(line)-1], &again); err != nil || again != m {
			t.Fatalf("DecodeRecorded(%q) = %+v, re-encoded as %s decodes to %+v, %v", in, m, line, again, err)
		}
	})
}

func checkValid(t *testing.T, in []byte, m *Message) {
	t.Helper()
	if _, ok := ParseISINBytes(m.ISIN[:]); !ok {
		t.Fatalf("Decode(%q) accepted ISIN %q", in, m.ISIN[:])
	}
	switch m.Kind {
	case KindQuote:
		if m.Price <= 0 || m.Price > MaxPrice || m.Description != "" {
			t.Fatalf("Decode(%q) accepted %+v", in, m)
		}
	case KindAdd, KindDelete:
		if m.Price != 0 {
			t.Fatalf("Decode(%q) accepted %+v", in, m)
		}
	default:
		t.Fatalf("Decode(%q) accepted kind %v", in, m.Kind)
	}
}

func BenchmarkDecodeQuote(b *testing.B) {
	frame := []byte(`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}`)
	var d Decoder
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := d.Decode(frame, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeAdd(b *testing.B) {
	frame := []byte(`{"type":"ADD","data":{"isin":"LS342I184454","description":"elementum eos accumsan"}}`)
	var d Decoder
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := d.Decode(frame, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRecordedQuote(b *testing.B) {
	line := []byte(`{"ts":"2026-11-26T13:00:01.250Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}`)
	var d Decoder
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if err := d.DecodeRecorded(line, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePrice(b *testing.B) {
	text := []byte("1365.25")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePrice(text); err != nil {
			b.Fatal(err)
		}
	}
}
