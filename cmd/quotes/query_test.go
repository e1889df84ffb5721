package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/render"
	"github.com/quotesdev/quotes/wal"
)

// replayRule replays one of testdata/rules into a fresh data directory.
func replayRule(t *testing.T, name string) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	mustExecute(t, "replay", "../../testdata/rules/"+name+".jsonl", "--data", data, "--progress", "never")
	return data
}

func TestQueryHot(t *testing.T) {
	data := replayRule(t, "hot")

	var all []map[string]any
	if err := json.Unmarshal([]byte(mustExecute(t, "query", "hot", "--data", data, "--format", "json")), &all); err != nil {
		t.Fatal(err)
	}
	var ids []float64
	for _, e := range all {
		ids = append(ids, e["id"].(float64))
	}
	if len(ids) != 3 || ids[0] != 5 || ids[1] != 9 || ids[2] != 13 {
		t.Errorf("event ids %v, want [5 9 13] (the WAL sequences of the triggering quotes)", ids)
	}

	out := mustExecute(t, "query", "hot", "--data", data, "--since", "2026-11-26T13:10:00Z", "--format", "json")
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 2 {
		t.Errorf("--since 13:10: got %d events (%v), want 2:\n%s", len(all), err, out)
	}

	table := mustExecute(t, "query", "hot", "--data", data)
	want := `ID  TIME (UTC)               ISIN               PRICE   REFERENCE  REFERENCE TIME (UTC)       CHANGE %
 5  2026-11-26 13:05:00.500  HOT000000001  110.000001         100  2026-11-26 13:00:00.000   10.000001
 9  2026-11-26 13:10:01.000  HOT000000001          99  110.000001  2026-11-26 13:05:00.500  -10.000001
13  2026-11-26 13:15:04.000  HOT000000001      449.99         500  2026-11-26 13:10:04.000     -10.002
`
	if table != want {
		t.Errorf("table output:\n%s\nwant:\n%s", table, want)
	}
	checkAligned(t, table, render.HotColumns(false))

	csvOut := mustExecute(t, "query", "hot", "--data", data, "--format", "csv", "--since", "2026-11-26T13:10:00Z")
	wantCSV := `id,ts,isin,price,referencePrice,referenceTs,changePercent
9,2026-11-26T13:10:01Z,HOT000000001,99,110.000001,2026-11-26T13:05:00.5Z,-10.000001
13,2026-11-26T13:15:04Z,HOT000000001,449.99,500,2026-11-26T13:10:04Z,-10.002
`
	if csvOut != wantCSV {
		t.Errorf("csv output:\n%s\nwant:\n%s", csvOut, wantCSV)
	}
}

// checkAligned checks that every line of a table has each right-aligned column ending, and
// each left-aligned one starting, where its title does in the header line.
func checkAligned(t *testing.T, table string, cols []render.Column) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	header := lines[0]
	for _, line := range lines[1:] {
		if strings.HasPrefix(line, "(") { // a footer
			continue
		}
		for _, c := range cols {
			at := strings.Index(header, c.Title)
			if at < 0 {
				t.Fatalf("no column %q in header %q", c.Title, header)
			}
			if c.Right {
				end := at + len(c.Title)
				if len(line) < end || line[end-1] == ' ' || len(line) > end && line[end] != ' ' {
					t.Errorf("column %s is not right-aligned in line\n%q\nunder\n%q", c.Title, line, header)
				}
			} else if len(line) <= at || line[at] == ' ' || at > 0 && line[at-1] != ' ' {
				t.Errorf("column %s is not left-aligned in line\n%q\nunder\n%q", c.Title, line, header)
			}
		}
	}
}

// TestQueryTablesEscapeAndAlign: prices are right-aligned in the instruments and candles
// tables whatever their width; descriptions are printed escaped in table and csv output
// (and exactly in JSON). The replayed description is cleaned of control characters when
// it is decoded, but not of a bidi override or a backslash; a process's API may serve any
// string, and its control characters are escaped on the way out too.
func TestQueryTablesEscapeAndAlign(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "evil.jsonl")
	content := `{"ts":"2026-11-26T13:00:00Z","type":"ADD","data":{"isin":"EVIL00000001","description":"rlo\u202eevil back\\slash esc\u001b[31m café"}}
{"ts":"2026-11-26T13:00:00Z","type":"ADD","data":{"isin":"WIDE00000002","description":"wide"}}
{"ts":"2026-11-26T13:00:00Z","type":"ADD","data":{"isin":"NONE00000003","description":"no quote"}}
{"ts":"2026-11-26T13:00:01Z","type":"QUOTE","data":{"isin":"EVIL00000001","price":1.5}}
{"ts":"2026-11-26T13:00:02Z","type":"QUOTE","data":{"isin":"WIDE00000002","price":123456.789}}
{"ts":"2026-11-26T13:00:03Z","type":"QUOTE","data":{"isin":"EVIL00000001","price":99}}
{"ts":"2026-11-26T13:01:03Z","type":"QUOTE","data":{"isin":"EVIL00000001","price":100000.25}}
`
	if err := os.WriteFile(rec, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	mustExecute(t, "replay", rec, "--data", data, "--progress", "never")

	const escaped = `rlo\u202eevil back\\slash esc` + "\ufffd" + `[31m café` // ESC became U+FFFD when decoded
	table := mustExecute(t, "query", "instruments", "--data", data)
	noControls(t, "the instruments table", table)
	if !strings.Contains(table, escaped+"\n") {
		t.Errorf("the instruments table does not show the description as %s:\n%s", escaped, table)
	}
	checkAligned(t, table, []render.Column{{Title: "ISIN"}, {Title: "PRICE", Right: true}, {Title: "PRICE TIME (UTC)"}, {Title: "DESCRIPTION"}})
	if !regexp.MustCompile(`\nNONE00000003 +-  -  +no quote\n`).MatchString(table) {
		t.Errorf("an instrument without a price is not shown with - right-aligned:\n%s", table)
	}

	csvOut := mustExecute(t, "query", "instruments", "--data", data, "--format", "csv")
	noControls(t, "the instruments csv", csvOut)
	if !strings.Contains(csvOut, "EVIL00000001,"+escaped+",100000.25,") {
		t.Errorf("the instruments csv does not show the description as %s:\n%s", escaped, csvOut)
	}

	var ins []struct{ ISIN, Description string }
	if err := json.Unmarshal([]byte(mustExecute(t, "query", "instruments", "--data", data, "--format", "json")), &ins); err != nil {
		t.Fatal(err)
	}
	if len(ins) != 3 || ins[0].Description != "rlo\u202eevil back\\slash esc\ufffd[31m café" {
		t.Errorf("JSON does not carry the description exactly: %q", ins)
	}

	candles := mustExecute(t, "query", "candles", "EVIL00000001", "--data", data, "--from", "2026-11-26T13:00:00Z", "--to", "2026-11-26T13:02:00Z")
	checkAligned(t, candles, []render.Column{{Title: "MINUTE (UTC)"}, {Title: "OPEN", Right: true}, {Title: "HIGH", Right: true},
		{Title: "LOW", Right: true}, {Title: "CLOSE", Right: true}, {Title: "QUOTES", Right: true}})
	if !strings.Contains(candles, "100000.25") || strings.Count(candles, "\n") != 3 {
		t.Errorf("candles table:\n%s", candles)
	}

	// Through a running process's API, whatever it serves.
	other := replayRule(t, "hot")
	held, err := wal.Open(wal.DefaultOptions(filepath.Join(other, "wal")))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	fake := newFakeHot()
	price, priceTS := feed.Price(1_500_000), time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)
	fake.instruments = []api.Instrument{{ISIN: "EVIL00000001", Description: "\x1b]0;pwned\a\x1b[2J nul\x00 tab\t\u009b1m", Price: &price, PriceTS: &priceTS}}
	serveHot(t, other, fake)
	const escapedAPI = `\x1b]0;pwned\a\x1b[2J nul\x00 tab\t\u009b1m`
	for _, format := range []string{"table", "csv"} {
		out := mustExecute(t, "query", "instruments", "--data", other, "--format", format)
		noControls(t, "the instruments "+format+" through the API", out)
		if !strings.Contains(out, escapedAPI) {
			t.Errorf("the instruments %s through the API does not show the description as %s:\n%s", format, escapedAPI, out)
		}
	}
}

// noControls checks that out has no control character but newlines, and no bidi override.
func noControls(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x202e {
			t.Errorf("%s prints the character %U:\n%s", what, r, out)
			return
		}
	}
}

func TestEscapeText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, é ü 😀 日本", "plain text, é ü 😀 日本"},
		{"", ""},
		{"\x1b[2J\x1b]8;;http://x\x1b\\", `\x1b[2J\x1b]8;;http://x\x1b\\`},
		{"a\x00b\x7fc\u0085d", `a\x00b\x7fc\u0085d`},
		{"line\nbreak\r\ttab\v\f\b\a", `line\nbreak\r\ttab\v\f\b\a`},
		{`back\slash`, `back\\slash`},
		{"\u202eevil\u2066\u2069\u200f\u061c\u2028", `\u202eevil\u2066\u2069\u200f\u061c\u2028`},
		{"bad \xff\xfe utf-8", `bad \xff\xfe utf-8`},
		{"replacement \ufffd stays", "replacement \ufffd stays"},
	} {
		if got := escapeText(tc.in, 0); got != tc.want {
			t.Errorf("escapeText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := escapeText("abc\x1bdef", 4); got != `abc\x1b…` {
		t.Errorf("escapeText cut at 4 runes: %q", got)
	}
}

// TestQueryErrors: bad input exits 2 and names the problem; an unknown or deleted ISIN
// exits 1 and says so (SPEC §5, §8).
func TestQueryErrors(t *testing.T) {
	data := replayRule(t, "registry")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"query", "candles", "not-an-isin"}, 2, `ISIN "not-an-isin"`},
		{[]string{"query", "candles", "dupadd000001"}, 2, "ISIN"},
		{[]string{"query", "candles", "DUPADD000001", "--from", "yesterday", "--to", "2026-11-26T14:00:00Z"}, 2, "--from"},
		{[]string{"query", "candles", "DUPADD000001", "--from", "2026-11-26T14:00:00Z"}, 2, "--from and --to go together"},
		{[]string{"query", "candles", "DUPADD000001", "--from", "2026-11-26T14:00:00Z", "--to", "2026-11-26T13:00:00Z"}, 2, "not after"},
		{[]string{"query", "candles", "DUPADD000001", "--last", "-5m"}, 2, "--last"},
		{[]string{"query", "candles", "DUPADD000001", "--format", "xml"}, 2, "--format"},
		{[]string{"query", "hot", "--since", "noon"}, 2, "--since"},
		{[]string{"query", "candles", "NEVERADDED01"}, 1, "unknown or deleted instrument"},
		{[]string{"query", "candles", "DELETED00001"}, 1, "unknown or deleted instrument"},
		{[]string{"query", "instruments", "--data", filepath.Join(t.TempDir(), "missing")}, 1, "no data directory"},
	} {
		args := tc.args
		if !strings.Contains(strings.Join(args, " "), "--data") {
			args = append(args, "--data", data)
		}
		_, errOut, code := execute(t, args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("quotes %s: exit %d %q, want exit %d mentioning %q", strings.Join(args, " "), code, errOut, tc.code, tc.msg)
		}
	}
}

// TestReplayOversizedLine: a line longer than the 1 MiB limit is rejected as oversized and
// the replay goes on.
func TestReplayOversizedLine(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "big.jsonl")
	content := `{"ts":"2026-11-26T13:00:00Z","type":"ADD","data":{"isin":"OVERSIZED001","description":"x"}}` + "\n" +
		`{"ts":"2026-11-26T13:00:01Z","type":"ADD","data":{"isin":"OVERSIZED002","description":"` + strings.Repeat("y", 2<<20) + `"}}` + "\n" +
		`{"ts":"2026-11-26T13:00:02Z","type":"QUOTE","data":{"isin":"OVERSIZED001","price":12.5}}` + "\n"
	if err := os.WriteFile(rec, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustExecute(t, "replay", rec, "--data", filepath.Join(dir, "data"), "--progress", "never")
	if !regexp.MustCompile(`(?m)^  oversized +1 *$`).MatchString(out) || !strings.Contains(out, "quotes aggregated          1") {
		t.Errorf("summary does not count the oversized line or lost the quote after it:\n%s", out)
	}
}

// watchedBuffer is a syncBuffer that signals every write, so a test can wait for output
// without polling.
type watchedBuffer struct {
	syncBuffer
	wrote chan struct{}
}

func newWatchedBuffer() *watchedBuffer { return &watchedBuffer{wrote: make(chan struct{}, 1)} }

func (b *watchedBuffer) Write(p []byte) (int, error) {
	n, err := b.syncBuffer.Write(p)
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return n, err
}

// waitOutput waits until cond holds for what b holds. It has no time limit of its own: a
// wait that never ends fails shortly before the test binary's deadline.
func waitOutput(t *testing.T, b *watchedBuffer, what string, cond func(string) bool) string {
	t.Helper()
	var deadline <-chan time.Time
	if d, ok := t.Deadline(); ok {
		left := time.Until(d)
		deadline = time.After(left - left/20)
	}
	for {
		if s := b.String(); cond(s) {
			return s
		}
		select {
		case <-b.wrote:
		case <-deadline:
			t.Fatalf("test deadline: still waiting for %s; output so far:\n%s", what, b.String())
		}
	}
}

// fakeHot is an api.Backend with hot events the test adds.
type fakeHot struct {
	mu          sync.Mutex
	events      []hot.Event
	changed     chan struct{}
	instruments []api.Instrument
}

func newFakeHot(events ...hot.Event) *fakeHot {
	return &fakeHot{events: events, changed: make(chan struct{})}
}

func (f *fakeHot) add(e hot.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeHot) Instruments(context.Context) ([]api.Instrument, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Instrument{}, f.instruments...), nil
}

func (f *fakeHot) Candles(context.Context, feed.ISIN, pipeline.CandleRange) ([]api.Candle, error) {
	return nil, pipeline.ErrUnknownInstrument
}

func (f *fakeHot) HotEvents(_ context.Context, after uint64, since int64, limit int) ([]hot.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []hot.Event
	for _, e := range f.events {
		if e.ID > after && e.TS >= since && (limit <= 0 || len(out) < limit) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeHot) HotEventsChanged() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// serveHot serves b's API as the process recorded in data's running.json would; stop ends
// it as a killed process would (connections cut, nothing listening).
func serveHot(t *testing.T, data string, b api.Backend) (addr string, stop func()) {
	t.Helper()
	srv := httptest.NewServer(api.NewHandler(api.Options{Backend: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	addr = strings.TrimPrefix(srv.URL, "http://")
	rp, _ := json.Marshal(engine.Running{PID: os.Getpid(), Command: "ingest", HTTP: addr})
	if err := os.WriteFile(filepath.Join(data, "running.json"), rp, 0o644); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.CloseClientConnections()
			srv.Close()
		})
	}
	t.Cleanup(stop)
	return addr, stop
}

// hotEvent is an event of the fake backend.
func hotEvent(t *testing.T, id uint64, minute int) hot.Event {
	t.Helper()
	isin, ok := feed.ParseISIN("HOT000000001")
	if !ok {
		t.Fatal("bad ISIN")
	}
	ts := time.Date(2026, 11, 26, 14, minute, 0, 0, time.UTC).UnixNano()
	return hot.Event{ID: id, ISIN: isin, TS: ts, Price: 120_000_000, ReferencePrice: 100_000_000,
		ReferenceTS: ts - int64(5*time.Minute), ChangePercent: hot.Change(120_000_000, 100_000_000)}
}

// followIDs extracts the event ids of `query hot --follow` output in each format.
func followIDs(t *testing.T, format, out string) []string {
	t.Helper()
	var ids []string
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		switch format {
		case "json":
			var e struct{ ID json.Number }
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("line %q is not a JSON event: %v", line, err)
			}
			ids = append(ids, e.ID.String())
		case "csv":
			if i > 0 {
				ids = append(ids, strings.Split(line, ",")[0])
			}
		case "table":
			if i > 0 {
				ids = append(ids, strings.Fields(line)[0])
			}
		}
	}
	return ids
}

// TestQueryHotFollow follows a data directory through everything that can happen to the
// process holding it, in each output format: no process holds it at first (it prints the
// stored events and says it waits, without holding the directory), an ingest starts
// (followed from the next event on), stops (it says so), and comes back on another
// address (followed again, resuming after the last event printed: nothing twice, nothing
// skipped). Ctrl-C ends it with exit 0.
func TestQueryHotFollow(t *testing.T) {
	for _, format := range []string{"table", "csv", "json"} {
		t.Run(format, func(t *testing.T) {
			data := replayRule(t, "hot")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out, errOut := newWatchedBuffer(), newWatchedBuffer()
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, []string{"query", "hot", "--follow", "--format", format, "--data", data}, out, errOut)
			}()
			ids := func(n int) func(string) bool {
				return func(s string) bool { return len(followIDs(t, format, s)) >= n }
			}

			waitOutput(t, out, "the stored events", ids(3))
			waitOutput(t, errOut, "the waiting note", func(s string) bool { return strings.Contains(s, "no process holds") })
			// It does not hold the directory while it waits: an ingest could start on it.
			log, err := wal.Open(wal.DefaultOptions(filepath.Join(data, "wal")))
			if err != nil {
				t.Fatalf("the data directory is held while query waits: %v", err)
			}
			log.Close()

			// An "ingest" starts: its stream has the stored events and a new one.
			fake := newFakeHot(hotEvent(t, 5, 0), hotEvent(t, 9, 1), hotEvent(t, 13, 2), hotEvent(t, 20, 3))
			_, stop := serveHot(t, data, fake)
			waitOutput(t, out, "event 20", ids(4))
			waitOutput(t, errOut, "the note that it follows", func(s string) bool { return strings.Contains(s, "resuming after event 13") })
			fake.add(hotEvent(t, 21, 4))
			waitOutput(t, out, "event 21", ids(5))

			// It stops; meanwhile it stores another event; it comes back elsewhere.
			stop()
			waitOutput(t, errOut, "the note that the ingest stopped", func(s string) bool { return strings.Contains(s, "lost `quotes ingest`") })
			fake.add(hotEvent(t, 30, 5))
			serveHot(t, data, fake)
			waitOutput(t, out, "event 30", ids(6))
			waitOutput(t, errOut, "the note that it follows again", func(s string) bool { return strings.Contains(s, "resuming after event 21") })

			cancel()
			if code := <-done; code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			got := out.String()
			if ids := strings.Join(followIDs(t, format, got), " "); ids != "5 9 13 20 21 30" {
				t.Errorf("printed events %s, want 5 9 13 20 21 30 (each once)\n%s", ids, got)
			}
			if strings.Contains(errOut.String(), "connection refused\n") || strings.Contains(errOut.String(), "dial tcp") {
				t.Errorf("stderr shows a raw network error:\n%s", errOut.String())
			}
			switch format {
			case "table":
				// Fixed widths: the rows printed one by one line up with the header.
				checkAligned(t, got, render.HotColumns(true))
				if lines := strings.Split(got, "\n"); len(lines[0]) != len(strings.TrimRight(lines[1], " ")) {
					t.Errorf("header and rows have different widths:\n%s", got)
				}
			case "csv":
				if !strings.HasPrefix(got, "id,ts,isin,price,referencePrice,referenceTs,changePercent\n5,2026-11-26T13:05:00.5Z,HOT000000001,110.000001,100,") {
					t.Errorf("csv output:\n%s", got)
				}
			}
			t.Logf("stderr:\n%s", errOut.String())
		})
	}
}

// TestQueryHotFollowRunning follows a directory that a process holds from the start: the
// stored events come from its stream (--since applies), and when it goes away for good the
// command says so, and that it cannot reach it, in words rather than a raw network error.
func TestQueryHotFollowRunning(t *testing.T) {
	data := replayRule(t, "hot")
	log, err := wal.Open(wal.DefaultOptions(filepath.Join(data, "wal"))) // held, as by ingest
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	fake := newFakeHot(hotEvent(t, 5, 0), hotEvent(t, 9, 10), hotEvent(t, 13, 20))
	addr, stop := serveHot(t, data, fake)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := newWatchedBuffer(), newWatchedBuffer()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"query", "hot", "--follow", "--format", "json", "--since", "2026-11-26T14:10:00Z", "--data", data}, out, errOut)
	}()
	waitOutput(t, out, "the events since 14:10", func(s string) bool { return strings.Count(s, "\n") >= 2 })
	stop()
	msg := waitOutput(t, errOut, "the note that it cannot reach the process", func(s string) bool {
		return strings.Contains(s, "cannot reach `quotes ingest` (pid ")
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if ids := strings.Join(followIDs(t, "json", out.String()), " "); ids != "9 13" {
		t.Errorf("printed events %s, want 9 13", ids)
	}
	if !strings.Contains(msg, "lost `quotes ingest` (pid") || !strings.Contains(msg, "at "+addr+", which holds "+data+": connection refused (the process is gone") ||
		strings.Count(msg, "cannot reach") != 1 {
		t.Errorf("stderr:\n%s", msg)
	}
}
