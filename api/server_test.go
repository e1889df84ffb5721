package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

const (
	isinA = "DE000ALPHA01" // quotes, a gap, a hot move
	isinB = "US000BETA002" // no quote yet
	isinD = "GB00DELTA003" // deleted
)

// scenario appends a small hand-written feed: see the comments for what each part tests.
func scenario(t *testing.T, p *pipeline.Pipeline) {
	t.Helper()
	appendMsgs(t, p,
		add(t, 0, isinA, "Alpha AG"),
		add(t, 0, isinB, `Beta "Inc" & <Co>`),
		add(t, 0, isinD, "Delta plc"),
		// minute 0: three quotes
		quote(t, 5*time.Second, isinA, 100_000000),
		quote(t, 30*time.Second, isinA, 101_500000),
		quote(t, 50*time.Second, isinA, 99_250000),
		quote(t, 55*time.Second, isinD, 50_000000),
		// minute 1: none (gap, flat at 99.25)
		quote(t, 2*time.Minute+10*time.Second, isinA, 100_125000),
		quote(t, 3*time.Minute+20*time.Second, isinA, 102_000000),
		quote(t, 3*time.Minute+40*time.Second, isinA, 98_000100),
		// minute 4: none (gap, flat at 98.0001)
		quote(t, 5*time.Minute+30*time.Second, isinA, 100_000000),
		// hot: the reference is 99.25 (at 0:50, the latest at or before 6:10 − 5m)
		quote(t, 6*time.Minute+10*time.Second, isinA, 115_000000),
		quote(t, 6*time.Minute+20*time.Second, isinA, 116_000000), // still hot: no event
		del(t, 6*time.Minute+30*time.Second, isinD),
		quote(t, 7*time.Minute+5*time.Second, isinD, 51_000000), // held, not aggregated
	)
}

func newScenarioServer(t *testing.T) (*httptest.Server, *pipeline.Pipeline) {
	t.Helper()
	p := openPipeline(t, wal.SyncNone)
	scenario(t, p)
	srv := httptest.NewServer(NewHandler(Options{Backend: PipelineBackend{P: p}, Logger: quietLogger()}))
	t.Cleanup(srv.Close)
	return srv, p
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// response renders a response for a golden file.
func response(t *testing.T, resp *http.Response) []byte {
	body := readBody(t, resp)
	return fmt.Appendf(nil, "HTTP %d\nContent-Type: %s\n\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
}

func TestEndpoints(t *testing.T) {
	srv, _ := newScenarioServer(t)
	cases := []struct {
		name, path, golden string
		method             string
		status             int
	}{
		{"instruments", "/instruments", "instruments.golden", "", 200},
		{"candles default", "/instruments/" + isinA + "/candles", "candles_last30m.golden", "", 200},
		{"candles last=30m", "/instruments/" + isinA + "/candles?last=30m", "candles_last30m.golden", "", 200},
		{"alias last30m", "/last30m/" + isinA, "candles_last30m.golden", "", 200},
		{"alias candlesticks", "/candlesticks?isin=" + isinA, "candles_last30m.golden", "", 200},
		{"candles last=90s rounds up to 2 minutes", "/instruments/" + isinA + "/candles?last=90s", "candles_last90s.golden", "", 200},
		{"candles from/to", "/instruments/" + isinA + "/candles?from=2026-11-26T13:01:00Z&to=2026-11-26T13:04:00Z", "candles_range.golden", "", 200},
		{"candles from/to off the minute", "/instruments/" + isinA + "/candles?from=2026-11-26T13:00:30Z&to=2026-11-26T13:02:30Z", "candles_range_unaligned.golden", "", 200},
		{"candles from/to after now", "/instruments/" + isinA + "/candles?from=2026-11-26T14:00:00Z&to=2026-11-26T15:00:00Z", "empty.golden", "", 200},
		{"candles of an instrument without quotes", "/instruments/" + isinB + "/candles", "empty.golden", "", 200},
		{"hot as JSON", "/hot?format=json", "hot.golden", "", 200},
		{"hot since", "/hot?since=2026-11-26T13:06:10Z&limit=10", "hot.golden", "", 200},
		{"hot since after the event", "/hot?since=2026-11-26T13:06:10.000000001Z", "empty.golden", "", 200},
		{"hot after", "/hot?after=12", "empty.golden", "", 200},
		{"healthz", "/healthz", "healthz.golden", "", 200},
		{"readyz", "/readyz", "readyz.golden", "", 200},

		{"deleted instrument", "/instruments/" + isinD + "/candles", "err_deleted.golden", "", 404},
		{"deleted instrument, alias", "/last30m/" + isinD, "err_deleted.golden", "", 404},
		{"unknown instrument", "/instruments/ZZ0000000000/candles", "err_unknown.golden", "", 404},
		{"lower-case ISIN", "/instruments/de000alpha01/candles", "err_isin_lower.golden", "", 400},
		{"short ISIN", "/instruments/DE000/candles", "err_isin_short.golden", "", 400},
		{"candlesticks without isin", "/candlesticks", "err_candlesticks_no_isin.golden", "", 400},
		{"candlesticks bad isin", "/candlesticks?isin=DE000ALPHA0!", "err_candlesticks_bad_isin.golden", "", 400},
		{"last not a duration", "/instruments/" + isinA + "/candles?last=abc", "err_last_syntax.golden", "", 400},
		{"last zero", "/instruments/" + isinA + "/candles?last=0s", "err_last_zero.golden", "", 400},
		{"last too long", "/instruments/" + isinA + "/candles?last=2000h", "err_last_long.golden", "", 400},
		{"last with from", "/instruments/" + isinA + "/candles?last=30m&from=2026-11-26T13:00:00Z", "err_last_from.golden", "", 400},
		{"from without to", "/instruments/" + isinA + "/candles?from=2026-11-26T13:00:00Z", "err_from_alone.golden", "", 400},
		{"from malformed", "/instruments/" + isinA + "/candles?from=yesterday&to=2026-11-26T13:00:00Z", "err_from_syntax.golden", "", 400},
		{"to before from", "/instruments/" + isinA + "/candles?from=2026-11-26T13:00:00Z&to=2026-11-26T12:00:00Z", "err_to_before.golden", "", 400},
		{"range too long", "/instruments/" + isinA + "/candles?from=2020-01-01T00:00:00Z&to=2026-11-26T12:00:00Z", "err_range_long.golden", "", 400},
		{"hot since malformed", "/hot?since=now", "err_hot_since.golden", "", 400},
		{"hot after negative", "/hot?after=-1", "err_hot_after.golden", "", 400},
		{"hot limit malformed", "/hot?limit=ten", "err_hot_limit.golden", "", 400},
		{"hot stream bad Last-Event-ID", "/hot?stream=1&lastEventId=x", "err_last_event_id.golden", "", 400},
		{"POST", "/instruments", "err_method.golden", http.MethodPost, 405},
		{"no such path", "/nope", "err_path.golden", "", 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = http.MethodGet
			}
			resp := do(t, method, srv.URL+c.path)
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != contentTypeJSON {
				t.Errorf("Content-Type %q", ct)
			}
			if c.method == http.MethodPost && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
			golden(t, c.golden, response(t, resp))
		})
	}
}

// The candles golden files pin what the scenario must give; this checks the parts of it
// that matter by name, so that a wrong golden file cannot go unnoticed.
func TestCandlesSemantics(t *testing.T) {
	srv, _ := newScenarioServer(t)
	var cs []struct {
		OpenTimestamp time.Time `json:"openTimestamp"`
		OpenPrice     json.Number
		ClosePrice    json.Number
		HighPrice     json.Number
		LowPrice      json.Number
		Quotes        int
	}
	if err := json.Unmarshal(readBody(t, get(t, srv.URL+"/instruments/"+isinA+"/candles")), &cs); err != nil {
		t.Fatal(err)
	}
	if len(cs) != 8 {
		t.Fatalf("%d candles, want 8 (minutes 0 to 7)", len(cs))
	}
	for i, c := range cs {
		if want := t0.Add(time.Duration(i) * time.Minute); !c.OpenTimestamp.Equal(want) {
			t.Errorf("candle %d opens %s, want %s", i, c.OpenTimestamp, want)
		}
	}
	if c := cs[0]; c.OpenPrice != "100" || c.HighPrice != "101.5" || c.LowPrice != "99.25" || c.ClosePrice != "99.25" || c.Quotes != 3 {
		t.Errorf("minute 0: %+v", c)
	}
	if c := cs[1]; c.OpenPrice != "99.25" || c.HighPrice != "99.25" || c.LowPrice != "99.25" || c.ClosePrice != "99.25" || c.Quotes != 0 {
		t.Errorf("minute 1 (gap): %+v", c)
	}
	if c := cs[4]; c.OpenPrice != "98.0001" || c.ClosePrice != "98.0001" || c.Quotes != 0 {
		t.Errorf("minute 4 (gap): %+v", c)
	}
	if c := cs[7]; c.OpenPrice != "116" || c.Quotes != 0 {
		t.Errorf("minute 7 (current, no quote yet): %+v", c)
	}

	var ins []Instrument
	if err := json.Unmarshal(readBody(t, get(t, srv.URL+"/instruments")), &ins); err != nil {
		t.Fatal(err)
	}
	if len(ins) != 2 || ins[0].ISIN != isinA || ins[1].ISIN != isinB {
		t.Fatalf("instruments %+v, want %s and %s", ins, isinA, isinB)
	}
	if ins[0].Price == nil || *ins[0].Price != 116_000000 || ins[1].Price != nil || ins[1].PriceTS != nil {
		t.Errorf("prices: %+v %+v", ins[0], ins[1])
	}
}

func TestCandlesJSONMatchesEncodingJSON(t *testing.T) {
	cs := []Candle{{
		OpenTimestamp: t0, CloseTimestamp: t0.Add(time.Minute),
		OpenPrice: 1, HighPrice: 1_000_000_000_000000, LowPrice: 123_456789, ClosePrice: 100_000000, Quotes: 42,
	}, {
		OpenTimestamp: t0.Add(time.Minute), CloseTimestamp: t0.Add(2 * time.Minute),
		OpenPrice: 5, HighPrice: 5, LowPrice: 5, ClosePrice: 5,
	}}
	for _, in := range [][]Candle{nil, {}, cs[:1], cs} {
		want, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if in == nil {
			want = []byte("[]") // the handler never answers null
		}
		if got := appendCandlesJSON(nil, in); string(got) != string(want) {
			t.Errorf("appendCandlesJSON:\n got %s\nwant %s", got, want)
		}
	}
}

func TestInstrumentDeletedThenReused(t *testing.T) {
	p := openPipeline(t, wal.SyncNone)
	srv := httptest.NewServer(NewHandler(Options{Backend: PipelineBackend{P: p}, Logger: quietLogger()}))
	defer srv.Close()
	appendMsgs(t, p, add(t, 0, isinA, "first"), quote(t, time.Second, isinA, 10_000000))
	if resp := get(t, srv.URL+"/last30m/"+isinA); resp.StatusCode != 200 {
		t.Fatalf("before DELETE: %d %s", resp.StatusCode, readBody(t, resp))
	} else {
		resp.Body.Close()
	}
	appendMsgs(t, p, del(t, 2*time.Second, isinA))
	resp := get(t, srv.URL+"/last30m/"+isinA)
	if body := readBody(t, resp); resp.StatusCode != 404 || !strings.Contains(string(body), "unknown or deleted") {
		t.Fatalf("after DELETE: %d %s", resp.StatusCode, body)
	}
	// a new incarnation does not mix with the old one
	appendMsgs(t, p, add(t, 3*time.Second, isinA, "second"), quote(t, 4*time.Second, isinA, 20_000000))
	var cs []Candle
	if err := json.Unmarshal(readBody(t, get(t, srv.URL+"/last30m/"+isinA)), &cs); err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].OpenPrice != 20_000000 || cs[0].Quotes != 1 {
		t.Errorf("after re-ADD: %+v", cs)
	}
}

func TestReadyz(t *testing.T) {
	var notReady atomic.Pointer[error]
	err := errors.New("recovering the WAL")
	notReady.Store(&err)
	h := NewHandler(Options{Backend: fakeBackend{}, Logger: quietLogger(), Ready: func() error {
		if e := notReady.Load(); e != nil {
			return *e
		}
		return nil
	}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp := get(t, srv.URL+"/readyz")
	if body := readBody(t, resp); resp.StatusCode != 503 || string(body) != `{"error":"recovering the WAL"}`+"\n" {
		t.Errorf("not ready: %d %s", resp.StatusCode, body)
	}
	notReady.Store(nil)
	resp = get(t, srv.URL+"/readyz")
	if body := readBody(t, resp); resp.StatusCode != 200 || string(body) != `{"status":"ready"}`+"\n" {
		t.Errorf("ready: %d %s", resp.StatusCode, body)
	}
	resp = get(t, srv.URL+"/healthz")
	if body := readBody(t, resp); resp.StatusCode != 200 || string(body) != `{"status":"ok"}`+"\n" {
		t.Errorf("healthz: %d %s", resp.StatusCode, body)
	}
}

func TestMetrics(t *testing.T) {
	srv, p := newScenarioServer(t)
	srv.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewPipelineCollector(p))
	h := NewHandler(Options{Backend: PipelineBackend{P: p}, Gatherer: reg, Registerer: reg, Logger: quietLogger()})
	// a second handler on the same registry reuses the HTTP metrics instead of panicking
	_ = NewHandler(Options{Backend: PipelineBackend{P: p}, Registerer: reg})
	srv = httptest.NewServer(h)
	defer srv.Close()
	readBody(t, get(t, srv.URL+"/instruments"))
	readBody(t, get(t, srv.URL+"/instruments/"+isinA+"/candles"))
	readBody(t, get(t, srv.URL+"/instruments/"+isinD+"/candles"))
	resp := get(t, srv.URL+"/metrics")
	body := string(readBody(t, resp))
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`quotes_http_requests_total{code="200",route="/instruments"} 1`,
		`quotes_http_requests_total{code="200",route="/instruments/{isin}/candles"} 1`,
		`quotes_http_requests_total{code="404",route="/instruments/{isin}/candles"} 1`,
		`quotes_http_request_duration_seconds_bucket{route="/instruments/{isin}/candles",le="+Inf"} 2`,
		"quotes_http_sse_streams 0",
		"quotes_aggregated_total 10",
		`quotes_dropped_total{reason="inactive_expired"} 0`,
		`quotes_dropped_total{reason="inactive_at_end"} 0`,
		"quotes_late_total 0",
		"quotes_instruments_active 2",
		"quotes_held_quotes 1",
		fmt.Sprintf("quotes_wal_applied_seq %d", p.Applied()),
		"quotes_hot_events_total 1",
		"quotes_candles_closed_total ",
		`quotes_instrument_events_total{event="delete"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}

	// without a Gatherer, /metrics is a JSON 404
	srv2 := httptest.NewServer(NewHandler(Options{Backend: fakeBackend{}}))
	defer srv2.Close()
	if resp := get(t, srv2.URL+"/metrics"); resp.StatusCode != 404 {
		t.Errorf("/metrics without Gatherer: %d", resp.StatusCode)
	} else {
		resp.Body.Close()
	}
}

// fakeBackend is a Backend for the paths a real pipeline does not take (failures, delays).
type fakeBackend struct {
	err   error
	block <-chan struct{} // Candles waits for it (or the request's end)
}

func (f fakeBackend) Instruments(context.Context) ([]Instrument, error) { return nil, f.err }

func (f fakeBackend) Candles(ctx context.Context, _ feed.ISIN, _ pipeline.CandleRange) ([]Candle, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, f.err
}

func (f fakeBackend) HotEvents(context.Context, uint64, int64, int) ([]hot.Event, error) {
	return nil, f.err
}

func (f fakeBackend) HotEventsChanged() <-chan struct{} { return make(chan struct{}) }

func TestInternalError(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	srv := httptest.NewServer(NewHandler(Options{Backend: fakeBackend{err: errors.New("disk on fire")}, Logger: log}))
	defer srv.Close()
	for _, path := range []string{"/instruments", "/last30m/" + isinA, "/hot?format=json"} {
		resp := get(t, srv.URL+path)
		if body := readBody(t, resp); resp.StatusCode != 500 || string(body) != `{"error":"disk on fire"}`+"\n" {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	if !strings.Contains(logged.String(), "disk on fire") {
		t.Errorf("500 not logged: %q", logged.String())
	}
	// empty answers are [] rather than null
	srv2 := httptest.NewServer(NewHandler(Options{Backend: fakeBackend{}, Logger: quietLogger()}))
	defer srv2.Close()
	for _, path := range []string{"/instruments", "/last30m/" + isinA, "/hot?format=json"} {
		if body := readBody(t, get(t, srv2.URL+path)); string(body) != "[]\n" {
			t.Errorf("%s: %s", path, body)
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	srv := httptest.NewServer(NewHandler(Options{Backend: fakeBackend{block: block}, Logger: quietLogger(), RequestTimeout: 20 * time.Millisecond}))
	defer srv.Close()
	resp := get(t, srv.URL+"/last30m/"+isinA)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != contentTypeJSON ||
		string(body) != `{"error":"request timed out after 20ms"}` {
		t.Errorf("timeout: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// The Client (what `quotes query` uses against a running process) reads exactly what the
// backend holds.
func TestClientRoundTrip(t *testing.T) {
	srv, p := newScenarioServer(t)
	ctx := context.Background()
	c := NewClient(srv.URL)
	direct := PipelineBackend{P: p}

	gotIns, err := c.Instruments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantIns, _ := direct.Instruments(ctx)
	if a, b := mustJSON(t, gotIns), mustJSON(t, wantIns); a != b {
		t.Errorf("instruments:\n got %s\nwant %s", a, b)
	}
	for _, r := range []pipeline.CandleRange{{Last: 30}, {Last: 3}, {From: at(time.Minute), To: at(4 * time.Minute)}} {
		got, err := c.Candles(ctx, isin(t, isinA), r)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := direct.Candles(ctx, isin(t, isinA), r)
		if a, b := mustJSON(t, got), mustJSON(t, want); a != b {
			t.Errorf("candles %+v:\n got %s\nwant %s", r, a, b)
		}
	}
	if _, err := c.Candles(ctx, isin(t, isinD), pipeline.CandleRange{Last: 30}); !errors.Is(err, pipeline.ErrUnknownInstrument) {
		t.Errorf("deleted instrument through the client: %v", err)
	}
	gotEv, err := c.HotEvents(ctx, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantEv, _ := direct.HotEvents(ctx, 0, 0, 0)
	if len(wantEv) != 1 || mustJSON(t, gotEv) != mustJSON(t, wantEv) {
		t.Errorf("hot events:\n got %s\nwant %s", mustJSON(t, gotEv), mustJSON(t, wantEv))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseLast(t *testing.T) {
	for in, want := range map[string]int{"30m": 30, "1m": 1, "1s": 1, "61s": 2, "2h": 120, "1666h40m": 100000} {
		if got, err := parseLast(in); err != nil || got != want {
			t.Errorf("parseLast(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30", "-1m", "0", "1666h41m", "9223372036s", "2562047h47m16.854775807s"} {
		if _, err := parseLast(in); err == nil || !strings.Contains(err.Error(), "parameter last") {
			t.Errorf("parseLast(%q): %v", in, err)
		}
	}
}

// nowCounter is a NowBackend that counts the requests AppendCandlesNow answered.
type nowCounter struct {
	PipelineBackend
	answered *atomic.Int64
}

func (b nowCounter) AppendCandlesNow(dst []Candle, isin feed.ISIN, r pipeline.CandleRange) ([]Candle, bool, error) {
	cs, ok, err := b.PipelineBackend.AppendCandlesNow(dst, isin, r)
	if ok {
		b.answered.Add(1)
	}
	return cs, ok, err
}

// TestCandlesNowSameAnswers: a candles request answered at once from the pipeline's
// memory (NowBackend) gets the same response — status, headers, body — as one through the
// request timeout and Backend.Candles.
func TestCandlesNowSameAnswers(t *testing.T) {
	p := openPipeline(t, wal.SyncNone)
	scenario(t, p)
	var answered atomic.Int64
	fast := httptest.NewServer(NewHandler(Options{Backend: nowCounter{PipelineBackend{P: p}, &answered}, Logger: quietLogger()}))
	defer fast.Close()
	slow := httptest.NewServer(NewHandler(Options{Backend: struct{ Backend }{PipelineBackend{P: p}}, Logger: quietLogger()}))
	defer slow.Close()
	paths := []string{
		"/instruments/" + isinA + "/candles", "/instruments/" + isinA + "/candles?last=30m", "/last30m/" + isinA,
		"/candlesticks?isin=" + isinA, "/instruments/" + isinA + "/candles?last=90s",
		"/instruments/" + isinA + "/candles?last=3m", "/instruments/" + isinA + "/candles?last=2h",
		"/instruments/" + isinA + "/candles?from=2026-11-26T13:01:00Z&to=2026-11-26T13:04:00Z",
		"/instruments/" + isinA + "/candles?from=2026-11-26T13:00:30Z&to=2026-11-26T13:02:30Z",
		"/instruments/" + isinA + "/candles?from=2026-11-26T14:00:00Z&to=2026-11-26T15:00:00Z",
		"/instruments/" + isinB + "/candles", "/instruments/" + isinD + "/candles", "/last30m/" + isinD,
		"/instruments/ZZ0000000000/candles", "/instruments/de000alpha01/candles", "/candlesticks",
		"/candlesticks?isin=DE000ALPHA0!", "/instruments/" + isinA + "/candles?last=abc",
		"/instruments/" + isinA + "/candles?from=2026-11-26T13:00:00Z",
	}
	for _, path := range paths {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			f, s := do(t, method, fast.URL+path), do(t, method, slow.URL+path)
			fb, sb := readBody(t, f), readBody(t, s)
			for _, h := range []string{"Content-Type", "Content-Length", "Transfer-Encoding"} {
				if f.Header.Get(h) != s.Header.Get(h) {
					t.Errorf("%s %s: %s %q, through the timeout %q", method, path, h, f.Header.Get(h), s.Header.Get(h))
				}
			}
			if f.StatusCode != s.StatusCode || !bytes.Equal(fb, sb) {
				t.Errorf("%s %s: %d %s\nthrough the timeout: %d %s", method, path, f.StatusCode, fb, s.StatusCode, sb)
			}
		}
	}
	if answered.Load() < 20 {
		t.Errorf("CandlesNow answered %d requests: the test covers too little", answered.Load())
	}
}

// nowFake is a fakeBackend whose AppendCandlesNow answers (ok) or defers to Candles.
type nowFake struct {
	fakeBackend
	ok bool
}

func (f nowFake) AppendCandlesNow(dst []Candle, _ feed.ISIN, _ pipeline.CandleRange) ([]Candle, bool, error) {
	return dst, f.ok, nil
}

// TestCandlesNowTimeout: what AppendCandlesNow does not answer still gets the request timeout;
// what it answers does not wait for Candles.
func TestCandlesNowTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	for _, ok := range []bool{false, true} {
		srv := httptest.NewServer(NewHandler(Options{Backend: nowFake{fakeBackend{block: block}, ok}, Logger: quietLogger(), RequestTimeout: 20 * time.Millisecond}))
		resp := get(t, srv.URL+"/instruments/"+isinA+"/candles")
		body := readBody(t, resp)
		srv.Close()
		switch {
		case !ok && (resp.StatusCode != http.StatusServiceUnavailable || string(body) != `{"error":"request timed out after 20ms"}`):
			t.Errorf("deferred to Candles, which blocks: %d %s", resp.StatusCode, body)
		case ok && (resp.StatusCode != http.StatusOK || string(body) != "[]\n"):
			t.Errorf("answered by CandlesNow: %d %s", resp.StatusCode, body)
		}
	}
}
