package backfill

import (
	"math"
	"testing"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/record"
)

var t0 = int64(1_795_000_000) * 1e9 / aggregate.MinuteNanos * aggregate.MinuteNanos

func isin(s string) feed.ISIN {
	i, ok := feed.ParseISIN(s)
	if !ok {
		panic(s)
	}
	return i
}

// candle builds the state of quotes (ts offset in seconds, seq, price units) in minute m.
func candle(code string, inc uint64, m int64, quotes ...[3]int64) aggregate.Candle {
	c := aggregate.Candle{Key: aggregate.Key{ISIN: isin(code), Incarnation: inc, Minute: m}}
	for _, q := range quotes {
		c.Add(m+q[0]*1e9, uint64(q[1]), feed.Price(q[2]*feed.PriceScale))
	}
	return c
}

func TestDiff(t *testing.T) {
	const a, b = "US0378331005", "DE0007164600"
	m0, m1 := t0, t0+aggregate.MinuteNanos
	full := candle(a, 1, m0, [3]int64{1, 10, 100}, [3]int64{20, 11, 90}, [3]int64{50, 12, 120})
	part := candle(a, 1, m0, [3]int64{20, 11, 90}) // inside full's bounds, fewer quotes
	other := candle(b, 2, m0, [3]int64{5, 13, 7})
	more := candle(b, 2, m1, [3]int64{5, 20, 7}, [3]int64{6, 21, 8})
	morePlus := more
	morePlus.Quotes++ // the sink counted a quote twice: no insert can undo it
	wrongPrice := other
	wrongPrice.High = 9 * feed.PriceScale
	extra := candle(b, 2, t0+2*aggregate.MinuteNanos, [3]int64{1, 30, 1})

	tests := []struct {
		name                             string
		want                             []aggregate.Candle
		have                             []aggregate.Candle
		missing, completed, equal, confl int
		extra                            int
	}{
		{"missing", []aggregate.Candle{full}, nil, 1, 0, 0, 0, 0},
		{"equal", []aggregate.Candle{full}, []aggregate.Candle{full}, 0, 0, 1, 0, 0},
		{"completed", []aggregate.Candle{full}, []aggregate.Candle{part}, 0, 1, 0, 0, 0},
		{"conflict: more quotes", []aggregate.Candle{more}, []aggregate.Candle{morePlus}, 0, 0, 0, 1, 0},
		{"conflict: other price", []aggregate.Candle{other}, []aggregate.Candle{wrongPrice}, 0, 0, 0, 1, 0},
		{"extra", []aggregate.Candle{other}, []aggregate.Candle{other, extra}, 0, 0, 1, 0, 1},
		{"mixed", []aggregate.Candle{full, other, more}, []aggregate.Candle{part, other}, 1, 1, 1, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			have := map[aggregate.Key]aggregate.Candle{}
			for _, c := range tc.have {
				have[c.Key] = c
			}
			p := Diff(tc.want, have)
			if p.Missing != tc.missing || p.Completed != tc.completed || p.Equal != tc.equal || len(p.Conflicts) != tc.confl || len(p.Extra) != tc.extra {
				t.Fatalf("plan missing %d completed %d equal %d conflicts %d extra %d; want %d %d %d %d %d",
					p.Missing, p.Completed, p.Equal, len(p.Conflicts), len(p.Extra), tc.missing, tc.completed, tc.equal, tc.confl, tc.extra)
			}
			if len(p.Insert) != p.Missing+p.Completed {
				t.Fatalf("%d inserts for %d missing + %d completed", len(p.Insert), p.Missing, p.Completed)
			}
			// Inserting the plan into what the sink holds gives exactly want (an
			// AggregatingMergeTree merges states as Candle.Merge does).
			if len(p.Conflicts) > 0 {
				return
			}
			merged := map[aggregate.Key]aggregate.Candle{}
			for _, c := range tc.have {
				merged[c.Key] = c
			}
			for _, ins := range p.Insert {
				if h, ok := merged[ins.Key]; ok {
					h.Merge(&ins)
					merged[ins.Key] = h
				} else {
					merged[ins.Key] = ins
				}
			}
			for _, w := range tc.want {
				if merged[w.Key] != w {
					t.Errorf("after the inserts %+v, want %+v", merged[w.Key], w)
				}
			}
		})
	}
}

func TestCollector(t *testing.T) {
	// ADD, quotes in minutes 0 and 1, a late quote for minute 0, a tick that closes both.
	recs := []record.Record{
		{Seq: 1, Message: feed.Message{TS: t0, Kind: feed.KindAdd, ISIN: isin("US0378331005"), Description: "a"}},
		{Seq: 2, Message: feed.Message{TS: t0 + 1e9, Kind: feed.KindQuote, ISIN: isin("US0378331005"), Price: 100 * feed.PriceScale}},
		{Seq: 3, Message: feed.Message{TS: t0 + 61e9, Kind: feed.KindQuote, ISIN: isin("US0378331005"), Price: 101 * feed.PriceScale}},
		{Seq: 4, Message: feed.Message{TS: t0 + 70e9, Kind: record.KindTick}},
		{Seq: 5, Message: feed.Message{TS: t0 + 2e9, Kind: feed.KindQuote, ISIN: isin("US0378331005"), Price: 99 * feed.PriceScale}},
		{Seq: 6, Message: feed.Message{TS: t0 + 200e9, Kind: record.KindTick}},
	}
	// Only minute 0 is in range; the ADD (at t0) is an event of the range.
	c := NewCollector(t0, t0+aggregate.MinuteNanos, math.MinInt64)
	agg := aggregate.New(aggregate.DefaultOptions())
	for _, r := range recs {
		agg.Apply(r, c)
	}
	cs := c.Candles(agg.ClosedThrough())
	if len(cs) != 1 || cs[0].Quotes != 2 || cs[0].Low != 99*feed.PriceScale || cs[0].Close != 99*feed.PriceScale {
		t.Fatalf("candles %+v: want minute 0 with its late quote merged", cs)
	}
	if ev := c.Events(); len(ev) != 1 || !ev[0].New || ev[0].Seq != 1 {
		t.Fatalf("events %+v", ev)
	}
}
