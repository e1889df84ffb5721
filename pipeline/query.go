package pipeline

import (
	"context"
	"math"
	"sync"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
)

// Now returns the pipeline's "now": the largest event time applied (ticks included), and
// false before the first record.
func (p *Pipeline) Now() (int64, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	_, ok := p.agg.CurrentMinute()
	return p.agg.Watermark(), ok
}

// Stats returns the aggregator's counters.
func (p *Pipeline) Stats() aggregate.Stats {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.agg.Stats()
}

// HotEventsDerived returns how many hot events the pipeline has derived since it opened
// (including those re-derived during recovery).
func (p *Pipeline) HotEventsDerived() uint64 { return p.hotTotal.Load() }

// Instruments returns the active instruments sorted by ISIN.
func (p *Pipeline) Instruments() []aggregate.Instrument {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.agg.Instruments()
}

// Instrument returns the active instrument isin.
func (p *Pipeline) Instrument(isin feed.ISIN) (aggregate.Instrument, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.agg.Instrument(isin)
}

// CandleRange selects the candles of a query: either the last N minutes ending with the
// current minute, or the minutes starting in [From, To).
type CandleRange struct {
	Last     int // number of minutes; used when > 0
	From, To int64
}

// Candles returns the candles of the active instrument isin for r, oldest first, with gaps
// filled (SPEC §4.3): closed minutes from the store, the open minutes from memory.
func (p *Pipeline) Candles(isin feed.ISIN, r CandleRange) ([]aggregate.Candle, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	inst, ok := p.agg.Instrument(isin)
	if !ok {
		return nil, ErrUnknownInstrument
	}
	current, ok := p.agg.CurrentMinute()
	if !ok || !inst.HasPrice {
		return []aggregate.Candle{}, nil
	}
	from, to := r.From, r.To
	if r.Last > 0 {
		from, to = aggregate.LastRange(current, r.Last)
	}
	gr := inst.Range(from, to, current)
	if from < gr.First {
		from = gr.First
	}
	closed, err := p.store.Candles(isin, inst.Incarnation, from, to)
	if err != nil {
		return nil, err
	}
	// With the previous close known (gr.HasPrev: no closed minute with quotes at or after
	// from), no closed candle before from may override it: an inflight late correction
	// of an earlier minute holds only part of that minute.
	lo := int64(math.MinInt64)
	if gr.HasPrev {
		lo = from
	}
	lists := [][]aggregate.Candle{closed, p.agg.OpenCandles(isin), p.inflightCandles(isin, inst.Incarnation, lo, to)}
	if !gr.HasPrev {
		prev, found, err := p.store.CandleBefore(isin, inst.Incarnation, from)
		if err != nil {
			return nil, err
		}
		if found {
			lists = append(lists, []aggregate.Candle{prev})
		}
	}
	out := aggregate.FillGaps(gr, lists...)
	if out == nil {
		out = []aggregate.Candle{}
	}
	return out, nil
}

// HotEvents returns stored hot events with id > afterID and TS ≥ since, in id order, at most
// limit (≤ 0: all).
func (p *Pipeline) HotEvents(afterID uint64, since int64, limit int) ([]hot.Event, error) {
	return p.store.Events(afterID, since, limit)
}

// WaitHotEvents blocks until hot events newer than the last call may be stored, ctx is
// done, or the pipeline closes (then it returns false). Pair it with HotEvents(lastID…).
func (p *Pipeline) WaitHotEvents(ctx context.Context, since <-chan struct{}) bool {
	select {
	case <-ctx.Done():
		return false
	case <-since:
		return !p.eventsChanged.isClosed()
	}
}

// OutboxChanged returns a channel closed when new outbox items are stored (or the pipeline
// closes): export.Consumer waits on it.
func (p *Pipeline) OutboxChanged() <-chan struct{} { return p.outboxChanged.wait() }

// HotEventsChanged returns a channel closed at the next change of stored hot events.
func (p *Pipeline) HotEventsChanged() <-chan struct{} { return p.eventsChanged.wait() }

// notifier is a broadcast: wait returns a channel that notify closes.
type notifier struct {
	mu     sync.Mutex
	ch     chan struct{}
	closed bool
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	close(n.ch)
	n.ch = make(chan struct{})
}

func (n *notifier) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.closed = true
		close(n.ch)
	}
}

func (n *notifier) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// inflightCandles returns the closed and late candles of (isin, incarnation) with
// lo ≤ minute < to that were derived and not yet written to the store (those before the
// range serve FillGaps as the previous close); p.mu must be held.
func (p *Pipeline) inflightCandles(isin feed.ISIN, incarnation uint64, lo, to int64) []aggregate.Candle {
	var out []aggregate.Candle
	for _, d := range p.inflight {
		for _, list := range [][]aggregate.Candle{d.closed, d.late} {
			for i := range list {
				c := &list[i]
				if c.ISIN == isin && c.Incarnation == incarnation && c.Minute >= lo && c.Minute < to {
					out = append(out, *c)
				}
			}
		}
	}
	return out
}
