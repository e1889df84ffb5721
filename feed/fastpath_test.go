package feed

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sentinelMessage is what a message holds before a decode, so that a decode that leaves it
// unchanged (a reject) or changes only some fields is noticed.
func sentinelMessage() Message {
	return Message{TS: 42, Kind: KindDelete, ISIN: mustISIN("ZZZZZZZZZZZZ"), Price: 7, Description: "old"}
}

// sameOutcome reports whether two decode outcomes are identical: the same message and either
// both nil errors or two *DecodeErrors with the same reason, line and detail.
func sameOutcome(m1 Message, err1 error, m2 Message, err2 error) bool {
	if m1 != m2 {
		return false
	}
	if err1 == nil || err2 == nil {
		return err1 == nil && err2 == nil
	}
	var de1, de2 *DecodeError
	if !errors.As(err1, &de1) || !errors.As(err2, &de2) {
		return false
	}
	return *de1 == *de2
}

// checkFastSame decodes in with Decode and DecodeRecorded (which may take the fast path) and
// with decodeGeneral and decodeRecordedGeneral (which never do) and fails unless the outcomes
// are identical. It reports whether the fast path accepted in, as a frame or as a line.
func checkFastSame(t testing.TB, d *Decoder, in []byte) (fastFrame, fastLine bool) {
	t.Helper()
	m1, m2 := sentinelMessage(), sentinelMessage()
	err1 := d.Decode(in, &m1)
	err2 := d.decodeGeneral(in, &m2)
	if !sameOutcome(m1, err1, m2, err2) {
		t.Fatalf("Decode(%q):\n fast path: %+v, %v\n general:   %+v, %v", in, m1, err1, m2, err2)
	}
	m1, m2 = sentinelMessage(), sentinelMessage()
	err1 = d.DecodeRecorded(in, &m1)
	err2 = d.decodeRecordedGeneral(in, &m2)
	if !sameOutcome(m1, err1, m2, err2) {
		t.Fatalf("DecodeRecorded(%q):\n fast path: %+v, %v\n general:   %+v, %v", in, m1, err1, m2, err2)
	}
	var m Message
	fastFrame = (d.MaxSize <= 0 || len(in) <= d.MaxSize) && decodeFrameFast(in, &m)
	fastLine = (d.MaxSize <= 0 || len(in) <= d.MaxSize) && d.decodeRecordedFast(in, &m)
	return fastFrame, fastLine
}

// withTS turns a partner frame into a recorded line with the given "ts" value (raw JSON).
func withTS(frame, ts string) string {
	if !strings.HasPrefix(frame, "{") {
		return `{"ts":` + ts + "," + frame
	}
	return `{"ts":` + ts + "," + frame[1:]
}

// TestFastPathTables runs the decode test tables and the golden inputs through both paths,
// as frames, as recorded lines, and with every timestamp of the DecodeRecorded table.
func TestFastPathTables(t *testing.T) {
	var d Decoder
	var inputs []string
	for _, c := range decodeCases() {
		inputs = append(inputs, c.frame, withTS(c.frame, `"2026-11-26T13:00:01.25Z"`), withTS(c.frame, `"2026-11-26T13:00:01Z"`))
	}
	for _, c := range recordedTSCases() {
		inputs = append(inputs, "{"+recordedTSBody+"}")
		if c.ts != "" {
			inputs = append(inputs, `{"ts":`+c.ts+","+recordedTSBody+"}",
				`{"ts":`+c.ts+`,"type":"ADD","data":{"isin":"DJ40J281M584","description":"a b"}}`)
		}
	}
	in, err := os.ReadFile(filepath.Join("testdata", "decode.input"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(in))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		inputs = append(inputs, strings.TrimPrefix(line, "rec "))
	}
	fast := 0
	for _, s := range inputs {
		ff, fl := checkFastSame(t, &d, []byte(s))
		if ff || fl {
			fast++
		}
	}
	if fast == 0 {
		t.Fatal("the fast path accepted none of the table inputs")
	}
	t.Logf("%d inputs, %d taken by the fast path", len(inputs), fast)
}

// TestFastPathAccepts checks that the fast path does take the canonical layouts that the
// recorder and the partner write (else the optimisation silently does nothing).
func TestFastPathAccepts(t *testing.T) {
	var d Decoder
	isin := mustISIN("DJ40J281M584")
	ts := time.Date(2026, 11, 26, 13, 0, 1, 250_000_000, time.UTC).UnixNano()
	for _, m := range []Message{
		{TS: ts, Kind: KindQuote, ISIN: isin, Price: 1_365_250_000},
		{TS: ts + 1, Kind: KindQuote, ISIN: isin, Price: 11_000_000},
		{TS: ts - 250_000_000, Kind: KindQuote, ISIN: isin, Price: 1},
		{TS: ts, Kind: KindAdd, ISIN: isin, Description: "elementum eos accumsan"},
		{TS: ts, Kind: KindAdd, ISIN: isin, Description: ""},
		{TS: ts, Kind: KindAdd, ISIN: isin, Description: "café 😀"},
		{TS: ts, Kind: KindDelete, ISIN: isin, Description: "x y z"},
		{TS: ts, Kind: KindDelete, ISIN: isin},
	} {
		frame := AppendJSON(nil, &m)
		var got Message
		if !decodeFrameFast(frame, &got) {
			t.Errorf("fast path declined the frame %s", frame)
		}
		want := m
		want.TS = 0
		if got != want {
			t.Errorf("fast path decoded %s as %+v; want %+v", frame, got, want)
		}
		line := AppendRecordingLine(nil, &m)
		line = line[:len(line)-1]
		got = Message{}
		if !d.decodeRecordedFast(line, &got) {
			t.Errorf("fast path declined the line %s", line)
		}
		if got != m {
			t.Errorf("fast path decoded %s as %+v; want %+v", line, got, m)
		}
	}
	// The DELETE without description of the partner, and a price with an exponent.
	for _, s := range []string{
		`{"type":"DELETE","data":{"isin":"DJ40J281M584"}}`,
		`{"type":"QUOTE","data":{"isin":"DJ40J281M584","price":1.5E+3}}`,
	} {
		var got Message
		if !decodeFrameFast([]byte(s), &got) {
			t.Errorf("fast path declined %s", s)
		}
	}
	// And it declines what is merely equivalent.
	for _, s := range []string{
		`{"type":"QUOTE","data":{"isin":"DJ40J281M584","price":1} }`,
		`{"type":"QUOTE","data":{"price":1,"isin":"DJ40J281M584"}}`,
		`{"type":"ADD","data":{"isin":"DJ40J281M584","description":"a\u0020b"}}`,
		`{"type":"QUOTE","data":{"isin":"DJ40J281M584","price":1},"type":"ADD"}`,
	} {
		var got Message
		if decodeFrameFast([]byte(s), &got) {
			t.Errorf("fast path accepted %s", s)
		}
	}
	for _, s := range []string{
		`{"ts":"2026-11-26T14:00:01+01:00","type":"QUOTE","data":{"isin":"DJ40J281M584","price":1}}`,
		`{"ts":"2026-11-26T13:00:01.1234567891Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":1}}`,
		`{"ts":"2026-11-26T13:00:01Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":1}}` + "\n",
	} {
		var got Message
		if d.decodeRecordedFast([]byte(s), &got) {
			t.Errorf("fast path accepted %s", s)
		}
	}
}

// canonicalGen generates lines in (or near) the canonical layouts, with random field values
// that are mostly valid.
type canonicalGen struct{ r *rand.Rand }

func (g canonicalGen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g canonicalGen) isin() string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, ISINLen)
	for i := range b {
		b[i] = alnum[g.r.IntN(len(alnum))]
	}
	switch g.r.IntN(20) {
	case 0:
		b[g.r.IntN(ISINLen)] = g.pick("a", "z", "-", " ", "\\", "\x00", "\xff", "Ä")[0]
	case 1:
		return string(b[:g.r.IntN(ISINLen)])
	case 2:
		return string(b) + g.pick("A", "0", "\\u0041")
	case 3:
		return `\u0041` + string(b[1:])
	}
	return string(b)
}

func (g canonicalGen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

func (g canonicalGen) price() string {
	switch g.r.IntN(16) {
	case 0:
		return g.pick("0", "-0", "-5", "-1365.25", "0.0000004", "0.0000005", "0.0000015", "1000000000",
			"1000000000.0000005", "1000000000.000001", "1e9", "1e10", "1e-7", "1e999999999",
			"01", "1.", ".5", "1e", "1e+", "+1", "1.2.3", "1-2", "--1", "1ee2", "0x10", "NaN", "inf",
			"-Inf", `"1"`, "null", "true", "[1]", "{}", "", "1 ", " 1", "1,", "1}")
	case 1:
		return strconv.Itoa(1+g.r.IntN(2000)) + g.pick("e", "E") + g.pick("", "+", "-") + strconv.Itoa(g.r.IntN(12))
	case 2:
		return strconv.Itoa(g.r.IntN(10)) + "." + g.digits(1+g.r.IntN(12))
	case 3:
		return strconv.FormatInt(g.r.Int64N(2_000_000_000_000), 10)
	}
	s := strconv.Itoa(1 + g.r.IntN(2000))
	if g.r.IntN(3) > 0 {
		s += "." + g.digits(1+g.r.IntN(8))
	}
	return s
}

func (g canonicalGen) ts() string {
	// Mostly near now, sometimes anywhere in (and a little beyond) the int64 range.
	ns := time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC).UnixNano() + g.r.Int64N(int64(48*time.Hour))
	if g.r.IntN(8) == 0 {
		ns = g.r.Int64()
		if g.r.IntN(2) == 0 {
			ns = -ns
		}
	}
	tm := time.Unix(0, ns).UTC()
	s := tm.Format("2006-01-02T15:04:05")
	if n := g.r.IntN(11); n > 0 && n <= 9 { // 0–9 fraction digits, trailing zeros kept
		frac := strconv.Itoa(1_000_000_000 + tm.Nanosecond())[1:]
		s += "." + frac[:n]
	}
	s += "Z"
	switch g.r.IntN(25) {
	case 0:
		s = g.pick("2026-02-29T13:00:01Z", "2024-02-29T13:00:01Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
			"2026-11-26T24:00:00Z", "2026-11-26T23:60:00Z", "2026-11-26T23:59:60Z", "2026-11-26T13:00:01.Z",
			"2026-11-26T13:00:01.1234567891Z", "2262-04-11T23:47:15.999999999Z", "2262-04-11T23:47:16Z",
			"1677-09-21T00:12:44Z", "1677-09-21T00:12:43.999999999Z", "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
			"2026-11-26t13:00:01z", "2026-11-26T13:00:01z", "2026-11-26 13:00:01Z", "2026-11-26T13:00:01+00:00",
			"2026-11-26T13:00:01.5+01:00", "2026-11-26T13:00:01ZZ", "2026-11-26T13:00:01", "", "Z")
	case 1:
		s = strings.Replace(s, "T", "t", 1)
	}
	return s
}

func (g canonicalGen) description() string {
	words := []string{"elementum", "eos", "accumsan", "x", "café", "😀", "ü", "\xff", "\xc3", "\xe2\x82",
		"\xed\xa0\x80", "\u2028", "\x01", "\t", "\x7f", `\"`, `\\`, `\n`, `\u00e9`, `\ud83d\ude00`, `\ud800`, `"`, `\`}
	n := g.r.IntN(6)
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		if g.r.IntN(4) == 0 {
			b.WriteString(words[g.r.IntN(len(words))])
		} else {
			b.WriteString(words[g.r.IntN(5)])
		}
	}
	return b.String()
}

// line returns a frame or recorded line in a canonical layout, with random values.
func (g canonicalGen) line() string {
	var body string
	isin := g.isin()
	switch g.r.IntN(10) {
	case 0, 1, 2, 3, 4, 5:
		body = `"type":"QUOTE","data":{"isin":"` + isin + `","price":` + g.price() + `}}`
	case 6:
		body = `"type":"ADD","data":{"isin":"` + isin + `","description":"` + g.description() + `"}}`
	case 7:
		body = `"type":"DELETE","data":{"isin":"` + isin + `","description":"` + g.description() + `"}}`
	case 8:
		body = `"type":"DELETE","data":{"isin":"` + isin + `"}}`
	default: // a layout of one type with another type's name
		body = `"type":"` + g.pick("QUOTE", "ADD", "DELETE", "quote", "TRADE", "") + `","data":{"isin":"` + isin + `"` +
			g.pick(`,"price":`+g.price(), `,"description":"`+g.description()+`"`, `,"description":null`, "") + `}}`
	}
	if g.r.IntN(2) == 0 {
		return "{" + body
	}
	return `{"ts":"` + g.ts() + `",` + body
}

// TestFastPathGenerated compares both paths on many generated lines in the canonical
// layouts.
func TestFastPathGenerated(t *testing.T) {
	n := 200_000
	if testing.Short() || raceEnabled {
		n = 20_000
	}
	g := canonicalGen{r: rand.New(rand.NewPCG(1, 2))}
	var d Decoder
	fast := 0
	for i := 0; i < n; i++ {
		ff, fl := checkFastSame(t, &d, []byte(g.line()))
		if ff || fl {
			fast++
		}
	}
	if fast < n/3 {
		t.Fatalf("the fast path took only %d of %d generated lines", fast, n)
	}
	t.Logf("%d lines, %d taken by the fast path", n, fast)
}

// mutationBytes are the bytes that the mutation test deletes, inserts and substitutes:
// JSON structure, whitespace, number and timestamp characters, and invalid UTF-8.
const mutationBytes = " \t\r\n\"\\{}[],:0159.eE+-ZzTtAa\x00\x1f\x7f\x80\xc3\xff"

// TestFastPathMutations compares both paths on canonical lines with one byte deleted,
// duplicated, replaced or inserted at every position, every prefix of them, and them
// followed by assorted trailing bytes; and with a size limit around their length.
func TestFastPathMutations(t *testing.T) {
	bases := []string{
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1.5e-3}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":10}}`,
		`{"type":"ADD","data":{"isin":"LS342I184454","description":"elementum eos"}}`,
		`{"type":"ADD","data":{"isin":"LS342I184454","description":""}}`,
		`{"type":"DELETE","data":{"isin":"LS342I184454","description":"é x"}}`,
		`{"type":"DELETE","data":{"isin":"LS342I184454"}}`,
		`{"ts":"2026-11-26T13:00:01.25Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":1365.25}}`,
		`{"ts":"2026-11-26T13:00:01Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":9e2}}`,
		`{"ts":"2024-02-29T23:59:59.123456789Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":0.000001}}`,
		`{"ts":"2026-11-26T13:00:01.5Z","type":"ADD","data":{"isin":"DJ40J281M584","description":"x y z"}}`,
		`{"ts":"2026-11-26T13:00:01.500Z","type":"DELETE","data":{"isin":"DJ40J281M584","description":"x"}}`,
		`{"ts":"2026-11-26T13:00:01.500Z","type":"DELETE","data":{"isin":"DJ40J281M584"}}`,
	}
	suffixes := []string{"", " ", "\n", "\r\n", "}", "}}", "x", ",", `,"type":"ADD"}`, `,"price":2}}`, "{}", "\x00"}
	var d Decoder
	fast := 0
	check := func(b []byte) {
		ff, fl := checkFastSame(t, &d, b)
		if ff || fl {
			fast++
		}
	}
	var buf []byte
	for _, base := range bases {
		b := []byte(base)
		for i := 0; i <= len(b); i++ {
			check(b[:i]) // every prefix, the whole line last
			for _, s := range suffixes {
				buf = append(append(buf[:0], b[:i]...), s...)
				check(buf)
			}
			for k := 0; k < len(mutationBytes); k++ { // insert before i
				buf = append(append(append(buf[:0], b[:i]...), mutationBytes[k]), b[i:]...)
				check(buf)
			}
			if i == len(b) {
				break
			}
			buf = append(append(buf[:0], b[:i]...), b[i+1:]...) // delete i
			check(buf)
			buf = append(append(buf[:0], b[:i+1]...), b[i:]...) // duplicate i
			check(buf)
			for k := 0; k < len(mutationBytes); k++ { // replace i
				buf = append(append(append(buf[:0], b[:i]...), mutationBytes[k]), b[i+1:]...)
				check(buf)
			}
		}
		for _, max := range []int{len(b) - 1, len(b), len(b) + 1} {
			d.MaxSize = max
			check(b)
		}
		d.MaxSize = 0
	}
	if fast == 0 {
		t.Fatal("the fast path took none of the mutated lines")
	}
	t.Logf("fast path took %d mutated lines", fast)
}

// TestFastPathHuge compares both paths on canonical lines with huge values.
func TestFastPathHuge(t *testing.T) {
	var d Decoder
	long := strings.Repeat("elementum eos ", 100_000)
	for _, s := range []string{
		`{"type":"ADD","data":{"isin":"LS342I184454","description":"` + long + `"}}`,
		`{"ts":"2026-11-26T13:00:01Z","type":"ADD","data":{"isin":"LS342I184454","description":"` + long + "\xff" + `"}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1` + strings.Repeat("0", 1_000_000) + `e-1000000}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":0.` + strings.Repeat("0", 1_000_000) + `1e1000003}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1` + strings.Repeat("0", 1_000_000) + `}}`,
		`{"ts":"` + strings.Repeat("2", 100_000) + `","type":"QUOTE","data":{"isin":"LS342I184454","price":1}}`,
	} {
		checkFastSame(t, &d, []byte(s))
	}
}

// TestFastPathAllocs checks that the fast path allocates nothing for a QUOTE and only the
// description for an ADD or DELETE.
func TestFastPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	var d Decoder
	var m Message
	for _, c := range []struct {
		line   string
		allocs float64
	}{
		{`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}`, 0},
		{`{"ts":"2026-11-26T13:00:01.25Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":1.5e3}}`, 0},
		{`{"type":"DELETE","data":{"isin":"LS342I184454"}}`, 0},
		{`{"ts":"2026-11-26T13:00:01.25Z","type":"ADD","data":{"isin":"DJ40J281M584","description":"x y z"}}`, 1},
	} {
		n := testing.AllocsPerRun(1000, func() {
			if strings.HasPrefix(c.line, `{"ts"`) {
				mustNil(t, d.DecodeRecorded([]byte(c.line), &m))
			} else {
				mustNil(t, d.Decode([]byte(c.line), &m))
			}
		})
		if n != c.allocs {
			t.Errorf("%s: %v allocations; want %v", c.line, n, c.allocs)
		}
	}
}

// FuzzFastPath checks that the fast path and the general path agree on arbitrary input, as
// a frame and as a recorded line.
func FuzzFastPath(f *testing.F) {
	for _, s := range []string{
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":1.5E+3}}`,
		`{"type":"QUOTE","data":{"isin":"LS342I184454","price":-1}}`,
		`{"type":"ADD","data":{"isin":"LS342I184454","description":"elementum eos accumsan"}}`,
		"{\"type\":\"ADD\",\"data\":{\"isin\":\"LS342I184454\",\"description\":\"a\xffb\"}}",
		`{"type":"DELETE","data":{"isin":"LS342I184454","description":"x"}}`,
		`{"type":"DELETE","data":{"isin":"LS342I184454"}}`,
		`{"ts":"2026-11-26T13:00:01.250Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}`,
		`{"ts":"2026-11-26T13:00:01Z","type":"ADD","data":{"isin":"DJ40J281M584","description":"x y"}}`,
		`{"ts":"2026-11-26T13:00:01.123456789Z","type":"DELETE","data":{"isin":"DJ40J281M584"}}`,
		`{"ts":"2026-11-26T13:00:01Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":1}}}`,
		`{"ts":"2026-11-26T13:00:01Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":1},"type":"ADD"}`,
	} {
		f.Add([]byte(s), 0)
	}
	f.Fuzz(func(t *testing.T, in []byte, maxSize int) {
		d := Decoder{MaxSize: maxSize % 512}
		checkFastSame(t, &d, in)
	})
}

// TestDaysFromCivil compares daysFromCivil with time.Date on every day of the years
// 0000–9999 (the years a 4-digit RFC 3339 timestamp can name).
func TestDaysFromCivil(t *testing.T) {
	first := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400
	last := time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / 86400
	for want := first; want <= last; want++ {
		tm := time.Unix(want*86400, 0).UTC()
		if got := daysFromCivil(tm.Year(), int(tm.Month()), tm.Day()); got != want {
			t.Fatalf("daysFromCivil(%s) = %d; want %d", tm.Format("2006-01-02"), got, want)
		}
	}
}

// benchDecode benchmarks one decode function on one input.
func benchDecode(b *testing.B, in string, decode func(*Decoder, []byte, *Message) error) {
	line := []byte(in)
	var d Decoder
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if err := decode(&d, line, &m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkFastPath compares the fast path (Decode, DecodeRecorded) with the general path on
// the canonical layouts, in one run.
func BenchmarkFastPath(b *testing.B) {
	const (
		quote  = `{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}`
		add    = `{"type":"ADD","data":{"isin":"LS342I184454","description":"elementum eos accumsan"}}`
		recQ   = `{"ts":"2026-11-26T13:00:01.250Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}`
		recAdd = `{"ts":"2026-11-26T13:00:01.250Z","type":"ADD","data":{"isin":"DJ40J281M584","description":"x y z"}}`
	)
	frame := func(fast bool) func(*Decoder, []byte, *Message) error {
		if fast {
			return (*Decoder).Decode
		}
		return (*Decoder).decodeGeneral
	}
	recorded := func(fast bool) func(*Decoder, []byte, *Message) error {
		if fast {
			return (*Decoder).DecodeRecorded
		}
		return (*Decoder).decodeRecordedGeneral
	}
	for _, path := range []struct {
		name string
		fast bool
	}{{"fast", true}, {"general", false}} {
		b.Run("Quote/"+path.name, func(b *testing.B) { benchDecode(b, quote, frame(path.fast)) })
		b.Run("Add/"+path.name, func(b *testing.B) { benchDecode(b, add, frame(path.fast)) })
		b.Run("RecordedQuote/"+path.name, func(b *testing.B) { benchDecode(b, recQ, recorded(path.fast)) })
		b.Run("RecordedAdd/"+path.name, func(b *testing.B) { benchDecode(b, recAdd, recorded(path.fast)) })
	}
}

// TestFastPathMinuteCache runs runs of consecutive timestamps, as a recording has them,
// through both paths with one Decoder, so that the fast path's cached minute is reused and
// replaced: across minutes, days, leap days and years, and up to and beyond both ends of the
// valid range, with invalid lines in between.
func TestFastPathMinuteCache(t *testing.T) {
	var d Decoder
	r := rand.New(rand.NewPCG(3, 4))
	starts := []time.Time{
		time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 28, 23, 58, 0, 0, time.UTC),
		time.Date(2025, 12, 31, 23, 58, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 0, 0, time.UTC),
		time.Date(2262, 4, 11, 23, 46, 0, 0, time.UTC),
		time.Date(1677, 9, 21, 0, 11, 0, 0, time.UTC),
	}
	accepted := 0
	for _, start := range starts {
		ns := start.UnixNano()
		for i := 0; i < 3000; i++ {
			ns += r.Int64N(int64(300 * time.Millisecond))
			tm := time.Unix(0, ns).UTC()
			if ns < 0 && tm.Year() > 2000 { // wrapped past the int64 range
				break
			}
			ts := tm.Format("2006-01-02T15:04:05")
			if n := r.IntN(10); n > 0 {
				ts += "." + strconv.Itoa(1_000_000_000 + tm.Nanosecond())[1:1+n]
			}
			line := `{"ts":"` + ts + `Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}`
			if ff, fl := checkFastSame(t, &d, []byte(line)); fl && !ff {
				accepted++
			}
			if i%7 == 0 { // something the fast path declines, or a timestamp in another minute
				checkFastSame(t, &d, []byte(canonicalGen{r: r}.line()))
			}
		}
		// Past the top of the range the minute 2262-04-11T23:47 is valid but its seconds
		// after :15 are not.
		for sec := 0; sec < 60; sec++ {
			line := `{"ts":"2262-04-11T23:47:` + strconv.Itoa(100 + sec)[1:] + `Z","type":"DELETE","data":{"isin":"DJ40J281M584"}}`
			checkFastSame(t, &d, []byte(line))
		}
	}
	if accepted < 10_000 {
		t.Fatalf("the fast path took only %d lines", accepted)
	}
}
