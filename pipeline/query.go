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
// filled (SPEC §4.3), each with its minute, prices and quote count (not the times and
// sequences of its first and last quotes): the open minutes from the aggregator, the
// closed ones from the candle tail when it covers the range (tail.go), otherwise from the
// store and the runs not committed yet.
func (p *Pipeline) Candles(isin feed.ISIN, r CandleRange) ([]aggregate.Candle, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var qb QueryBuffers
	out, _, err := p.candles(isin, r, true, &qb)
	return out, err
}

// CandlesNow is Candles when the answer is at hand, in memory: ok is false (and nothing
// else is returned) when it would have to wait for a batch being applied or read the
// store. For callers that otherwise bound the time a query may take (the API's request
// timeout, which costs a goroutine and a timer per request): an answer from memory needs
// no bound.
func (p *Pipeline) CandlesNow(isin feed.ISIN, r CandleRange) (cs []aggregate.Candle, ok bool, err error) {
	var qb QueryBuffers
	return p.CandlesNowInto(&qb, isin, r)
}

// CandlesNowInto is CandlesNow working in qb: what it returns is qb's, valid until qb's next
// use. A caller that answers many queries keeps a QueryBuffers per concurrent query (in a
// sync.Pool), so that an answer from memory allocates nothing.
func (p *Pipeline) CandlesNowInto(qb *QueryBuffers, isin feed.ISIN, r CandleRange) (cs []aggregate.Candle, ok bool, err error) {
	if !p.mu.TryRLock() {
		return nil, false, nil
	}
	defer p.mu.RUnlock()
	return p.candles(isin, r, false, qb)
}

// QueryBuffers is the working space of a candle query (CandlesNowInto), kept from one query
// to the next. The zero value is ready to use; one query at a time may use it.
type QueryBuffers struct {
	open, closed []aggregate.Candle
	prev         [1]aggregate.Candle
	lists        [][]aggregate.Candle
	gaps         aggregate.GapFiller
}

// candles answers Candles in qb; without useStore, it answers only from memory (ok false
// otherwise). p.mu must be held.
func (p *Pipeline) candles(isin feed.ISIN, r CandleRange, useStore bool, qb *QueryBuffers) ([]aggregate.Candle, bool, error) {
	inst, ok := p.agg.Instrument(isin)
	if !ok {
		return nil, true, ErrUnknownInstrument
	}
	current, ok := p.agg.CurrentMinute()
	if !ok || !inst.HasPrice {
		return []aggregate.Candle{}, true, nil
	}
	from, to := r.From, r.To
	if r.Last > 0 {
		from, to = aggregate.LastRange(current, r.Last)
	}
	gr := inst.Range(from, to, current)
	if from < gr.First {
		from = gr.First
	}
	open := p.agg.AppendOpenCandles(qb.open[:0], isin)
	qb.open = open
	lists, ok := p.tailCandles(&inst, &gr, from, to, open, qb)
	switch {
	case ok:
		p.tailServed.Add(1)
	case !useStore:
		return nil, false, nil
	default:
		p.storeServed.Add(1)
		var err error
		if lists, err = p.storeCandles(&inst, &gr, from, to, open); err != nil {
			return nil, true, err
		}
	}
	qb.lists = lists[:0]
	out := qb.gaps.Fill(gr, lists...)
	if out == nil {
		out = []aggregate.Candle{}
	}
	// The same answer from the tail and from the store: the tail keeps no quote times or
	// sequences.
	for i := range out {
		out[i] = queryCandle(out[i])
	}
	return out, true, nil
}

// storeCandles returns the candle lists for FillGaps from the store and the runs not
// committed yet (p.inflight); p.mu must be held.
func (p *Pipeline) storeCandles(inst *aggregate.Instrument, gr *aggregate.GapRange, from, to int64, open []aggregate.Candle) ([][]aggregate.Candle, error) {
	p.inflightMu.RLock()
	defer p.inflightMu.RUnlock()
	closed, err := p.store.Candles(inst.ISIN, inst.Incarnation, from, to)
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
	lists := [][]aggregate.Candle{closed, open, p.inflightCandles(inst.ISIN, inst.Incarnation, lo, to)}
	if !gr.HasPrev {
		prev, found, err := p.store.CandleBefore(inst.ISIN, inst.Incarnation, from)
		if err != nil {
			return nil, err
		}
		if found {
			lists = append(lists, []aggregate.Candle{prev})
		}
	}
	return lists, nil
}

// tailCandles returns the candle lists for FillGaps from the candle tail, in qb, and false
// when the tail does not know all that the answer depends on; p.mu must be held.
func (p *Pipeline) tailCandles(inst *aggregate.Instrument, gr *aggregate.GapRange, from, to int64, open []aggregate.Candle, qb *QueryBuffers) ([][]aggregate.Candle, bool) {
	if !p.tail.enabled() {
		return nil, false
	}
	if gr.HasPrev || !inst.HasLastClose {
		// No closed minute with quotes, or all of them before from (LastCloseMinute < from)
		// and the previous close is the instrument's: nothing to read.
		return append(qb.lists[:0], open), true
	}
	ct := p.agg.ClosedThrough()
	if ct == math.MinInt64 {
		return nil, false
	}
	// The closed minutes with quotes are those up to LastCloseMinute.
	closedEnd := min(ct, inst.LastCloseMinute+aggregate.MinuteNanos)
	e := p.tail.lookup(inst.ISIN, inst.Incarnation)
	lo := p.tail.entryLow(e) // every closed minute ≥ lo is in the tail
	if r := int64(p.opts.CandleRetention); r > 0 && p.agg.Watermark() >= math.MinInt64+r {
		// Retention removes stored minutes before watermark − CandleRetention (as of its
		// pass), and only those: the tail must not answer for them.
		lo = max(lo, ceilMinute(p.agg.Watermark()-r))
	}
	start := ceilMinute(from) // the first minute selected
	if start < closedEnd && start < lo {
		return nil, false
	}
	closed := p.tail.appendRange(qb.closed[:0], e, start, min(to, closedEnd))
	qb.closed = closed
	lists := append(qb.lists[:0], closed, open)
	// The previous close: the latest closed candle before start, as the store's
	// CandleBefore would give it.
	if prev, ok := p.tail.before(e, lo, min(start, closedEnd)); ok {
		qb.prev[0] = prev
		return append(lists, qb.prev[:]), true
	}
	if lo <= inst.FirstMinute {
		return lists, true // the incarnation has no candle before lo
	}
	// It may be before lo; it matters only if the first minute served has no quotes.
	first := max(start, ceilMinute(gr.First))
	end := min(gr.Current, ceilMinute(gr.To)-aggregate.MinuteNanos)
	if first > end {
		return lists, true
	}
	for _, l := range lists {
		for i := range l {
			if l[i].Minute == first && l[i].Quotes > 0 {
				return lists, true
			}
		}
	}
	return nil, false
}

// ceilMinute returns the first minute boundary ≥ t.
func ceilMinute(t int64) int64 {
	m := aggregate.MinuteOf(t)
	if m < t {
		m += aggregate.MinuteNanos
	}
	return m
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
// range serve FillGaps as the previous close); p.mu and p.inflightMu must be held.
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
