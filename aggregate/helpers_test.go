package aggregate

import (
	"fmt"
	"strings"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/record"
)

// t0 is a minute boundary: 2026-11-26T13:00:00Z.
var t0 = time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC).UnixNano()

// at returns t0 + ms milliseconds.
func at(ms int64) int64 { return t0 + ms*int64(time.Millisecond) }

// sec returns t0 + s seconds.
func sec(s float64) int64 { return t0 + int64(s*1e9) }

func isinOf(s string) feed.ISIN {
	s = (s + "000000000000")[:feed.ISINLen]
	i, ok := feed.ParseISIN(s)
	if !ok {
		panic("bad test isin " + s)
	}
	return i
}

func px(units float64) feed.Price { return feed.Price(units*feed.PriceScale + 0.5) }

// builder numbers records from 1.
type builder struct {
	recs []record.Record
}

func (b *builder) add(kind feed.Kind, ts int64, isin string, p feed.Price, desc string) *builder {
	r := record.Record{Seq: uint64(len(b.recs) + 1)}
	r.Kind, r.TS, r.Price, r.Description = kind, ts, p, desc
	if isin != "" {
		r.ISIN = isinOf(isin)
	}
	b.recs = append(b.recs, r)
	return b
}

func (b *builder) ADD(ts int64, isin, desc string) *builder {
	return b.add(feed.KindAdd, ts, isin, 0, desc)
}
func (b *builder) DEL(ts int64, isin string) *builder { return b.add(feed.KindDelete, ts, isin, 0, "") }
func (b *builder) Q(ts int64, isin string, p float64) *builder {
	return b.add(feed.KindQuote, ts, isin, px(p), "")
}
func (b *builder) TICK(ts int64) *builder { return b.add(record.KindTick, ts, "", 0, "") }

// recorder is an Output that logs every call as a line of text.
type recorder struct {
	lines []string
}

func rel(ts int64) string {
	d := ts - t0
	return fmt.Sprintf("%gs", float64(d)/1e9)
}

func relMin(m int64) string { return fmt.Sprintf("m%d", (m-t0)/MinuteNanos) }

func candleText(c *Candle) string {
	return fmt.Sprintf("%s/%d %s o=%s h=%s l=%s c=%s n=%d [%s#%d..%s#%d]", c.ISIN.String()[:4], c.Incarnation, relMin(c.Minute),
		c.Open, c.High, c.Low, c.Close, c.Quotes, rel(c.OpenTS), c.OpenSeq, rel(c.CloseTS), c.CloseSeq)
}

func (r *recorder) Quote(q AcceptedQuote) {
	flags := ""
	if q.Released {
		flags += " released"
	}
	if q.Late {
		flags += " late"
	}
	r.lines = append(r.lines, fmt.Sprintf("Q %s/%d %s #%d %s%s", q.ISIN.String()[:4], q.Incarnation, rel(q.TS), q.Seq, q.Price, flags))
}

// Instrument records the end of an incarnation ("E"); ADD events are checked by
// TestInstrumentEvents.
func (r *recorder) Instrument(ev InstrumentEvent) {
	if ev.Kind == feed.KindDelete {
		r.lines = append(r.lines, fmt.Sprintf("E %s/%d #%d", ev.ISIN.String()[:4], ev.Incarnation, ev.Seq))
	}
}

func (r *recorder) Closed(c *Candle) { r.lines = append(r.lines, "C "+candleText(c)) }
func (r *recorder) Late(c *Candle)   { r.lines = append(r.lines, "L "+candleText(c)) }

func (r *recorder) String() string { return strings.Join(r.lines, "\n") }

// nopOutput discards everything (benchmarks).
type nopOutput struct{ n int }

func (o *nopOutput) Quote(AcceptedQuote)        { o.n++ }
func (o *nopOutput) Instrument(InstrumentEvent) {}
func (o *nopOutput) Closed(*Candle)             { o.n++ }
func (o *nopOutput) Late(*Candle)               { o.n++ }
