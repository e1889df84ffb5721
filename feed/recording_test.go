package feed

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var t0 = time.Date(2026, 11, 26, 13, 0, 1, 250_000_000, time.UTC).UnixNano()

func sampleMessages(n int) []Message {
	msgs := make([]Message, 0, n)
	for i := 0; i < n; i++ {
		isin := mustISIN(fmt.Sprintf("DJ40J%07d", i%100))
		ts := t0 + int64(i)*1_000_003
		switch i % 10 {
		case 0:
			msgs = append(msgs, Message{TS: ts, Kind: KindAdd, ISIN: isin, Description: fmt.Sprintf("instrument \"%d\" é", i)})
		case 9:
			msgs = append(msgs, Message{TS: ts, Kind: KindDelete, ISIN: isin, Description: "x y z"})
		default:
			msgs = append(msgs, Message{TS: ts, Kind: KindQuote, ISIN: isin, Price: Price(1_365_250_000 + i)})
		}
	}
	return msgs
}

func writeRecording(t testing.TB, msgs []Message) []byte {
	var buf bytes.Buffer
	w := NewRecordingWriter(&buf)
	for i := range msgs {
		if err := w.Write(&msgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// outcome is what one Next call returned, for comparing runs.
type outcome struct {
	msg    Message
	reason Reason
	line   int64
	offset int64
}

func readAll(t *testing.T, rr *RecordingReader) []outcome {
	t.Helper()
	var out []outcome
	for {
		var m Message
		err := rr.Next(&m)
		if err == io.EOF {
			return out
		}
		o := outcome{msg: m, line: rr.Line(), offset: rr.Offset()}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Next: %v", err)
			}
			if de.Line != rr.Line() {
				t.Fatalf("DecodeError.Line = %d, Line() = %d", de.Line, rr.Line())
			}
			o.reason, o.msg = de.Reason, Message{}
		}
		out = append(out, o)
		if len(out) > 1e6 {
			t.Fatal("reader does not end")
		}
	}
}

func TestRecordingRoundTrip(t *testing.T) {
	msgs := sampleMessages(1000)
	data := writeRecording(t, msgs)
	if n := bytes.Count(data, []byte("\n")); n != len(msgs) {
		t.Fatalf("%d lines written for %d messages", n, len(msgs))
	}
	got := readAll(t, NewRecordingReader(bytes.NewReader(data)))
	if len(got) != len(msgs) {
		t.Fatalf("read %d messages, wrote %d", len(got), len(msgs))
	}
	for i, o := range got {
		if o.reason != "" || o.msg != msgs[i] || o.line != int64(i+1) {
			t.Fatalf("message %d: %+v; want %+v at line %d", i, o, msgs[i], i+1)
		}
	}
	if last := got[len(got)-1]; last.offset != int64(len(data)) {
		t.Fatalf("final offset %d, file size %d", last.offset, len(data))
	}
	// Reading one byte at a time gives the same result.
	again := readAll(t, NewRecordingReader(iotest.OneByteReader(bytes.NewReader(data))))
	if fmt.Sprint(again) != fmt.Sprint(got) {
		t.Fatal("one-byte reads differ")
	}
}

func TestRecordingWriterRejectsInvalidKind(t *testing.T) {
	w := NewRecordingWriter(io.Discard)
	if err := w.Write(&Message{Kind: 0}); err == nil {
		t.Fatal("Write of a message without kind: no error")
	}
}

func TestRecordingWriterErrors(t *testing.T) {
	w := NewRecordingWriter(errWriter{})
	m := Message{TS: t0, Kind: KindQuote, ISIN: mustISIN("DJ40J281M584"), Price: 1}
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = w.Write(&m)
	}
	if err == nil {
		err = w.Flush()
	}
	if !errors.Is(err, errBoom) {
		t.Fatalf("error %v does not wrap the writer's error", err)
	}
}

var errBoom = errors.New("boom")

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errBoom }

func TestRecordingReaderLines(t *testing.T) {
	const (
		add   = `{"ts":"2026-11-26T13:00:01.250Z","type":"ADD","data":{"isin":"DJ40J281M584","description":"x y z"}}`
		quote = `{"ts":"2026-11-26T13:00:01.500Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}`
	)
	isin := mustISIN("DJ40J281M584")
	addMsg := Message{TS: t0, Kind: KindAdd, ISIN: isin, Description: "x y z"}
	quoteMsg := Message{TS: t0 + 250_000_000, Kind: KindQuote, ISIN: isin, Price: 11_000_000}
	long := `{"ts":"2026-11-26T13:00:01.250Z","type":"ADD","data":{"isin":"DJ40J281M584","description":"` + strings.Repeat("a", 300) + `"}}`
	longMsg := Message{TS: t0, Kind: KindAdd, ISIN: isin, Description: strings.Repeat("a", 300)}

	type want struct {
		line   int64
		msg    Message
		reason Reason
	}
	tests := []struct {
		name    string
		input   string
		maxLine int
		want    []want
	}{
		{name: "empty input", input: ""},
		{name: "only blank lines", input: "\n\r\n  \n\t\n"},
		{name: "two lines", input: add + "\n" + quote + "\n",
			want: []want{{1, addMsg, ""}, {2, quoteMsg, ""}}},
		{name: "no trailing newline", input: add + "\n" + quote,
			want: []want{{1, addMsg, ""}, {2, quoteMsg, ""}}},
		{name: "CRLF", input: add + "\r\n" + quote + "\r\n",
			want: []want{{1, addMsg, ""}, {2, quoteMsg, ""}}},
		{name: "CRLF no trailing newline", input: add + "\r\n" + quote + "\r",
			want: []want{{1, addMsg, ""}, {2, quoteMsg, ""}}},
		{name: "empty lines are counted but skipped", input: "\n" + add + "\n\n\r\n   \n" + quote + "\n\n",
			want: []want{{2, addMsg, ""}, {6, quoteMsg, ""}}},
		{name: "broken lines in the middle", input: add + "\n" +
			`{"ts":"2026-11-26T13:00:01.500Z","type":"QUOTE","data":{"isin":"DJ40J2` + "\n" + // cut
			`garbage` + "\n" +
			`{"type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}` + "\n" + // no ts
			`{"ts":"2026-11-26T13:00:01.500Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":-1}}` + "\n" +
			`{"ts":"2026-11-26T13:00:01.500Z","type":"QUOTE","data":{"isin":"dj40j281m584","price":1}}` + "\n" +
			`{"ts":"2026-11-26T13:00:01.500Z","type":"HELLO","data":{}}` + "\n" +
			`{"ts":"2026-11-26T13:00:01.500Z","type":"ADD","data":{"isin":"DJ40J281M584"}}` + "\n" +
			"\x00\x01\xff\n" +
			quote + "\n",
			want: []want{{1, addMsg, ""}, {2, Message{}, ReasonMalformedJSON}, {3, Message{}, ReasonMalformedJSON},
				{4, Message{}, ReasonBadTimestamp}, {5, Message{}, ReasonBadPrice}, {6, Message{}, ReasonBadISIN},
				{7, Message{}, ReasonUnknownType}, {8, Message{}, ReasonMissingField}, {9, Message{}, ReasonMalformedJSON},
				{10, quoteMsg, ""}}},
		{name: "oversized line skipped", maxLine: 200, input: add + "\n" + long + "\n" + quote + "\n",
			want: []want{{1, addMsg, ""}, {2, Message{}, ReasonOversized}, {3, quoteMsg, ""}}},
		{name: "oversized last line without newline", maxLine: 200, input: add + "\n" + long,
			want: []want{{1, addMsg, ""}, {2, Message{}, ReasonOversized}}},
		{name: "line of exactly MaxLine with CRLF", maxLine: len(long), input: long + "\r\n" + long + "x\r\n" + long,
			want: []want{{1, longMsg, ""}, {2, Message{}, ReasonOversized}, {3, longMsg, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Also through one-byte reads, which exercise the assembling of long lines.
			for _, r := range []io.Reader{strings.NewReader(tt.input), iotest.OneByteReader(strings.NewReader(tt.input))} {
				rr := NewRecordingReader(r)
				rr.MaxLine = tt.maxLine
				got := readAll(t, rr)
				if len(got) != len(tt.want) {
					t.Fatalf("got %d results %+v; want %d", len(got), got, len(tt.want))
				}
				for i, w := range tt.want {
					g := got[i]
					if g.line != w.line || g.reason != w.reason || g.msg != w.msg {
						t.Fatalf("result %d = %+v; want %+v", i, g, w)
					}
				}
				if n := len(got); n > 0 && got[n-1].offset != int64(len(strings.TrimRight(tt.input, "\r\n \t")))+int64(trailingLineEnd(tt.input)) {
					t.Fatalf("last offset %d for input of %d bytes", got[n-1].offset, len(tt.input))
				}
			}
		})
	}
}

// trailingLineEnd is the length of the line ending after the last non-blank line of s.
func trailingLineEnd(s string) int {
	trimmed := strings.TrimRight(s, "\r\n \t")
	rest := s[len(trimmed):]
	if i := strings.IndexByte(rest, '\n'); i >= 0 {
		return i + 1
	}
	return len(rest)
}

// TestRecordingReaderLongLines covers lines longer than the read buffer: accepted below
// MaxLine, rejected (and skipped in constant memory) above it.
func TestRecordingReaderLongLines(t *testing.T) {
	isin := mustISIN("DJ40J281M584")
	big := Message{TS: t0, Kind: KindAdd, ISIN: isin, Description: strings.Repeat("é", 300_000)} // 600 kB
	huge := Message{TS: t0, Kind: KindAdd, ISIN: isin, Description: strings.Repeat("z", 3<<20)}  // 3 MiB
	quote := Message{TS: t0, Kind: KindQuote, ISIN: isin, Price: 1}
	data := writeRecording(t, []Message{quote, big, huge, quote, huge})
	data = bytes.TrimSuffix(data, []byte("\n")) // last line without newline
	rr := NewRecordingReader(bytes.NewReader(data))
	got := readAll(t, rr)
	want := []outcome{{msg: quote}, {msg: big}, {reason: ReasonOversized}, {msg: quote}, {reason: ReasonOversized}}
	if len(got) != len(want) {
		t.Fatalf("%d results; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].msg != want[i].msg || got[i].reason != want[i].reason || got[i].line != int64(i+1) {
			t.Fatalf("result %d: reason %q line %d; want reason %q line %d", i, got[i].reason, got[i].line, want[i].reason, i+1)
		}
	}
	if got[len(got)-1].offset != int64(len(data)) {
		t.Fatalf("last offset %d, size %d", got[len(got)-1].offset, len(data))
	}
	// Memory is bounded by MaxLine (append may double once past it), never by the line.
	if cap(rr.long) > 2*(DefaultMaxLine+recordingBufSize) {
		t.Fatalf("reader kept %d bytes for oversized lines; want O(MaxLine)", cap(rr.long))
	}
}

// TestRecordingReaderResume resumes from every (Offset, Line) a reader reported and checks
// that the rest of the recording reads exactly as in one uninterrupted pass.
func TestRecordingReaderResume(t *testing.T) {
	msgs := sampleMessages(40)
	data := writeRecording(t, msgs)
	// Mix in blank lines, CRLF and a broken line.
	data = bytes.Replace(data, []byte("\n"), []byte("\r\n"), 3)
	data = append([]byte("\n"), data...)
	data = append(data, "{broken\n\n"...)
	data = append(data, writeRecording(t, msgs[:3])...)
	full := readAll(t, NewRecordingReader(bytes.NewReader(data)))
	if len(full) != 44 {
		t.Fatalf("%d results; want 44", len(full))
	}
	for k, o := range full {
		rr := NewRecordingReaderAt(bytes.NewReader(data[o.offset:]), o.offset, o.line)
		rest := readAll(t, rr)
		if fmt.Sprint(rest) != fmt.Sprint(full[k+1:]) {
			t.Fatalf("resuming after result %d (offset %d, line %d):\n got %v\nwant %v", k, o.offset, o.line, rest, full[k+1:])
		}
		if rr.Line() != full[len(full)-1].line && len(rest) > 0 {
			t.Fatalf("Line() after resuming = %d", rr.Line())
		}
	}
}

func TestRecordingReaderReadError(t *testing.T) {
	data := writeRecording(t, sampleMessages(3))
	r := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errBoom))
	rr := NewRecordingReader(r)
	var m Message
	for i := 0; i < 3; i++ {
		if err := rr.Next(&m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
	}
	err := rr.Next(&m)
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("Next after a read error = %v; want it wrapped, naming line 4", err)
	}
}

func TestRecordingReaderAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	isin := mustISIN("DJ40J281M584")
	msgs := make([]Message, 5000)
	for i := range msgs {
		msgs[i] = Message{TS: t0 + int64(i), Kind: KindQuote, ISIN: isin, Price: Price(i + 1)}
	}
	data := writeRecording(t, msgs)
	rr := NewRecordingReader(bytes.NewReader(data))
	var m Message
	if err := rr.Next(&m); err != nil { // warm up
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { mustNil(t, rr.Next(&m)) }); n != 0 {
		t.Fatalf("Next of a QUOTE line: %v allocations; want 0", n)
	}
}

func BenchmarkRecordingReader(b *testing.B) {
	msgs := sampleMessages(100_000)
	var buf bytes.Buffer
	w := NewRecordingWriter(&buf)
	for i := range msgs {
		_ = w.Write(&msgs[i])
	}
	_ = w.Flush()
	data := buf.Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	lines := 0
	for b.Loop() {
		rr := NewRecordingReader(bytes.NewReader(data))
		var m Message
		for {
			err := rr.Next(&m)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			lines++
		}
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkRecordingWriter(b *testing.B) {
	m := Message{TS: t0, Kind: KindQuote, ISIN: mustISIN("DJ40J281M584"), Price: 1_365_250_000}
	w := NewRecordingWriter(io.Discard)
	b.ReportAllocs()
	for b.Loop() {
		m.TS++
		if err := w.Write(&m); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}

func FuzzRecordingReader(f *testing.F) {
	f.Add([]byte(`{"ts":"2026-11-26T13:00:01.250Z","type":"ADD","data":{"isin":"DJ40J281M584","description":"x y z"}}`+"\r\n\n"+
		`{"ts":"2026-11-26T13:00:01.500Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}`), 0)
	f.Add([]byte("garbage\n\n{\"ts\":1}\r\n"+strings.Repeat("x", 100)), 64)
	f.Fuzz(func(t *testing.T, data []byte, maxLine int) {
		rr := NewRecordingReader(bytes.NewReader(data))
		rr.MaxLine = maxLine % 256
		var lastLine, lastOffset int64
		for i := 0; ; i++ {
			var m Message
			err := rr.Next(&m)
			if err == io.EOF {
				break
			}
			var de *DecodeError
			if err != nil && !errors.As(err, &de) {
				t.Fatalf("Next: %v", err)
			}
			if err != nil && de.Line != rr.Line() {
				t.Fatalf("DecodeError.Line %d != Line() %d", de.Line, rr.Line())
			}
			if rr.Line() <= lastLine || rr.Offset() <= lastOffset || rr.Offset() > int64(len(data)) {
				t.Fatalf("line %d → %d, offset %d → %d of %d", lastLine, rr.Line(), lastOffset, rr.Offset(), len(data))
			}
			lastLine, lastOffset = rr.Line(), rr.Offset()
			if err == nil {
				line := AppendRecordingLine(nil, &m)
				var again Message
				var d Decoder
				if err := d.DecodeRecorded(line[:len(line)-1], &again); err != nil || again != m {
					t.Fatalf("%+v re-encoded as %s decodes to %+v, %v", m, line, again, err)
				}
			}
		}
	})
}
