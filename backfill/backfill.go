// Package backfill recomputes closed candles and compares them with what a sink holds.
//
// Recomputing is a pure function of records: a Collector is the aggregate.Output of a fresh
// aggregator that re-runs the WAL (or an archive's events), keeping the full state of every
// closed minute in a range (closed states merged with their late corrections) and the
// instrument events in it. Comparing is Plan: for each recomputed candle, what a sink
// holding have must receive so that it holds exactly the recomputed state — nothing
// (equal), the whole state (missing), only the difference (a part of it: the same bounds
// with fewer quotes; an AggregatingMergeTree merges the difference into the full state), or
// nothing that an insert could fix (a conflict: more quotes, or other prices, than the WAL
// explains), which only a repair that rewrites the minute can fix.
package backfill

import (
	"cmp"
	"slices"

	"github.com/quotesdev/quotes/aggregate"
)

// Collector gathers what an aggregator derives for the minutes and instrument events of
// [Lo, Hi) (minutes also ≥ Covered). Use it as the aggregator's Output.
type Collector struct {
	Lo, Hi, Covered int64
	candles         map[aggregate.Key]*aggregate.Candle
	events          []aggregate.InstrumentEvent
}

// NewCollector returns a Collector for [lo, hi); covered is the first minute the input
// fully covers (math.MinInt64 for all).
func NewCollector(lo, hi, covered int64) *Collector {
	return &Collector{Lo: lo, Hi: hi, Covered: covered, candles: map[aggregate.Key]*aggregate.Candle{}}
}

func (c *Collector) in(m int64) bool { return m >= c.Lo && m < c.Hi && m >= c.Covered }

// Quote implements aggregate.Output.
func (c *Collector) Quote(aggregate.AcceptedQuote) {}

// Instrument implements aggregate.Output: events whose time is in [Lo, Hi) are kept.
func (c *Collector) Instrument(ev aggregate.InstrumentEvent) {
	if ev.TS >= c.Lo && ev.TS < c.Hi {
		c.events = append(c.events, ev)
	}
}

// Closed implements aggregate.Output.
func (c *Collector) Closed(cd *aggregate.Candle) { c.merge(cd) }

// Late implements aggregate.Output.
func (c *Collector) Late(cd *aggregate.Candle) { c.merge(cd) }

func (c *Collector) merge(cd *aggregate.Candle) {
	if !c.in(cd.Minute) {
		return
	}
	if have, ok := c.candles[cd.Key]; ok {
		have.Merge(cd)
		return
	}
	cp := *cd
	c.candles[cd.Key] = &cp
}

// Candles returns the collected states of the minutes that closed before closedThrough
// (aggregate.Aggregator.ClosedThrough), sorted by key.
func (c *Collector) Candles(closedThrough int64) []aggregate.Candle {
	cs := make([]aggregate.Candle, 0, len(c.candles))
	for _, cd := range c.candles {
		if cd.Minute+aggregate.MinuteNanos <= closedThrough {
			cs = append(cs, *cd)
		}
	}
	SortCandles(cs)
	return cs
}

// Events returns the collected instrument events, in record order.
func (c *Collector) Events() []aggregate.InstrumentEvent { return c.events }

// SortCandles sorts cs by (ISIN, incarnation, minute).
func SortCandles(cs []aggregate.Candle) {
	slices.SortFunc(cs, func(a, b aggregate.Candle) int {
		return cmp.Or(cmp.Compare(a.ISIN.String(), b.ISIN.String()), cmp.Compare(a.Incarnation, b.Incarnation), cmp.Compare(a.Minute, b.Minute))
	})
}

// Discard is an aggregate.Output that drops everything.
type Discard struct{}

func (Discard) Quote(aggregate.AcceptedQuote)        {}
func (Discard) Instrument(aggregate.InstrumentEvent) {}
func (Discard) Closed(*aggregate.Candle)             {}
func (Discard) Late(*aggregate.Candle)               {}

// Conflict is a minute a sink holds differently from the recomputed state, in a way an
// insert cannot fix.
type Conflict struct {
	Have, Want aggregate.Candle
}

// Plan is what a sink must receive to hold exactly the recomputed states.
type Plan struct {
	// Insert are the states to insert: whole ones for missing minutes, differences for
	// minutes the sink holds a part of (Completed counts those).
	Insert []aggregate.Candle
	// Missing and Completed count the two kinds of Insert; Equal the minutes that need
	// nothing.
	Missing, Completed, Equal int
	// Conflicts are minutes held differently, beyond what an insert can fix.
	Conflicts []Conflict
	// Extra are minutes the sink holds that the recomputation does not explain.
	Extra []aggregate.Candle
}

// Diff compares the recomputed states want with the sink's merged states have (both for
// the same range). have is consumed: what is left in it becomes Plan.Extra.
func Diff(want []aggregate.Candle, have map[aggregate.Key]aggregate.Candle) Plan {
	var p Plan
	for _, r := range want {
		c, ok := have[r.Key]
		delete(have, r.Key)
		switch {
		case !ok:
			p.Insert = append(p.Insert, r)
			p.Missing++
		case c == r:
			p.Equal++
		case IsPart(&c, &r):
			d := r
			d.Quotes = r.Quotes - c.Quotes
			p.Insert = append(p.Insert, d)
			p.Completed++
		default:
			p.Conflicts = append(p.Conflicts, Conflict{Have: c, Want: r})
		}
	}
	for _, c := range have {
		p.Extra = append(p.Extra, c)
	}
	SortCandles(p.Extra)
	return p
}

// IsPart reports whether c is a part of r: merging into c a state with r's bounds and
// r.Quotes−c.Quotes quotes gives exactly r.
func IsPart(c, r *aggregate.Candle) bool {
	if c.Quotes >= r.Quotes || c.High > r.High || c.Low < r.Low {
		return false
	}
	openOK := c.OpenTS > r.OpenTS || c.OpenTS == r.OpenTS && c.OpenSeq >= r.OpenSeq
	closeOK := c.CloseTS < r.CloseTS || c.CloseTS == r.CloseTS && c.CloseSeq <= r.CloseSeq
	return openOK && closeOK
}
