package api

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
)

// ErrNotReady means the backend cannot answer yet (the process is still recovering its
// state); the API answers 503.
var ErrNotReady = errors.New("not ready")

// Recovery is the progress of a recovery, as /readyz shows it.
type Recovery struct {
	// Replayed and Total are WAL records re-applied so far and to re-apply.
	Replayed uint64 `json:"replayed"`
	Total    uint64 `json:"total"`
	// ETASeconds is the estimated time left (null while unknown).
	ETASeconds *float64 `json:"etaSeconds"`
}

// NotReadyError is an Options.Ready error with recovery progress: /readyz answers 503 with
// {"error": …, "recovery": {…}}.
type NotReadyError struct {
	Reason   string
	Recovery *Recovery
}

func (e *NotReadyError) Error() string { return e.Reason }
func (e *NotReadyError) Unwrap() error { return ErrNotReady }

// DeferredBackend is a Backend that answers ErrNotReady (503) until Set gives it the real
// one: it lets the HTTP API start before a slow recovery, so /healthz answers at once.
type DeferredBackend struct {
	mu      sync.RWMutex
	b       Backend
	set     chan struct{}
	reason  string
	setOnce sync.Once
}

// NewDeferredBackend returns a backend that is not ready for reason until Set.
func NewDeferredBackend(reason string) *DeferredBackend {
	return &DeferredBackend{set: make(chan struct{}), reason: reason}
}

// Set makes b answer from now on.
func (d *DeferredBackend) Set(b Backend) {
	d.mu.Lock()
	d.b = b
	d.mu.Unlock()
	d.setOnce.Do(func() { close(d.set) })
}

func (d *DeferredBackend) get() (Backend, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.b == nil {
		return nil, fmt.Errorf("%s: %w", d.reason, ErrNotReady)
	}
	return d.b, nil
}

// Instruments implements Backend.
func (d *DeferredBackend) Instruments(ctx context.Context) ([]Instrument, error) {
	b, err := d.get()
	if err != nil {
		return nil, err
	}
	return b.Instruments(ctx)
}

// Candles implements Backend.
func (d *DeferredBackend) Candles(ctx context.Context, isin feed.ISIN, r pipeline.CandleRange) ([]Candle, error) {
	b, err := d.get()
	if err != nil {
		return nil, err
	}
	return b.Candles(ctx, isin, r)
}

// AppendCandlesNow implements NowBackend: the backend's, once set and if it is one.
func (d *DeferredBackend) AppendCandlesNow(dst []Candle, isin feed.ISIN, r pipeline.CandleRange) ([]Candle, bool, error) {
	b, err := d.get()
	if err != nil {
		return dst, false, nil // not ready: Candles says so
	}
	if nb, ok := b.(NowBackend); ok {
		return nb.AppendCandlesNow(dst, isin, r)
	}
	return dst, false, nil
}

// HotEvents implements Backend.
func (d *DeferredBackend) HotEvents(ctx context.Context, afterID uint64, since int64, limit int) ([]hot.Event, error) {
	b, err := d.get()
	if err != nil {
		return nil, err
	}
	return b.HotEvents(ctx, afterID, since, limit)
}

// HotEventsChanged implements Backend: before Set, a channel closed by Set.
func (d *DeferredBackend) HotEventsChanged() <-chan struct{} {
	b, err := d.get()
	if err != nil {
		return d.set
	}
	return b.HotEventsChanged()
}
