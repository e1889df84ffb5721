// Package api is the HTTP API of SPEC §6 — instruments, candles, hot events (JSON and
// Server-Sent Events), metrics and health — and a client for it. The JSON shapes are defined
// here once (Instrument, Candle) and shared with `quotes query`, whose json output is exactly
// the HTTP JSON.
package api

import (
	"context"
	"sync"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
)

// Instrument is one element of GET /instruments.
type Instrument struct {
	ISIN        string      `json:"isin"`
	Description string      `json:"description"`
	Price       *feed.Price `json:"price"`   // null until the first quote
	PriceTS     *time.Time  `json:"priceTs"` // null until the first quote
}

// Candle is one element of GET /instruments/{isin}/candles.
type Candle struct {
	OpenTimestamp  time.Time  `json:"openTimestamp"`
	CloseTimestamp time.Time  `json:"closeTimestamp"`
	OpenPrice      feed.Price `json:"openPrice"`
	HighPrice      feed.Price `json:"highPrice"`
	LowPrice       feed.Price `json:"lowPrice"`
	ClosePrice     feed.Price `json:"closePrice"`
	Quotes         uint64     `json:"quotes"`
}

// InstrumentsView converts registry entries to their JSON form.
func InstrumentsView(in []aggregate.Instrument) []Instrument {
	out := make([]Instrument, len(in))
	for i := range in {
		out[i] = Instrument{ISIN: in[i].ISIN.String(), Description: in[i].Description}
		if in[i].HasPrice {
			p := in[i].Price
			ts := time.Unix(0, in[i].PriceTS).UTC()
			out[i].Price, out[i].PriceTS = &p, &ts
		}
	}
	return out
}

// CandlesView converts candle states to their JSON form.
func CandlesView(in []aggregate.Candle) []Candle {
	return AppendCandlesView(make([]Candle, 0, len(in)), in)
}

// AppendCandlesView appends the JSON form of the candle states in to dst.
func AppendCandlesView(dst []Candle, in []aggregate.Candle) []Candle {
	for i := range in {
		c := &in[i]
		open := time.Unix(0, c.Minute).UTC()
		dst = append(dst, Candle{
			OpenTimestamp:  open,
			CloseTimestamp: open.Add(time.Minute),
			OpenPrice:      c.Open,
			HighPrice:      c.High,
			LowPrice:       c.Low,
			ClosePrice:     c.Close,
			Quotes:         c.Quotes,
		})
	}
	return dst
}

// NowBackend is a Backend that can answer some candle requests at once, from memory,
// without waiting on a lock or I/O: the API serves those without its request timeout
// (Options.RequestTimeout), which costs a goroutine and a timer per request. CandlesNow
// returns ok false for the others, which then go to Candles.
type NowBackend interface {
	Backend
	// AppendCandlesNow appends the answer to dst, if it has it at once (ok).
	AppendCandlesNow(dst []Candle, isin feed.ISIN, r pipeline.CandleRange) (cs []Candle, ok bool, err error)
}

// Backend is what the API serves from: a live pipeline (ingest), a recovered one (serve), or
// another store. Errors: pipeline.ErrUnknownInstrument for an ISIN that is not active.
type Backend interface {
	Instruments(ctx context.Context) ([]Instrument, error)
	Candles(ctx context.Context, isin feed.ISIN, r pipeline.CandleRange) ([]Candle, error)
	// HotEvents returns events with id > afterID and TS ≥ since, in id order, at most limit
	// (≤ 0: all).
	HotEvents(ctx context.Context, afterID uint64, since int64, limit int) ([]hot.Event, error)
	// HotEventsChanged returns a channel closed when new hot events may be available.
	HotEventsChanged() <-chan struct{}
}

// PipelineBackend serves a pipeline.
type PipelineBackend struct {
	P *pipeline.Pipeline
}

// Instruments implements Backend.
func (b PipelineBackend) Instruments(context.Context) ([]Instrument, error) {
	return InstrumentsView(b.P.Instruments()), nil
}

// Candles implements Backend.
func (b PipelineBackend) Candles(_ context.Context, isin feed.ISIN, r pipeline.CandleRange) ([]Candle, error) {
	cs, err := b.P.Candles(isin, r)
	if err != nil {
		return nil, err
	}
	return CandlesView(cs), nil
}

// AppendCandlesNow implements NowBackend (pipeline.Pipeline.CandlesNowInto).
func (b PipelineBackend) AppendCandlesNow(dst []Candle, isin feed.ISIN, r pipeline.CandleRange) ([]Candle, bool, error) {
	qb := queryBuffers.Get().(*pipeline.QueryBuffers)
	defer queryBuffers.Put(qb)
	cs, ok, err := b.P.CandlesNowInto(qb, isin, r)
	if !ok || err != nil {
		return dst, ok, err
	}
	return AppendCandlesView(dst, cs), true, nil
}

// queryBuffers holds the pipeline's query buffers between candle requests (with the
// handler's pools of views and response bytes, a last=30m answer from memory allocates
// next to nothing — at tens of thousands of requests a second, no load on the collector).
var queryBuffers = sync.Pool{New: func() any { return new(pipeline.QueryBuffers) }}

// HotEvents implements Backend.
func (b PipelineBackend) HotEvents(_ context.Context, afterID uint64, since int64, limit int) ([]hot.Event, error) {
	return b.P.HotEvents(afterID, since, limit)
}

// HotEventsChanged implements Backend.
func (b PipelineBackend) HotEventsChanged() <-chan struct{} { return b.P.HotEventsChanged() }
