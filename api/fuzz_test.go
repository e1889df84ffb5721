package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
)

// maxErrorBody bounds an error body: a message quoting at most two inputs of maxQuoted bytes
// (each escaped to at most 4× its size, e.g. \x1b, plus the "…(N bytes)" note).
const maxErrorBody = 1024

// stubBackend answers every query at once: one active instrument (isinA) with one candle.
type stubBackend struct{}

func (stubBackend) Instruments(context.Context) ([]Instrument, error) {
	return []Instrument{{ISIN: isinA, Description: "Alpha"}}, nil
}

func (stubBackend) Candles(_ context.Context, isin feed.ISIN, r pipeline.CandleRange) ([]Candle, error) {
	if isin.String() != isinA {
		return nil, pipeline.ErrUnknownInstrument
	}
	if r.Last == 0 && (r.From >= r.To || r.To-r.From > int64(MaxMinutes)*int64(time.Minute)) {
		panic("invalid range passed to the backend")
	}
	return []Candle{{OpenTimestamp: t0, CloseTimestamp: t0.Add(time.Minute), OpenPrice: 1, HighPrice: 1, LowPrice: 1, ClosePrice: 1, Quotes: 1}}, nil
}

func (stubBackend) HotEvents(context.Context, uint64, int64, int) ([]hot.Event, error) {
	return nil, nil
}

func (stubBackend) HotEventsChanged() <-chan struct{} { return make(chan struct{}) }

// FuzzCandleRange fuzzes the parsing of ?last= and ?from=&to=: it never panics, an accepted
// range is one the backend can serve, and an error message stays short.
func FuzzCandleRange(f *testing.F) {
	for _, s := range []string{
		"", "last=30m", "last=2h", "last=0", "last=-1m", "last=1e9h", "last=9223372036854775807ns",
		"from=2026-11-26T13:00:00Z&to=2026-11-26T14:00:00Z", "from=2026-11-26T13:00:00Z",
		"from=2262-04-11T23:00:00Z&to=2262-04-11T23:59:59Z", "from=1969-12-31T23:59:59Z&to=1970-01-01T00:01:00Z",
		"last=30m&from=x", "from=%1b%5b2J&to=%00", "to=2026-11-26T13:00:00Z&from=2026-11-26T13:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, err := parseCandleRange(q)
		if err != nil {
			if len(err.Error()) > maxErrorBody {
				t.Fatalf("%d-byte error for %q", len(err.Error()), raw)
			}
			return
		}
		switch {
		case r.Last > 0:
			if r.Last > MaxMinutes || r.From != 0 || r.To != 0 {
				t.Fatalf("%q: range %+v", raw, r)
			}
		case r.From >= r.To || r.From < 0 || r.To-r.From > int64(MaxMinutes)*int64(time.Minute):
			t.Fatalf("%q: range %+v", raw, r)
		}
	})
}

// FuzzHandler sends fuzzed requests (method, path and query) through the whole handler: it
// never panics, answers one of the documented statuses, and every error is a short JSON
// {"error":…}.
func FuzzHandler(f *testing.F) {
	for _, s := range [][2]string{
		{"GET", "/instruments"}, {"GET", "/instruments/" + isinA + "/candles?last=30m"},
		{"GET", "/instruments/" + isinA + "/candles?from=2026-11-26T13:00:00Z&to=2026-11-26T14:00:00Z"},
		{"GET", "/instruments/XX/candles"}, {"GET", "/last30m/" + isinA}, {"GET", "/candlesticks?isin=" + isinA},
		{"GET", "/candlesticks"}, {"GET", "/hot?since=2026-11-26T13:00:00Z&after=5&limit=10"},
		{"GET", "/hot?stream=1"}, {"POST", "/instruments"}, {"GET", "/healthz"}, {"GET", "/readyz"},
		{"GET", "/metrics"}, {"GET", "/%1b%5b2J"}, {"HEAD", "/instruments/" + isinB + "/candles"},
		{"GET", "/instruments/" + isinA + "/candles?last=%00"}, {"GET", "//instruments/../x"},
	} {
		f.Add(s[0], s[1])
	}
	h := NewHandler(Options{Backend: stubBackend{}, Logger: quietLogger()})
	f.Fuzz(func(t *testing.T, method, target string) {
		req, err := http.NewRequest(method, "http://quotes"+target, nil)
		if err != nil || req.URL.Host != "quotes" {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if req.URL.Path == "/hot" && wantsEventStream(req) {
			cancel() // an event stream would never end: only check that it starts and stops
		}
		req = req.WithContext(ctx)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		code, body := rec.Code, rec.Body.Bytes()
		switch code {
		case http.StatusOK:
			return
		case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			return // the mux cleaning a path (its Location necessarily repeats it)
		case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusServiceUnavailable:
		default:
			t.Fatalf("%s %q: status %d: %s", method, target, code, body)
		}
		if method == http.MethodHead {
			return
		}
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			t.Fatalf("%s %q: status %d, body %q is not an error object", method, target, code, body)
		}
		if len(body) > maxErrorBody {
			t.Fatalf("%s %q: %d-byte error body", method, target, len(body))
		}
	})
}
