package api

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/wal"
)

// BenchmarkCandlesLast30m measures GET /instruments/{isin}/candles?last=30m in-process
// (handler only, no network) on random ISINs of a pipeline with 50,000 active instruments
// and 33 minutes of quotes (two per instrument per minute; the minutes before the current
// one are closed and in the embedded store, the current one is open). It reports the p50,
// p99 and max latency of the individual requests. Setup appends ~3.3M quotes and takes a
// while: run it with -benchtime=20000x or so.
func BenchmarkCandlesLast30m(b *testing.B) {
	const (
		instruments = 50_000
		minutes     = 33
		perMinute   = 2
	)
	p := openPipeline(b, wal.SyncNone)
	rng := rand.New(rand.NewPCG(1, 2))
	isins := make([]feed.ISIN, instruments)
	prices := make([]int64, instruments)
	msgs := make([]feed.Message, 0, instruments)
	for i := range isins {
		isins[i], _ = feed.ParseISIN(fmt.Sprintf("BN%010d", i))
		prices[i] = 100_000000 + rng.Int64N(1900_000000)
		msgs = append(msgs, feed.Message{TS: at(0), Kind: feed.KindAdd, ISIN: isins[i], Description: "bench instrument"})
	}
	appendMsgs(b, p, msgs...)
	step := time.Minute / perMinute
	for s := range minutes * perMinute {
		msgs = msgs[:0]
		base := time.Duration(s)*step + time.Second
		for i := range isins {
			// a small random walk; spread the quotes of a step over 20 seconds
			prices[i] += prices[i] / 1000 * (rng.Int64N(5) - 2)
			ts := base + time.Duration(i%20_000)*time.Millisecond
			msgs = append(msgs, feed.Message{TS: at(ts), Kind: feed.KindQuote, ISIN: isins[i], Price: feed.Price(prices[i])})
		}
		slices.SortStableFunc(msgs, func(x, y feed.Message) int { return int(x.TS - y.TS) })
		appendMsgs(b, p, msgs...)
	}
	if err := p.Flush(); err != nil {
		b.Fatal(err)
	}
	h := NewHandler(Options{Backend: PipelineBackend{P: p}, Logger: quietLogger()})

	// sanity: a full 30-candle answer
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/instruments/"+isins[0].String()+"/candles?last=30m", nil))
	if rec.Code != 200 || len(rec.Body.Bytes()) < 30*100 {
		b.Fatalf("%d %s", rec.Code, rec.Body)
	}

	b.Run("handler", func(b *testing.B) {
		reqs := make([]*http.Request, 1024)
		for i := range reqs {
			reqs[i] = httptest.NewRequest(http.MethodGet, "/instruments/"+isins[rng.IntN(instruments)].String()+"/candles?last=30m", nil)
		}
		durs := make([]time.Duration, 0, b.N)
		w := &discardWriter{h: http.Header{}}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r := reqs[i%len(reqs)]
			clear(w.h)
			w.code = 0
			start := time.Now()
			h.ServeHTTP(w, r)
			durs = append(durs, time.Since(start))
			if w.code != http.StatusOK {
				b.Fatalf("status %d", w.code)
			}
		}
		b.StopTimer()
		slices.Sort(durs)
		q := func(f float64) float64 {
			return float64(durs[min(len(durs)-1, int(f*float64(len(durs))))].Nanoseconds())
		}
		b.ReportMetric(q(0.50), "p50-ns")
		b.ReportMetric(q(0.99), "p99-ns")
		b.ReportMetric(float64(durs[len(durs)-1].Nanoseconds()), "max-ns")
	})
}

// discardWriter is a ResponseWriter that keeps only the status code.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(b), nil
}
