package aggregate

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/record"
)

// ref is a naive reference implementation of the aggregation rules, written straight from
// SPEC §4 with no attention to cost: it keeps every quote, scans every held quote and every
// open candle on every record, and derives the registry view from the full history.
type ref struct {
	grace          int64
	hasWM          bool
	wm             int64
	closedAll      bool
	closeAllMinute int64

	active map[feed.ISIN]*refInc
	open   map[Key]*Candle
	held   []refHeld
	stats  Stats
}

type refInc struct {
	isin   feed.ISIN
	id     uint64
	desc   string
	quotes []refHeld
}

type refHeld struct {
	isin  feed.ISIN
	ts    int64
	seq   uint64
	price feed.Price
}

func newRef(grace time.Duration) *ref {
	return &ref{grace: int64(grace), active: map[feed.ISIN]*refInc{}, open: map[Key]*Candle{}}
}

func (f *ref) closed(m int64) bool {
	return f.hasWM && m+MinuteNanos+f.grace <= f.wm || f.closedAll && m <= f.closeAllMinute
}

func (f *ref) closeDue(out Output) {
	var keys []Key
	for k := range f.open {
		if f.closed(k.Minute) {
			keys = append(keys, k)
		}
	}
	sortKeys(keys)
	for _, k := range keys {
		f.stats.CandlesClosed++
		out.Closed(f.open[k])
		delete(f.open, k)
	}
}

func sortKeys(keys []Key) {
	slices.SortFunc(keys, func(x, y Key) int {
		if x.Minute != y.Minute {
			if x.Minute < y.Minute {
				return -1
			}
			return 1
		}
		if c := compareISIN(&x.ISIN, &y.ISIN); c != 0 {
			return c
		}
		if x.Incarnation < y.Incarnation {
			return -1
		} else if x.Incarnation > y.Incarnation {
			return 1
		}
		return 0
	})
}

func (f *ref) Apply(r record.Record, out Output) {
	f.stats.Records++
	switch r.Kind {
	case feed.KindQuote, feed.KindAdd, feed.KindDelete, record.KindTick:
	default:
		f.stats.Ignored++
		return
	}
	if !f.hasWM || r.TS > f.wm {
		f.hasWM, f.wm = true, r.TS
	}
	kept := f.held[:0]
	for _, h := range f.held {
		if h.ts+f.grace < f.wm {
			f.stats.DroppedExpired++
		} else {
			kept = append(kept, h)
		}
	}
	f.held = kept
	f.closeDue(out)
	switch r.Kind {
	case feed.KindQuote:
		f.stats.QuoteRecords++
		if inc := f.active[r.ISIN]; inc != nil {
			f.aggregate(inc, refHeld{r.ISIN, r.TS, r.Seq, r.Price}, false, out)
			return
		}
		f.stats.HeldQuotes++
		if r.TS+f.grace < f.wm {
			f.stats.DroppedExpired++
		} else {
			f.held = append(f.held, refHeld{r.ISIN, r.TS, r.Seq, r.Price})
		}
	case feed.KindAdd:
		if inc := f.active[r.ISIN]; inc != nil {
			f.stats.AddsDuplicate++
			inc.desc = r.Description
			return
		}
		f.stats.AddsNew++
		inc := &refInc{isin: r.ISIN, id: r.Seq, desc: r.Description}
		f.active[r.ISIN] = inc
		kept := f.held[:0]
		var release []refHeld
		for _, h := range f.held {
			switch {
			case h.isin != r.ISIN:
				kept = append(kept, h)
			case r.TS-h.ts <= f.grace:
				release = append(release, h)
			default:
				f.stats.DroppedExpired++
			}
		}
		f.held = kept
		for _, h := range release {
			f.stats.Released++
			f.aggregate(inc, h, true, out)
		}
	case feed.KindDelete:
		inc := f.active[r.ISIN]
		if inc == nil {
			f.stats.DeletesUnknown++
			return
		}
		f.stats.Deletes++
		delete(f.active, r.ISIN)
		out.Instrument(InstrumentEvent{Seq: r.Seq, TS: r.TS, Kind: feed.KindDelete, ISIN: inc.isin, Incarnation: inc.id})
	case record.KindTick:
		f.stats.Ticks++
	}
}

func (f *ref) aggregate(inc *refInc, q refHeld, released bool, out Output) {
	f.stats.Aggregated++
	inc.quotes = append(inc.quotes, q)
	k := Key{ISIN: inc.isin, Incarnation: inc.id, Minute: MinuteOf(q.ts)}
	late := f.closed(k.Minute)
	if late {
		f.stats.Late++
		c := &Candle{Key: k}
		c.Add(q.ts, q.seq, q.price)
		out.Late(c)
	} else {
		c := f.open[k]
		if c == nil {
			c = &Candle{Key: k}
			f.open[k] = c
		}
		c.Add(q.ts, q.seq, q.price)
	}
	out.Quote(AcceptedQuote{ISIN: inc.isin, Incarnation: inc.id, TS: q.ts, Seq: q.seq, Price: q.price, Released: released, Late: late})
}

func (f *ref) CloseAll(out Output) {
	f.stats.DroppedAtEnd += uint64(len(f.held))
	f.held = nil
	if !f.hasWM {
		return
	}
	f.closedAll = true
	f.closeAllMinute = max(f.closeAllMinute, MinuteOf(f.wm))
	f.closeDue(out)
}

func (f *ref) Stats() Stats {
	s := f.stats
	s.Active = uint64(len(f.active))
	s.Holding = uint64(len(f.held))
	return s
}

func (f *ref) Instruments() []Instrument {
	var out []Instrument
	for _, inc := range f.active {
		in := Instrument{ISIN: inc.isin, Incarnation: inc.id, Description: inc.desc}
		var last *refHeld
		for i := range inc.quotes {
			q := &inc.quotes[i]
			m := MinuteOf(q.ts)
			if !in.HasPrice || before(in.PriceTS, in.PriceSeq, q.ts, q.seq) {
				in.Price, in.PriceTS, in.PriceSeq = q.price, q.ts, q.seq
			}
			if !in.HasPrice || m < in.FirstMinute {
				in.FirstMinute = m
			}
			in.HasPrice = true
			if f.closed(m) && (last == nil || m > MinuteOf(last.ts) ||
				m == MinuteOf(last.ts) && before(last.ts, last.seq, q.ts, q.seq)) {
				last = q
			}
		}
		if last != nil {
			in.HasLastClose, in.LastClose, in.LastCloseMinute = true, last.price, MinuteOf(last.ts)
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(x, y Instrument) int { return compareISIN(&x.ISIN, &y.ISIN) })
	return out
}

func (f *ref) OpenCandles(isin feed.ISIN) []Candle {
	inc := f.active[isin]
	if inc == nil {
		return nil
	}
	var out []Candle
	for k, c := range f.open {
		if k.ISIN == isin && k.Incarnation == inc.id {
			out = append(out, *c)
		}
	}
	slices.SortFunc(out, func(x, y Candle) int { return int((x.Minute - y.Minute) / MinuteNanos) })
	return out
}

// randomStream makes n records over nISINs ISINs: adds, deletes and reuses, quotes before
// ADD and after DELETE, ties, out-of-order and very late timestamps, time jumps, ticks and
// the odd unknown kind.
func randomStream(rng *rand.Rand, n, nISINs int) []record.Record {
	recs := make([]record.Record, 0, n)
	now := t0 + rng.Int64N(MinuteNanos)
	for i := 0; i < n; i++ {
		switch x := rng.IntN(100); {
		case x < 20: // same ts as before: ties
		case x < 98:
			now += rng.Int64N(int64(1500 * time.Millisecond))
		default:
			now += rng.Int64N(int64(200 * time.Second))
		}
		ts := now
		switch x := rng.IntN(100); {
		case x < 15:
			ts -= rng.Int64N(int64(8 * time.Second))
		case x < 17:
			ts -= rng.Int64N(int64(150 * time.Second))
		}
		r := record.Record{Seq: uint64(i + 1)}
		r.TS = ts
		r.ISIN = isinOf(fmt.Sprintf("I%03d", rng.IntN(nISINs)))
		switch x := rng.IntN(100); {
		case x < 68:
			r.Kind = feed.KindQuote
			r.Price = feed.Price(1+rng.IntN(20)) * feed.PriceScale / 4
		case x < 80:
			r.Kind = feed.KindAdd
			r.Description = fmt.Sprintf("desc %d", rng.IntN(3))
		case x < 88:
			r.Kind = feed.KindDelete
		case x < 99:
			r.Kind = record.KindTick
			r.ISIN = feed.ISIN{}
		default:
			r.Kind = 7
		}
		recs = append(recs, r)
	}
	return recs
}

// setRefs gives recs the Refs of mode: 0 none; 1 a WAL's (one per ISIN, 0 without one);
// 2 wrong hints (random, shared by several ISINs), which must change nothing either.
func setRefs(rng *rand.Rand, recs []record.Record, mode int) {
	refOf := map[feed.ISIN]uint32{}
	for i := range recs {
		r := &recs[i]
		switch {
		case mode == 1 && r.ISIN != feed.ISIN{}:
			if refOf[r.ISIN] == 0 {
				refOf[r.ISIN] = uint32(len(refOf)) + 1
			}
			r.Ref = refOf[r.ISIN]
		case mode == 2:
			r.Ref = rng.Uint32N(6)
		}
	}
}

var testGraces = []time.Duration{0, time.Second, 5 * time.Second, 61 * time.Second, 150 * time.Second}

func TestAgainstReference(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 40
	}
	for seed := 0; seed < seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 42))
		grace := testGraces[seed%len(testGraces)]
		recs := randomStream(rng, 300+rng.IntN(1500), 2+rng.IntN(12))
		setRefs(rng, recs, seed%3)
		a, f := New(Options{Grace: grace}), newRef(grace)
		var ra, rf recorder
		for i, r := range recs {
			a.Apply(r, &ra)
			f.Apply(r, &rf)
			if i%37 == 0 || i == len(recs)-1 {
				compareState(t, seed, i, a, f)
			}
		}
		a.CloseAll(&ra)
		f.CloseAll(&rf)
		compareState(t, seed, len(recs), a, f)
		if ra.String() != rf.String() {
			t.Fatalf("seed %d (grace %v): outputs differ:\n%s", seed, grace, firstDiff(ra.lines, rf.lines))
		}
		checkInvariants(t, a)
		if t.Failed() {
			t.FailNow()
		}
	}
}

func compareState(t *testing.T, seed, i int, a *Aggregator, f *ref) {
	t.Helper()
	if as, fs := a.Stats(), f.Stats(); as != fs {
		t.Fatalf("seed %d record %d: stats\n got %+v\nwant %+v", seed, i, as, fs)
	}
	ai, fi := a.Instruments(), f.Instruments()
	if !slices.Equal(ai, fi) {
		t.Fatalf("seed %d record %d: instruments\n got %+v\nwant %+v", seed, i, ai, fi)
	}
	for _, in := range fi {
		if ac, fc := a.OpenCandles(in.ISIN), f.OpenCandles(in.ISIN); !slices.Equal(ac, fc) {
			t.Fatalf("seed %d record %d: open candles of %s\n got %+v\nwant %+v", seed, i, in.ISIN, ac, fc)
		}
	}
	if f.hasWM && a.Watermark() != f.wm {
		t.Fatalf("seed %d record %d: watermark %d, want %d", seed, i, a.Watermark(), f.wm)
	}
}

func firstDiff(got, want []string) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			lo := max(0, i-3)
			return fmt.Sprintf("line %d\n got %q\nwant %q\ncontext got %q", i, g, w, got[lo:min(len(got), i+1)])
		}
	}
	return ""
}
