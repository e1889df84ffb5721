package aggregate

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/record"
)

func TestApplyScenarios(t *testing.T) {
	type check func(t *testing.T, a *Aggregator)
	tests := []struct {
		name     string
		grace    time.Duration // 0 means the default
		recs     *builder
		closeAll bool
		want     []string
		stats    *Stats
		check    check
	}{
		{
			name: "ties ordered by (ts, seq)",
			recs: new(builder).ADD(sec(0), "AAAA", "a").
				Q(sec(1), "AAAA", 10).Q(sec(1), "AAAA", 12).Q(sec(0.5), "AAAA", 9).Q(sec(1), "AAAA", 8).
				TICK(sec(65)),
			want: []string{
				"Q AAAA/1 1s #2 10",
				"Q AAAA/1 1s #3 12",
				"Q AAAA/1 0.5s #4 9",
				"Q AAAA/1 1s #5 8",
				"C AAAA/1 m0 o=9 h=12 l=8 c=8 n=4 [0.5s#4..1s#5]",
			},
			check: func(t *testing.T, a *Aggregator) {
				in, _ := a.Instrument(isinOf("AAAA"))
				if in.Price != px(8) || in.PriceSeq != 5 || in.PriceTS != sec(1) {
					t.Errorf("latest price %+v, want 8 at 1s #5", in)
				}
			},
		},
		{
			name: "minute closes exactly at m+60s+grace",
			recs: new(builder).ADD(sec(0), "AAAA", "a").Q(sec(10), "AAAA", 1).
				TICK(sec(65)-1).Q(sec(30), "AAAA", 2).
				TICK(sec(65)).Q(sec(40), "AAAA", 3),
			want: []string{
				"Q AAAA/1 10s #2 1",
				"Q AAAA/1 30s #4 2",
				"C AAAA/1 m0 o=1 h=2 l=1 c=2 n=2 [10s#2..30s#4]",
				"L AAAA/1 m0 o=3 h=3 l=3 c=3 n=1 [40s#6..40s#6]",
				"Q AAAA/1 40s #6 3 late",
			},
			check: func(t *testing.T, a *Aggregator) {
				if a.ClosedThrough() != sec(60) || a.Watermark() != sec(65) {
					t.Errorf("closed through %s, watermark %s", rel(a.ClosedThrough()), rel(a.Watermark()))
				}
				in, _ := a.Instrument(isinOf("AAAA"))
				if !in.HasLastClose || in.LastClose != px(3) || in.LastCloseMinute != t0 {
					t.Errorf("last close %+v, want 3 in m0 (the correction's later quote)", in)
				}
			},
		},
		{
			name:  "grace 0 closes at m+60s",
			grace: -1,
			recs:  new(builder).ADD(sec(0), "AAAA", "a").Q(sec(10), "AAAA", 1).TICK(sec(60)),
			want:  []string{"Q AAAA/1 10s #2 1", "C AAAA/1 m0 o=1 h=1 l=1 c=1 n=1 [10s#2..10s#2]"},
		},
		{
			name: "several minutes close at once, by minute then ISIN; late correction",
			recs: new(builder).ADD(sec(0), "BBBB", "b").ADD(sec(0), "AAAA", "a").
				Q(sec(10), "BBBB", 5).Q(sec(20), "AAAA", 6).Q(sec(61), "AAAA", 7).
				TICK(sec(125)).Q(sec(50), "BBBB", 4),
			want: []string{
				"Q BBBB/1 10s #3 5",
				"Q AAAA/2 20s #4 6",
				"Q AAAA/2 61s #5 7",
				"C AAAA/2 m0 o=6 h=6 l=6 c=6 n=1 [20s#4..20s#4]",
				"C BBBB/1 m0 o=5 h=5 l=5 c=5 n=1 [10s#3..10s#3]",
				"C AAAA/2 m1 o=7 h=7 l=7 c=7 n=1 [61s#5..61s#5]",
				"L BBBB/1 m0 o=4 h=4 l=4 c=4 n=1 [50s#7..50s#7]",
				"Q BBBB/1 50s #7 4 late",
			},
			check: func(t *testing.T, a *Aggregator) {
				in, _ := a.Instrument(isinOf("BBBB"))
				if in.Price != px(4) || in.LastClose != px(4) || in.FirstMinute != t0 {
					t.Errorf("BBBB %+v", in)
				}
				if s := a.Stats(); s.Late != 1 || s.CandlesClosed != 3 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name: "late quote earlier than the first quote moves FirstMinute back",
			recs: new(builder).ADD(sec(0), "AAAA", "a").Q(sec(130), "AAAA", 1).Q(sec(10), "AAAA", 2),
			want: []string{
				"Q AAAA/1 130s #2 1",
				"L AAAA/1 m0 o=2 h=2 l=2 c=2 n=1 [10s#3..10s#3]",
				"Q AAAA/1 10s #3 2 late",
			},
			check: func(t *testing.T, a *Aggregator) {
				in, _ := a.Instrument(isinOf("AAAA"))
				if in.FirstMinute != t0 || in.Price != px(1) || in.LastClose != px(2) || in.LastCloseMinute != t0 {
					t.Errorf("AAAA %+v", in)
				}
			},
		},
		{
			name: "ISIN reused within one minute never mixes",
			recs: new(builder).ADD(sec(0), "AAAA", "one").Q(sec(1), "AAAA", 10).DEL(sec(2), "AAAA").
				ADD(sec(3), "AAAA", "two").Q(sec(4), "AAAA", 20).TICK(sec(65)),
			want: []string{
				"Q AAAA/1 1s #2 10",
				"E AAAA/1 #3",
				"Q AAAA/4 4s #5 20",
				"C AAAA/1 m0 o=10 h=10 l=10 c=10 n=1 [1s#2..1s#2]",
				"C AAAA/4 m0 o=20 h=20 l=20 c=20 n=1 [4s#5..4s#5]",
			},
			check: func(t *testing.T, a *Aggregator) {
				in, ok := a.Instrument(isinOf("AAAA"))
				if !ok || in.Incarnation != 4 || in.Description != "two" || in.Price != px(20) {
					t.Errorf("AAAA %+v", in)
				}
			},
		},
		{
			name: "grace in: quote 4.9s before ADD is released",
			recs: new(builder).Q(sec(0), "AAAA", 10).ADD(sec(4.9), "AAAA", "a").TICK(sec(65)),
			want: []string{
				"Q AAAA/2 0s #1 10 released",
				"C AAAA/2 m0 o=10 h=10 l=10 c=10 n=1 [0s#1..0s#1]",
			},
			stats: &Stats{Records: 3, Ticks: 1, QuoteRecords: 1, Aggregated: 1, HeldQuotes: 1, Released: 1,
				AddsNew: 1, CandlesClosed: 1, Active: 1},
		},
		{
			name: "grace edge: quote exactly 5s before ADD is released",
			recs: new(builder).Q(sec(0), "AAAA", 10).ADD(sec(5), "AAAA", "a"),
			want: []string{"Q AAAA/2 0s #1 10 released"},
		},
		{
			name: "grace out: quote 5.1s before ADD is dropped",
			recs: new(builder).Q(sec(0), "AAAA", 10).ADD(sec(5.1), "AAAA", "a").TICK(sec(65)),
			want: nil,
			stats: &Stats{Records: 3, Ticks: 1, QuoteRecords: 1, HeldQuotes: 1, DroppedExpired: 1,
				AddsNew: 1, Active: 1},
		},
		{
			name: "held quote dropped by the watermark, not by the ADD's own ts",
			recs: new(builder).Q(sec(0), "AAAA", 10).TICK(sec(5.1)).ADD(sec(4), "AAAA", "a"),
			want: nil,
			check: func(t *testing.T, a *Aggregator) {
				if s := a.Stats(); s.DroppedExpired != 1 || s.Holding != 0 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name: "quote arriving already past its grace is dropped at once",
			recs: new(builder).TICK(sec(20)).Q(sec(10), "AAAA", 10).ADD(sec(20), "AAAA", "a"),
			want: nil,
			stats: &Stats{Records: 3, Ticks: 1, QuoteRecords: 1, HeldQuotes: 1, DroppedExpired: 1,
				AddsNew: 1, Active: 1},
		},
		{
			name: "held quotes released in sequence order, expired one dropped",
			recs: new(builder).Q(sec(0), "AAAA", 1).Q(sec(3), "AAAA", 2).Q(sec(2), "AAAA", 3).
				ADD(sec(5.5), "AAAA", "a").TICK(sec(65)),
			want: []string{
				"Q AAAA/4 3s #2 2 released",
				"Q AAAA/4 2s #3 3 released",
				"C AAAA/4 m0 o=3 h=3 l=2 c=2 n=2 [2s#3..3s#2]",
			},
			stats: &Stats{Records: 5, Ticks: 1, QuoteRecords: 3, Aggregated: 2, HeldQuotes: 3, Released: 2,
				DroppedExpired: 1, AddsNew: 1, CandlesClosed: 1, Active: 1},
		},
		{
			name: "quote shortly after DELETE is held, then dropped",
			recs: new(builder).ADD(sec(0), "AAAA", "a").Q(sec(1), "AAAA", 10).DEL(sec(2), "AAAA").
				Q(sec(2.5), "AAAA", 11).TICK(sec(7.6)).TICK(sec(65)),
			want: []string{
				"Q AAAA/1 1s #2 10",
				"E AAAA/1 #3",
				"C AAAA/1 m0 o=10 h=10 l=10 c=10 n=1 [1s#2..1s#2]",
			},
			stats: &Stats{Records: 6, Ticks: 2, QuoteRecords: 2, Aggregated: 1, HeldQuotes: 1, DroppedExpired: 1,
				AddsNew: 1, Deletes: 1, CandlesClosed: 1},
			check: func(t *testing.T, a *Aggregator) {
				if _, ok := a.Instrument(isinOf("AAAA")); ok {
					t.Error("deleted instrument still listed")
				}
				if a.OpenCandles(isinOf("AAAA")) != nil {
					t.Error("open candles of a deleted instrument")
				}
			},
		},
		{
			name: "quote shortly after DELETE is given to a reuse within grace",
			recs: new(builder).ADD(sec(0), "AAAA", "a").Q(sec(1), "AAAA", 10).DEL(sec(2), "AAAA").
				Q(sec(2.5), "AAAA", 11).ADD(sec(7), "AAAA", "b").TICK(sec(65)),
			want: []string{
				"Q AAAA/1 1s #2 10",
				"E AAAA/1 #3",
				"Q AAAA/5 2.5s #4 11 released",
				"C AAAA/1 m0 o=10 h=10 l=10 c=10 n=1 [1s#2..1s#2]",
				"C AAAA/5 m0 o=11 h=11 l=11 c=11 n=1 [2.5s#4..2.5s#4]",
			},
		},
		{
			name: "duplicate ADD keeps history and updates the description",
			recs: new(builder).ADD(sec(0), "AAAA", "old").Q(sec(1), "AAAA", 10).ADD(sec(2), "AAAA", "new").
				Q(sec(3), "AAAA", 12).TICK(sec(65)),
			want: []string{
				"Q AAAA/1 1s #2 10",
				"Q AAAA/1 3s #4 12",
				"C AAAA/1 m0 o=10 h=12 l=10 c=12 n=2 [1s#2..3s#4]",
			},
			check: func(t *testing.T, a *Aggregator) {
				in, _ := a.Instrument(isinOf("AAAA"))
				if in.Incarnation != 1 || in.Description != "new" {
					t.Errorf("AAAA %+v", in)
				}
				if s := a.Stats(); s.AddsNew != 1 || s.AddsDuplicate != 1 {
					t.Errorf("stats %+v", s)
				}
			},
		},
		{
			name:  "DELETE of an unknown or deleted ISIN is counted",
			recs:  new(builder).DEL(sec(0), "AAAA").ADD(sec(1), "AAAA", "a").DEL(sec(2), "AAAA").DEL(sec(3), "AAAA"),
			want:  []string{"E AAAA/2 #3"},
			stats: &Stats{Records: 4, AddsNew: 1, Deletes: 1, DeletesUnknown: 2},
		},
		{
			name: "two open minutes, then CloseAll closes them and drops held quotes",
			recs: new(builder).ADD(sec(0), "AAAA", "a").Q(sec(10), "AAAA", 1).Q(sec(61), "AAAA", 2).
				Q(sec(62), "BBBB", 3),
			closeAll: true,
			want: []string{
				"Q AAAA/1 10s #2 1",
				"Q AAAA/1 61s #3 2",
				"C AAAA/1 m0 o=1 h=1 l=1 c=1 n=1 [10s#2..10s#2]",
				"C AAAA/1 m1 o=2 h=2 l=2 c=2 n=1 [61s#3..61s#3]",
			},
			stats: &Stats{Records: 4, QuoteRecords: 3, Aggregated: 2, HeldQuotes: 1, DroppedAtEnd: 1,
				AddsNew: 1, CandlesClosed: 2, Active: 1},
			check: func(t *testing.T, a *Aggregator) {
				if a.ClosedThrough() != sec(120) {
					t.Errorf("closed through %s", rel(a.ClosedThrough()))
				}
				var r recorder
				a.Apply(record.Record{Seq: 5, Message: feed.Message{Kind: feed.KindQuote, TS: sec(62), ISIN: isinOf("AAAA"), Price: px(3)}}, &r)
				if want := "L AAAA/1 m1 o=3 h=3 l=3 c=3 n=1 [62s#5..62s#5]\nQ AAAA/1 62s #5 3 late"; r.String() != want {
					t.Errorf("after CloseAll got\n%s\nwant\n%s", r.String(), want)
				}
			},
		},
		{
			name: "open candles, oldest first, while two minutes are open",
			recs: new(builder).ADD(sec(0), "AAAA", "a").Q(sec(61), "AAAA", 2).Q(sec(59), "AAAA", 1).TICK(sec(64)),
			want: []string{"Q AAAA/1 61s #2 2", "Q AAAA/1 59s #3 1"},
			check: func(t *testing.T, a *Aggregator) {
				oc := a.OpenCandles(isinOf("AAAA"))
				if len(oc) != 2 || oc[0].Minute != t0 || oc[1].Minute != sec(60) || oc[0].Close != px(1) {
					t.Errorf("open candles %+v", oc)
				}
				in, _ := a.Instrument(isinOf("AAAA"))
				if in.HasLastClose || in.FirstMinute != t0 || in.Price != px(2) {
					t.Errorf("AAAA %+v", in)
				}
			},
		},
		{
			name: "records at or below the last sequence are stale and ignored",
			recs: func() *builder {
				b := new(builder).ADD(sec(0), "AAAA", "a").Q(sec(1), "AAAA", 1)
				b.recs = append(b.recs, b.recs...)
				return b.Q(sec(2), "AAAA", 2)
			}(),
			want:  []string{"Q AAAA/1 1s #2 1", "Q AAAA/1 2s #5 2"},
			stats: &Stats{Records: 3, Stale: 2, QuoteRecords: 2, Aggregated: 2, AddsNew: 1, Active: 1},
			check: func(t *testing.T, a *Aggregator) {
				if a.LastSeq() != 5 {
					t.Errorf("last seq %d", a.LastSeq())
				}
			},
		},
		{
			name: "records of unknown kind are ignored, even their ts",
			recs: new(builder).ADD(sec(0), "AAAA", "a").add(9, sec(500), "AAAA", 0, ""),
			want: nil,
			check: func(t *testing.T, a *Aggregator) {
				if a.Watermark() != t0 || a.Stats().Ignored != 1 {
					t.Errorf("watermark %s stats %+v", rel(a.Watermark()), a.Stats())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := DefaultOptions()
			if tt.grace < 0 {
				opts.Grace = 0
			} else if tt.grace > 0 {
				opts.Grace = tt.grace
			}
			a := New(opts)
			var r recorder
			for _, rec := range tt.recs.recs {
				a.Apply(rec, &r)
			}
			if tt.closeAll {
				a.CloseAll(&r)
			}
			if got, want := r.String(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("outputs:\n%s\nwant:\n%s", got, want)
			}
			if tt.stats != nil {
				if got := a.Stats(); got != *tt.stats {
					t.Errorf("stats\n got %+v\nwant %+v", got, *tt.stats)
				}
			}
			checkInvariants(t, a)
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}

func checkInvariants(t *testing.T, a *Aggregator) {
	t.Helper()
	s := a.Stats()
	if s.HeldQuotes != s.Released+s.DroppedExpired+s.DroppedAtEnd+s.Holding {
		t.Errorf("held quotes don't add up: %+v", s)
	}
	if s.QuoteRecords+s.Released != s.Aggregated+s.HeldQuotes {
		t.Errorf("quotes don't add up: %+v", s)
	}
	if s.Records != s.QuoteRecords+s.AddsNew+s.AddsDuplicate+s.Deletes+s.DeletesUnknown+s.Ticks+s.Ignored {
		t.Errorf("records don't add up: %+v", s)
	}
	// byRef lists only active incarnations, each under its own ref.
	for r, inc := range a.byRef {
		if inc == nil {
			continue
		}
		if got := a.activeInc(&inc.isin); got != inc || !inc.active || inc.ref != uint32(r) {
			t.Errorf("byRef[%d] lists %s (incarnation %d, ref %d, active %v), the active one is %p", r, inc.isin, inc.id, inc.ref, inc.active, got)
		}
	}
}

func TestEmptyAggregator(t *testing.T) {
	a := New(DefaultOptions())
	if a.Watermark() != math.MinInt64 || a.ClosedThrough() != math.MinInt64 {
		t.Error("fresh aggregator has a watermark")
	}
	if _, ok := a.CurrentMinute(); ok {
		t.Error("fresh aggregator has a current minute")
	}
	var r recorder
	a.CloseAll(&r)
	if len(r.lines) != 0 || len(a.Instruments()) != 0 || a.Grace() != DefaultGrace {
		t.Error("empty aggregator produced something")
	}
}

func TestInstrumentsSorted(t *testing.T) {
	a := New(DefaultOptions())
	var r recorder
	b := new(builder).ADD(sec(0), "CCCC", "c").ADD(sec(0), "AAAA", "a").ADD(sec(0), "BBBB", "b").DEL(sec(0), "BBBB").Q(sec(1), "CCCC", 3)
	for _, rec := range b.recs {
		a.Apply(rec, &r)
	}
	ins := a.Instruments()
	if len(ins) != 2 || ins[0].ISIN != isinOf("AAAA") || ins[1].ISIN != isinOf("CCCC") {
		t.Fatalf("instruments %+v", ins)
	}
	if ins[0].HasPrice || !ins[1].HasPrice || ins[1].Price != px(3) || ins[1].Incarnation != 1 {
		t.Errorf("instruments %+v", ins)
	}
	if m, ok := a.CurrentMinute(); !ok || m != t0 {
		t.Errorf("current minute %v %v", m, ok)
	}
}

func TestPending(t *testing.T) {
	a := New(DefaultOptions())
	var r recorder
	if a.Pending() {
		t.Fatal("fresh aggregator pending")
	}
	for _, rec := range new(builder).Q(sec(0), "BBBB", 1).recs {
		a.Apply(rec, &r)
	}
	if !a.Pending() {
		t.Fatal("held quote not pending")
	}
	for _, rec := range new(builder).TICK(sec(0)).TICK(sec(6)).recs[1:] {
		rec.Seq = 10
		a.Apply(rec, &r)
	}
	if a.Pending() {
		t.Fatal("expired held quote still pending")
	}
	b := new(builder).ADD(sec(7), "AAAA", "a").Q(sec(8), "AAAA", 1)
	for i, rec := range b.recs {
		rec.Seq = uint64(20 + i)
		a.Apply(rec, &r)
	}
	if !a.Pending() {
		t.Fatal("open minute not pending")
	}
	a.CloseAll(&r)
	if a.Pending() {
		t.Fatal("pending after CloseAll")
	}
}

// eventLog is an Output that keeps the instrument events only.
type eventLog struct {
	nopOutput
	events []InstrumentEvent
}

func (e *eventLog) Instrument(ev InstrumentEvent) { e.events = append(e.events, ev) }

func TestInstrumentEvents(t *testing.T) {
	b := new(builder).
		ADD(sec(0), "AAAA", "a").    // 1: new incarnation
		ADD(sec(1), "AAAA", "a").    // 2: repeated, unchanged: nothing
		ADD(sec(2), "AAAA", "a v2"). // 3: description changed
		Q(sec(3), "BBBB", 1).        // 4: held
		ADD(sec(4), "BBBB", "b").    // 5: new, after releasing #4
		DEL(sec(5), "AAAA").         // 6: ends incarnation 1
		DEL(sec(6), "AAAA").         // 7: inactive: nothing
		ADD(sec(7), "AAAA", "a")     // 8: a new incarnation
	a := New(DefaultOptions())
	var out eventLog
	for _, rec := range b.recs {
		a.Apply(rec, &out)
	}
	add, del := feed.KindAdd, feed.KindDelete
	want := []InstrumentEvent{
		{Seq: 1, TS: sec(0), Kind: add, New: true, ISIN: isinOf("AAAA"), Incarnation: 1, Description: "a"},
		{Seq: 3, TS: sec(2), Kind: add, ISIN: isinOf("AAAA"), Incarnation: 1, Description: "a v2"},
		{Seq: 5, TS: sec(4), Kind: add, New: true, ISIN: isinOf("BBBB"), Incarnation: 5, Description: "b"},
		{Seq: 6, TS: sec(5), Kind: del, ISIN: isinOf("AAAA"), Incarnation: 1},
		{Seq: 8, TS: sec(7), Kind: add, New: true, ISIN: isinOf("AAAA"), Incarnation: 8, Description: "a"},
	}
	if len(out.events) != len(want) {
		t.Fatalf("got %d events %+v, want %d", len(out.events), out.events, len(want))
	}
	for i := range want {
		if out.events[i] != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, out.events[i], want[i])
		}
	}
	if out.n != 1 {
		t.Errorf("released quote not aggregated before its ADD event: %d quotes", out.n)
	}
}

// TestPrefetchGroupChangesNothing: PrefetchGroup only reads: the snapshot and the ref
// listing are the same before and after, for active, unknown and deleted ISINs, right,
// wrong and missing refs, and non-quote messages.
func TestPrefetchGroupChangesNothing(t *testing.T) {
	a := New(DefaultOptions())
	var out nopOutput
	var msgs []feed.Message
	seq := uint64(0)
	for i := 0; i < 40; i++ {
		isin := isinOf(fmt.Sprintf("P%07d", i))
		ref := uint32(i + 1)
		seq++
		a.Apply(record.Record{Seq: seq, Message: feed.Message{Kind: feed.KindAdd, TS: t0, ISIN: isin, Ref: ref, Description: "x"}}, &out)
		seq++
		a.Apply(record.Record{Seq: seq, Message: feed.Message{Kind: feed.KindQuote, TS: t0 + int64(i), ISIN: isin, Ref: ref, Price: 5}}, &out)
		msgs = append(msgs, feed.Message{Kind: feed.KindQuote, ISIN: isin, Ref: ref, Price: 6}, feed.Message{Kind: feed.KindAdd, ISIN: isin},
			feed.Message{Kind: feed.KindQuote, ISIN: isin, Ref: uint32(40 - i), Price: 6}, feed.Message{Kind: feed.KindQuote, ISIN: isin, Price: 6})
	}
	seq++
	a.Apply(record.Record{Seq: seq, Message: feed.Message{Kind: feed.KindDelete, TS: t0 + 50, ISIN: isinOf("P0000003"), Ref: 4}}, &out)
	msgs = append(msgs, feed.Message{Kind: feed.KindQuote, ISIN: isinOf("ZZ0000000000")}, feed.Message{Kind: feed.KindQuote, ISIN: isinOf("ZZ0000000000"), Ref: 1 << 30})
	before, listed := a.AppendState(nil), slices.Clone(a.byRef)
	a.PrefetchGroup(msgs)
	if !bytes.Equal(before, a.AppendState(nil)) || !slices.Equal(listed, a.byRef) {
		t.Fatal("PrefetchGroup changed the state")
	}
	checkInvariants(t, a)
}

// hintRecorder is a recorder that also logs the ClosingHinter calls.
type hintRecorder struct{ recorder }

func (h *hintRecorder) Closing(n int) { h.lines = append(h.lines, fmt.Sprintf("H %d", n)) }

// TestClosingHint: an Output that implements ClosingHinter hears, before the Closed calls
// of each minute that closes, an n at least the number of candles that close then.
func TestClosingHint(t *testing.T) {
	var b builder
	b.ADD(sec(0), "AAAA", "a").ADD(sec(0), "BBBB", "b").ADD(sec(0), "CCCC", "c")
	b.Q(sec(1), "AAAA", 1).Q(sec(2), "BBBB", 2).Q(sec(3), "CCCC", 3)
	b.Q(sec(65), "AAAA", 1.5)                         // minute 0 closes (after the grace)
	b.Q(sec(130), "BBBB", 2.5).Q(sec(200), "AAAA", 1) // minutes 1 and 2
	a := New(DefaultOptions())
	var h hintRecorder
	for _, r := range b.recs {
		a.Apply(r, &h)
	}
	a.CloseAll(&h)
	hints, closes := 0, 0
	want := -1 // candles the last hint allows for
	for _, l := range h.lines {
		switch {
		case strings.HasPrefix(l, "H "):
			hints++
			fmt.Sscanf(l, "H %d", &want)
		case strings.HasPrefix(l, "C "):
			closes++
			if want <= 0 {
				t.Fatalf("a close without a hint room for it:\n%s", h.String())
			}
			want--
		default:
			want = -1 // a hint only covers the Closed calls right after it
		}
	}
	if closes != 6 || hints == 0 {
		t.Fatalf("%d closes, %d hints:\n%s", closes, hints, h.String())
	}
}
