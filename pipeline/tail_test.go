package pipeline

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/record"
	"github.com/quotesdev/quotes/wal"
)

const minute = aggregate.MinuteNanos

var (
	isinA = testISIN(0)
	isinB = testISIN(1)
)

func testISIN(i int) feed.ISIN {
	isin, ok := feed.ParseISIN(fmt.Sprintf("XS%010d", i))
	if !ok {
		panic(i)
	}
	return isin
}

// tc makes a candle of minute m (in minutes) with quotes at the given (second, price)
// points; the sequence of the i-th point is seq0+i.
func tc(isin feed.ISIN, inc uint64, m int64, seq0 uint64, pts ...[2]int64) aggregate.Candle {
	c := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: inc, Minute: m * minute}}
	for i, pt := range pts {
		c.Add(m*minute+pt[0]*int64(time.Second), seq0+uint64(i), feed.Price(pt[1]))
	}
	return c
}

// tailOp is one step of a tail test: a closed candle, a late correction or a DELETE.
type tailOp struct {
	kind string // "closed", "late", "drop"
	c    aggregate.Candle
}

func TestCandleTail(t *testing.T) {
	const n = 4
	active := map[feed.ISIN]uint64{isinA: 10, isinB: 20}
	isActive := func(isin feed.ISIN, inc uint64) bool { return active[isin] == inc }
	c5 := tc(isinA, 10, 5, 100, [2]int64{1, 1000}, [2]int64{30, 1200}, [2]int64{59, 900})
	late5 := tc(isinA, 10, 5, 5000, [2]int64{0, 700})                 // earlier than the open: a new open and low
	wide := tc(isinA, 10, 2, 2, [2]int64{0, 1}, [2]int64{1, 1 << 40}) // high − open does not fit 32 bits
	many := tc(isinA, 10, 3, 3, [2]int64{0, 3})
	many.Quotes = 1 << 32
	type want struct {
		isin    feed.ISIN
		inc     uint64
		lo, hi  int64 // minutes
		candles []aggregate.Candle
		low     int64 // entryLow, minutes (math.MinInt64: t.from)
	}
	for _, tt := range []struct {
		name string
		ops  []tailOp
		want []want
	}{
		{
			name: "closed minutes are kept in order",
			ops: []tailOp{
				{"closed", tc(isinA, 10, 1, 1, [2]int64{0, 10})},
				{"closed", tc(isinA, 10, 2, 2, [2]int64{5, 11}, [2]int64{6, 12})},
				{"closed", tc(isinA, 10, 4, 4, [2]int64{0, 13})}, // minute 3 had no quotes
			},
			want: []want{{isinA, 10, 0, 10, []aggregate.Candle{
				tc(isinA, 10, 1, 1, [2]int64{0, 10}),
				tc(isinA, 10, 2, 2, [2]int64{5, 11}, [2]int64{6, 12}),
				tc(isinA, 10, 4, 4, [2]int64{0, 13}),
			}, 1}},
		},
		{
			name: "a late correction ends what the tail answers at its minute",
			ops:  []tailOp{{"closed", c5}, {"late", late5}, {"closed", tc(isinA, 10, 6, 6000, [2]int64{0, 10})}},
			want: []want{{isinA, 10, 6, 7, []aggregate.Candle{tc(isinA, 10, 6, 6000, [2]int64{0, 10})}, 6}},
		},
		{
			name: "a late correction of a minute without quotes at its close",
			ops: []tailOp{
				{"closed", tc(isinA, 10, 7, 1, [2]int64{0, 10})},
				{"late", tc(isinA, 10, 6, 9, [2]int64{3, 20})},
			},
			want: []want{{isinA, 10, 7, 10, []aggregate.Candle{tc(isinA, 10, 7, 1, [2]int64{0, 10})}, 7}},
		},
		{
			name: "a late correction after the newest minute: nothing up to it is answered",
			ops: []tailOp{
				{"closed", tc(isinA, 10, 1, 1, [2]int64{0, 10})},
				{"late", tc(isinA, 10, 6, 9, [2]int64{3, 20})},
			},
			want: []want{{isinA, 10, 7, 10, nil, 7}},
		},
		{
			name: "a late correction before the window changes nothing answered",
			ops: []tailOp{
				{"closed", tc(isinA, 10, 10, 1, [2]int64{0, 10})},
				{"late", tc(isinA, 10, 6, 9, [2]int64{3, 20})},
			},
			want: []want{{isinA, 10, 0, 20, []aggregate.Candle{tc(isinA, 10, 10, 1, [2]int64{0, 10})}, 7}},
		},
		{
			name: "the ring wraps around: the window is the last n minutes",
			ops: []tailOp{
				{"closed", tc(isinA, 10, 1, 1, [2]int64{0, 1})},
				{"closed", tc(isinA, 10, 2, 2, [2]int64{0, 2})},
				{"closed", tc(isinA, 10, 3, 3, [2]int64{0, 3})},
				{"closed", tc(isinA, 10, 4, 4, [2]int64{0, 4})},
				{"closed", tc(isinA, 10, 5, 5, [2]int64{0, 5})},
				{"closed", tc(isinA, 10, 7, 7, [2]int64{0, 7})}, // evicts 3 (slot of 7) and 2 (of 6)
				{"late", tc(isinA, 10, 4, 8, [2]int64{1, 44})},
			},
			want: []want{{isinA, 10, 5, 10, []aggregate.Candle{
				tc(isinA, 10, 5, 5, [2]int64{0, 5}),
				tc(isinA, 10, 7, 7, [2]int64{0, 7}),
			}, 5}},
		},
		{
			name: "a gap longer than the ring empties it",
			ops: []tailOp{
				{"closed", tc(isinA, 10, 1, 1, [2]int64{0, 1})},
				{"closed", tc(isinA, 10, 2, 2, [2]int64{0, 2})},
				{"closed", tc(isinA, 10, 100, 3, [2]int64{0, 3})},
			},
			want: []want{{isinA, 10, 0, 200, []aggregate.Candle{tc(isinA, 10, 100, 3, [2]int64{0, 3})}, 97}},
		},
		{
			name: "a DELETE drops the incarnation; the next one starts empty",
			ops: []tailOp{
				{"closed", tc(isinA, 10, 1, 1, [2]int64{0, 1})},
				{"drop", aggregate.Candle{Key: aggregate.Key{ISIN: isinA, Incarnation: 10}}},
				{"closed", tc(isinA, 10, 2, 2, [2]int64{0, 2})}, // the ended incarnation's last minute
				{"closed", tc(isinA, 30, 2, 3, [2]int64{0, 3})},
				{"closed", tc(isinA, 10, 3, 4, [2]int64{0, 4})}, // older than the entry's: ignored
			},
			want: []want{
				{isinA, 10, 0, 10, nil, math.MinInt64},
				{isinA, 30, 0, 10, []aggregate.Candle{tc(isinA, 30, 2, 3, [2]int64{0, 3})}, -1},
			},
		},
		{
			name: "incarnations of other ISINs are apart",
			ops: []tailOp{
				{"closed", tc(isinA, 10, 1, 1, [2]int64{0, 1})},
				{"closed", tc(isinB, 20, 1, 2, [2]int64{0, 2})},
				{"drop", aggregate.Candle{Key: aggregate.Key{ISIN: isinB, Incarnation: 20}}},
			},
			want: []want{
				{isinA, 10, 0, 10, []aggregate.Candle{tc(isinA, 10, 1, 1, [2]int64{0, 1})}, -2},
				{isinB, 20, 0, 10, nil, math.MinInt64},
			},
		},
		{
			name: "candles that do not pack go whole to the overflow map",
			ops: []tailOp{
				{"closed", tc(isinA, 10, 1, 1, [2]int64{0, 1})},
				{"closed", wide},
				{"closed", many},
				{"closed", tc(isinA, 10, 4, 7, [2]int64{0, 1 << 40})}, // an open far from the entry's first
				{"closed", tc(isinA, 10, 5, 8, [2]int64{0, 3})},       // evicts minute 1
			},
			want: []want{{isinA, 10, 0, 10, []aggregate.Candle{
				wide, many,
				tc(isinA, 10, 4, 7, [2]int64{0, 1 << 40}),
				tc(isinA, 10, 5, 8, [2]int64{0, 3}),
			}, 2}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			active[isinA], active[isinB] = 10, 20
			tl := newCandleTail(n)
			tl.start(math.MinInt64)
			for _, op := range tt.ops {
				switch op.kind {
				case "closed", "late":
					tl.put(&op.c, op.kind == "late", isActive)
				case "drop":
					tl.drop(op.c.ISIN, op.c.Incarnation)
					active[op.c.ISIN] = 30 // the next ADD
				}
			}
			for _, w := range tt.want {
				// The tail answers the candles as queries do, without their quotes' times
				// and sequences.
				for i := range w.candles {
					w.candles[i] = queryCandle(w.candles[i])
				}
				e := tl.lookup(w.isin, w.inc)
				got := tl.appendRange(nil, e, w.lo*minute, w.hi*minute)
				if !reflect.DeepEqual(got, w.candles) {
					t.Errorf("%s/%d minutes [%d, %d):\n got %+v\nwant %+v", w.isin, w.inc, w.lo, w.hi, got, w.candles)
				}
				low := w.low
				if low != math.MinInt64 {
					low *= minute
				}
				if g := tl.entryLow(e); g != low {
					t.Errorf("%s/%d: entryLow %d, want %d", w.isin, w.inc, g, low)
				}
				// before(m) is the latest candle before m, from entryLow on (as queries
				// ask).
				for m := w.lo; m <= w.hi; m++ {
					var want aggregate.Candle
					found := false
					for _, c := range w.candles {
						if c.Minute < m*minute {
							want, found = c, true
						}
					}
					got, ok := tl.before(e, tl.entryLow(e), m*minute)
					if ok != found || got != want {
						t.Errorf("%s/%d: before minute %d: %+v %v, want %+v %v", w.isin, w.inc, m, got, ok, want, found)
					}
				}
			}
			if tt.name == "candles that do not pack go whole to the overflow map" && len(tl.overflow) != 3 {
				t.Errorf("%d overflow entries, want 3", len(tl.overflow))
			}
			for ref := range tl.overflow {
				if s := tl.slots(ref.entry); s[ref.slot].quotes != tailOverflow {
					t.Errorf("overflow entry %+v without its slot", ref)
				}
			}
		})
	}
}

// TestTailPackRoundTrip: random candles that pack decode to themselves (as queries answer
// them); those that do not go to the overflow map and come back whole.
func TestTailPackRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tl := newCandleTail(3)
	tl.start(math.MinInt64)
	isActive := func(feed.ISIN, uint64) bool { return true }
	packed, overflowed := 0, 0
	m := -int64(10000) * minute // through negative times and zero
	for i := 0; i < 20000; i++ {
		m += (1 + r.Int64N(2)) * minute
		c := aggregate.Candle{Key: aggregate.Key{ISIN: isinA, Incarnation: 1, Minute: m}}
		base := r.Uint64()
		spread := []int64{1, 1000, 1 << 31, 1 << 40}[r.IntN(4)]
		for q := 0; q < 1+r.IntN(5); q++ {
			seq := base + uint64(r.Int64N(spread))
			c.Add(m+r.Int64N(minute), seq, feed.Price(1+r.Int64N(spread)))
		}
		if r.IntN(10) == 0 {
			c.Quotes = uint64(r.Int64N(1 << 26))
		}
		tl.put(&c, false, isActive)
		e := tl.lookup(isinA, 1)
		if tl.slots(e)[tl.slotOf(m)].quotes == tailOverflow {
			overflowed++
		} else {
			packed++
		}
		got := tl.appendRange(nil, e, m, m+minute)
		if len(got) != 1 || got[0] != queryCandle(c) {
			t.Fatalf("put %+v, got %+v", c, got)
		}
	}
	if packed < 1000 || overflowed < 1000 {
		t.Fatalf("%d packed, %d overflowed: the test covers too little", packed, overflowed)
	}
	if len(tl.overflow) > 3 {
		t.Errorf("%d overflow entries for a ring of 3 slots", len(tl.overflow))
	}
}

// TestTailMemory measures the heap the tail of 50,000 instruments × DefaultTailMinutes
// holds.
func TestTailMemory(t *testing.T) {
	if tailSlotSize != 20 {
		t.Errorf("tailSlot is %d bytes, want 20", tailSlotSize)
	}
	const instruments = 50_000
	isActive := func(feed.ISIN, uint64) bool { return true }
	isins := make([]feed.ISIN, instruments)
	for i := range isins {
		isins[i] = testISIN(i)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	tl := newCandleTail(DefaultTailMinutes)
	tl.start(math.MinInt64)
	seq := uint64(1)
	for m := int64(0); m < DefaultTailMinutes+5; m++ {
		for i := range isins {
			c := tc(isins[i], uint64(i+1), m, seq, [2]int64{0, 100_000_000 + int64(i)}, [2]int64{30, 100_100_000}, [2]int64{59, 99_900_000})
			seq += 3
			tl.put(&c, false, isActive)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	heap := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	candles := instruments * DefaultTailMinutes
	t.Logf("tail of %d instruments × %d minutes: heap %.1f MiB (%.1f bytes a candle; bytes() estimates %.1f MiB), %d overflow entries",
		instruments, DefaultTailMinutes, float64(heap)/(1<<20), float64(heap)/float64(candles), float64(tl.bytes())/(1<<20), len(tl.overflow))
	if per := float64(heap) / float64(candles); per > 28 {
		t.Errorf("%.1f bytes a candle", per)
	}
	runtime.KeepAlive(tl)
}

// randomFeed returns n random records over a few ISINs: ADDs and DELETEs (incarnations
// end and start again), quotes (some late by up to 10 minutes, some far off the price,
// which do not pack in the tail), and ticks that leave minutes, or many minutes, without
// quotes.
func randomFeed(r *rand.Rand, n int) []feed.Message {
	now := int64(1_700_000_000) * int64(time.Second)
	msgs := make([]feed.Message, 0, n)
	const isins = 6
	for len(msgs) < n {
		isin := testISIN(r.IntN(isins))
		switch x := r.IntN(100); {
		case x < 70:
			ts := now + r.Int64N(int64(time.Second))
			if r.IntN(12) == 0 {
				ts = now - r.Int64N(int64(10*time.Minute))
			}
			price := feed.Price(100_000_000 + r.Int64N(1_000_000))
			if r.IntN(40) == 0 {
				price = feed.Price(1 + r.Int64N(1e15))
			}
			msgs = append(msgs, feed.Message{TS: ts, Kind: feed.KindQuote, ISIN: isin, Price: price})
			now += r.Int64N(int64(4 * time.Second))
		case x < 82:
			msgs = append(msgs, feed.Message{TS: now, Kind: feed.KindAdd, ISIN: isin, Description: "d"})
		case x < 85:
			msgs = append(msgs, feed.Message{TS: now, Kind: feed.KindDelete, ISIN: isin})
		default:
			d := r.Int64N(int64(90 * time.Second))
			if r.IntN(15) == 0 {
				d = r.Int64N(int64(50 * time.Minute))
			}
			now += d
			msgs = append(msgs, feed.Message{TS: now, Kind: record.KindTick})
		}
	}
	return msgs
}

// randomRange returns a query range around the current minute: last=N or from/to off
// minute boundaries.
func randomRange(r *rand.Rand, now int64) CandleRange {
	if r.IntN(2) == 0 {
		return CandleRange{Last: 1 + r.IntN(45)}
	}
	from := now - r.Int64N(int64(60*time.Minute))
	if r.IntN(2) == 0 {
		from = aggregate.MinuteOf(from)
	}
	return CandleRange{From: from, To: from + 1 + r.Int64N(int64(70*time.Minute))}
}

func openWith(t testing.TB, dir string, tailMinutes int) (*wal.Log, *Pipeline) {
	t.Helper()
	wo := wal.DefaultOptions(dir)
	wo.Sync = wal.SyncNone
	log, err := wal.Open(wo)
	if err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.CheckpointEvery = 3 * time.Minute
	opts.TailMinutes = tailMinutes
	// Abandoned pipelines' retention passes warn that the log is closed.
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := Open(log, opts)
	if err != nil {
		log.Close()
		t.Fatal(err)
	}
	return log, p
}

// TestTailEqualsStore drives pipelines with random records — one without a tail (every
// query reads the store), one with the default tail, one with a tail of 4 minutes, and
// one with a tail of 4 minutes that is abandoned and reopened now and then (its tail starts
// empty at every restart) — and compares their answers to random queries after every
// batch: they must be equal.
func TestTailEqualsStore(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			msgs := randomFeed(r, 12_000)
			dir := t.TempDir()
			refLog, ref := openWith(t, filepath.Join(dir, "ref"), -1)
			defer func() { ref.Close(); refLog.Close() }()
			type side struct {
				name    string
				tail    int
				restart bool
				log     *wal.Log
				p       *Pipeline
				// queries answered from the tail and from the store by the earlier
				// pipelines (restarts)
				served, fellBack uint64
			}
			sides := []*side{{name: "tail=default", tail: 0}, {name: "tail=4", tail: 4}, {name: "tail=4 restarted", tail: 4, restart: true}}
			for _, s := range sides {
				s.log, s.p = openWith(t, filepath.Join(dir, s.name), s.tail)
			}
			defer func() {
				for _, s := range sides {
					s.p.Close()
					s.log.Close()
				}
			}()
			queries, batches := 0, 0
			for i := 0; i < len(msgs); {
				b := msgs[i:min(i+1+r.IntN(200), len(msgs))]
				i += len(b)
				batches++
				if err := ref.Append(b); err != nil {
					t.Fatal(err)
				}
				for _, s := range sides {
					if err := s.p.Append(b); err != nil {
						t.Fatal(err)
					}
					if s.restart && batches%9 == 0 {
						s.served += s.p.tailServed.Load()
						s.fellBack += s.p.storeServed.Load()
						s.log.Close() // abandoned: no flush, no checkpoint
						s.log, s.p = openWith(t, filepath.Join(dir, s.name), s.tail)
					}
				}
				now, _ := ref.Now()
				for q := 0; q < 20; q++ {
					isin := testISIN(r.IntN(7)) // one never added
					rng := randomRange(r, now)
					want, werr := ref.Candles(isin, rng)
					for _, s := range sides {
						got, err := s.p.Candles(isin, rng)
						if err != werr || !reflect.DeepEqual(got, want) {
							t.Fatalf("%s after record %d, %s %+v:\n got %v %+v\nwant %v %+v", s.name, i, isin, rng, err, got, werr, want)
						}
						if got, ok, err := s.p.CandlesNow(isin, rng); ok && (err != werr || !reflect.DeepEqual(got, want)) {
							t.Fatalf("%s after record %d, %s %+v: CandlesNow\n got %v %+v\nwant %v %+v", s.name, i, isin, rng, err, got, werr, want)
						}
					}
					queries++
				}
			}
			for _, s := range sides {
				served, fellBack := s.served+s.p.tailServed.Load(), s.fellBack+s.p.storeServed.Load()
				t.Logf("%s: %d queries from the tail, %d from the store", s.name, served, fellBack)
				if served == 0 || (s.tail == 4 && fellBack == 0) {
					t.Errorf("%s: %d queries from the tail, %d from the store: the test covers too little", s.name, served, fellBack)
				}
			}
			if n := ref.tailServed.Load(); n != 0 {
				t.Errorf("the pipeline without a tail served %d queries from it", n)
			}
			st := ref.Stats()
			if st.Late == 0 || st.Deletes == 0 || st.AddsNew <= 6 {
				t.Errorf("the feed has %d late quotes, %d deletes, %d new incarnations: the test covers too little", st.Late, st.Deletes, st.AddsNew)
			}
		})
	}
}

// TestTailForgetsOnLockCommits: after a writer beside the pipeline (a backfill) held the
// commits, the tail no longer answers for the minutes closed so far: queries read them from
// the store, which the writer may have changed.
func TestTailForgetsOnLockCommits(t *testing.T) {
	log, p := openWith(t, t.TempDir(), 0)
	defer log.Close()
	defer p.Close()
	t0 := int64(1_700_000_000) * int64(time.Second)
	t0 -= t0 % minute
	msgs := []feed.Message{{TS: t0, Kind: feed.KindAdd, ISIN: isinA}}
	for m := int64(0); m < 5; m++ {
		msgs = append(msgs, feed.Message{TS: t0 + m*minute + int64(time.Second), Kind: feed.KindQuote, ISIN: isinA, Price: feed.Price(100 + m)})
	}
	msgs = append(msgs, feed.Message{TS: t0 + 5*minute + int64(6*time.Second), Kind: record.KindTick})
	if err := p.Append(msgs); err != nil {
		t.Fatal(err)
	}
	before, err := p.Candles(isinA, CandleRange{Last: 6})
	if err != nil {
		t.Fatal(err)
	}
	unlock := p.LockCommits()
	changed := before[2]
	changed.High += 1000
	if err := p.Store().PutCandles([]aggregate.Candle{changed}); err != nil {
		t.Fatal(err)
	}
	unlock()
	after, err := p.Candles(isinA, CandleRange{Last: 6})
	if err != nil {
		t.Fatal(err)
	}
	if after[2] != changed {
		t.Errorf("after the store changed under LockCommits: %+v, want %+v", after[2], changed)
	}
}

// TestQueriesDuringWrites runs queries while batches are applied (Append, and a Writer)
// and checks that no answer misses or doubles a closed minute: every instrument has
// exactly k quotes in each minute, and one late quote for each minute three minutes later,
// so a minute before the current one has k or k+1 quotes as the late one was applied or
// not — a minute missed would be flat (0), a minute doubled 2k or more.
func TestQueriesDuringWrites(t *testing.T) {
	const (
		instruments = 30
		k           = 3
		minutes     = 40
	)
	t0 := int64(1_700_000_000) * int64(time.Second)
	t0 -= t0 % minute
	var msgs []feed.Message
	for i := 0; i < instruments; i++ {
		msgs = append(msgs, feed.Message{TS: t0, Kind: feed.KindAdd, ISIN: testISIN(i)})
	}
	lateAt := func(x int64) int64 { return x + 3*minute + 20*int64(time.Second) } // late quote of minute x
	for m := int64(0); m < minutes; m++ {
		base := t0 + m*minute
		msgs = append(msgs, feed.Message{TS: base + 6*int64(time.Second), Kind: record.KindTick})
		for q := 0; q < k; q++ {
			for i := 0; i < instruments; i++ {
				ts := base + int64(10+q*20)*int64(time.Second) + int64(i)
				msgs = append(msgs, feed.Message{TS: ts, Kind: feed.KindQuote, ISIN: testISIN(i), Price: feed.Price(1000 + int64(i) + m)})
			}
			if q == 0 && m >= 3 {
				for i := 0; i < instruments; i++ {
					x := base - 3*minute
					msgs = append(msgs, feed.Message{TS: x + 30*int64(time.Second), Kind: feed.KindQuote, ISIN: testISIN(i), Price: feed.Price(2000)})
				}
			}
		}
	}
	check := func(t *testing.T, cs []aggregate.Candle, rng CandleRange) {
		if len(cs) == 0 {
			return
		}
		cur := cs[len(cs)-1].Minute // last=N ends with the current minute
		for j, c := range cs {
			if j > 0 && c.Minute != cs[j-1].Minute+minute {
				t.Errorf("%+v: minutes %d and %d not consecutive", rng, cs[j-1].Minute, c.Minute)
			}
			x := c.Minute
			var ok bool
			switch {
			case x == cur:
				ok = c.Quotes <= k
			case lateAt(x) < cur:
				ok = c.Quotes == k+1
			case lateAt(x) < cur+minute:
				ok = c.Quotes == k || c.Quotes == k+1
			default:
				ok = c.Quotes == k
			}
			if !ok {
				t.Errorf("%+v: minute %d (current %d) has %d quotes", rng, (x-t0)/minute, (cur-t0)/minute, c.Quotes)
			}
		}
	}
	for _, tt := range []struct {
		name   string
		tail   int
		writer bool
	}{
		{"append, tail=default", 0, false},
		{"append, tail=4", 4, false},
		{"writer, tail=default", 0, true},
		{"writer, tail=4", 4, true},
		{"append, no tail", -1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log, p := openWith(t, t.TempDir(), tt.tail)
			defer log.Close()
			defer p.Close()
			var done atomic.Bool
			var wg sync.WaitGroup
			var answers atomic.Int64
			for g := 0; g < 3; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(g), 3))
					for !done.Load() {
						rng := CandleRange{Last: 1 + r.IntN(12)}
						cs, err := p.Candles(testISIN(r.IntN(instruments)), rng)
						if err != nil && err != ErrUnknownInstrument {
							t.Error(err)
							return
						}
						check(t, cs, rng)
						answers.Add(1)
					}
				}()
			}
			var w *Writer
			if tt.writer {
				w = p.NewWriter(4)
			}
			for i := 0; i < len(msgs); i += 50 {
				b := slices.Clone(msgs[i:min(i+50, len(msgs))])
				var err error
				if w != nil {
					err = w.Write(b, "", nil, nil)
				} else {
					err = p.Append(b)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if w != nil {
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
			done.Store(true)
			wg.Wait()
			for i := 0; i < instruments; i++ {
				rng := CandleRange{Last: minutes}
				cs, err := p.Candles(testISIN(i), rng)
				if err != nil {
					t.Fatal(err)
				}
				check(t, cs, rng)
			}
			t.Logf("%d answers checked during the writes; %d from the tail, %d from the store", answers.Load(), p.tailServed.Load(), p.storeServed.Load())
		})
	}
}

// openFiveMinutes opens a pipeline with the given tail and appends five minutes of isinA,
// one quote a minute from t0 on; want is its last=30m answer.
func openFiveMinutes(t *testing.T, tail int) (log *wal.Log, p *Pipeline, t0 int64, want []aggregate.Candle) {
	t.Helper()
	log, p = openWith(t, t.TempDir(), tail)
	t0 = int64(1_700_000_000) * int64(time.Second)
	t0 -= t0 % minute
	msgs := []feed.Message{{TS: t0, Kind: feed.KindAdd, ISIN: isinA}}
	for m := int64(0); m < 5; m++ {
		msgs = append(msgs, feed.Message{TS: t0 + m*minute + int64(time.Second), Kind: feed.KindQuote, ISIN: isinA, Price: feed.Price(100 + m)})
	}
	if err := p.Append(msgs); err != nil {
		t.Fatal(err)
	}
	want, err := p.Candles(isinA, CandleRange{Last: 30})
	if err != nil {
		t.Fatal(err)
	}
	return log, p, t0, want
}

// TestCandlesNow: CandlesNow answers from memory or not at all — not while a batch is
// being applied (p.mu held), not when the store must be read.
func TestCandlesNow(t *testing.T) {
	for _, tail := range []int{0, -1} {
		log, p, _, want := openFiveMinutes(t, tail)
		got, ok, err := p.CandlesNow(isinA, CandleRange{Last: 30})
		if ok != (tail == 0) || err != nil || ok && !reflect.DeepEqual(got, want) {
			t.Errorf("tail=%d: CandlesNow %v %v %+v, Candles %+v", tail, ok, err, got, want)
		}
		if _, ok, err := p.CandlesNow(isinB, CandleRange{Last: 30}); !ok || err != ErrUnknownInstrument {
			t.Errorf("tail=%d: unknown instrument: %v %v", tail, ok, err)
		}
		p.mu.Lock()
		if _, ok, _ := p.CandlesNow(isinA, CandleRange{Last: 30}); ok {
			t.Errorf("tail=%d: CandlesNow answered while p.mu was held", tail)
		}
		p.mu.Unlock()
		p.Close()
		log.Close()
	}
}

// TestCandlesNowInto: with its QueryBuffers reused, an answer from memory is the same as
// CandlesNow's and allocates nothing (a server answering tens of thousands of last=30m
// requests a second then puts no load on the collector); the buffers of one answer do not
// leak into the next.
func TestCandlesNowInto(t *testing.T) {
	log, p, _, want := openFiveMinutes(t, 0)
	defer log.Close()
	defer p.Close()
	var qb QueryBuffers
	short := CandleRange{Last: 2}
	wantShort, err := p.Candles(isinA, short)
	if err != nil || len(wantShort) != 2 {
		t.Fatalf("Candles %+v: %v %+v, want two", short, err, wantShort)
	}
	for i := 0; i < 3; i++ { // long, short, long again: nothing left over from the one before
		got, ok, err := p.CandlesNowInto(&qb, isinA, CandleRange{Last: 30})
		if !ok || err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: CandlesNowInto %v %v %+v, want %+v", i, ok, err, got, want)
		}
		if got, ok, err := p.CandlesNowInto(&qb, isinA, short); !ok || err != nil || !reflect.DeepEqual(got, wantShort) {
			t.Fatalf("round %d: CandlesNowInto %+v: %v %v %+v, want %+v", i, short, ok, err, got, wantShort)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok, err := p.CandlesNowInto(&qb, isinA, CandleRange{Last: 30}); !ok || err != nil {
			t.Fatalf("CandlesNowInto: %v %v", ok, err)
		}
	})
	if allocs != 0 {
		t.Errorf("CandlesNowInto allocated %.1f times per answer, want 0", allocs)
	}
}

// TestStoreWriteBlocksOnlyStoreReads: while a commit writes a closed minute to the store
// (holding p.inflightMu), the next batches are still derived and committed, and queries
// answered from memory still answer; only a query that reads the store waits for the write.
func TestStoreWriteBlocksOnlyStoreReads(t *testing.T) {
	for _, tail := range []int{0, -1} {
		log, p, t0, want := openFiveMinutes(t, tail)
		p.inflightMu.Lock() // a commit writing a closed minute
		// A batch within the current minute closes nothing: derive and commit go ahead.
		same := []feed.Message{{TS: t0 + 4*minute + 2*int64(time.Second), Kind: feed.KindQuote, ISIN: isinA, Price: 104}}
		appended := make(chan error, 1)
		go func() { appended <- p.Append(same) }()
		select {
		case err := <-appended:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("tail=%d: Append waited for a store write", tail)
		}
		want[len(want)-1].Quotes++
		got, ok, err := p.CandlesNow(isinA, CandleRange{Last: 30})
		if ok != (tail == 0) || err != nil || ok && !reflect.DeepEqual(got, want) {
			t.Errorf("tail=%d: CandlesNow during a store write: %v %v %+v, want %+v", tail, ok, err, got, want)
		}
		answered := make(chan []aggregate.Candle, 1)
		go func() {
			cs, err := p.Candles(isinA, CandleRange{Last: 30})
			if err != nil {
				t.Error(err)
			}
			answered <- cs
		}()
		if tail < 0 {
			select {
			case <-answered:
				t.Errorf("a query reading the store answered during a store write")
			case <-time.After(50 * time.Millisecond):
			}
		}
		p.inflightMu.Unlock()
		if got := <-answered; !reflect.DeepEqual(got, want) {
			t.Errorf("tail=%d: Candles %+v, want %+v", tail, got, want)
		}
		p.Close()
		log.Close()
	}
}

// TestTailFollowsDriftingPrice: a price that drifts far from the entry's first open keeps
// packing (the base moves with it), and every candle in the window reads back whole.
func TestTailFollowsDriftingPrice(t *testing.T) {
	tl := newCandleTail(5)
	tl.start(math.MinInt64)
	isActive := func(feed.ISIN, uint64) bool { return true }
	var put []aggregate.Candle
	for i := int64(0); i < 200; i++ {
		m := i * minute
		p := feed.Price(100*feed.PriceScale + i*400*feed.PriceScale) // +$400 a minute: ±2,147 units is passed every ~5 minutes
		c := aggregate.Candle{Key: aggregate.Key{ISIN: isinA, Incarnation: 1, Minute: m}}
		c.Add(m+1, uint64(2*i+1), p)
		c.Add(m+2, uint64(2*i+2), p+feed.PriceScale)
		tl.put(&c, false, isActive)
		put = append(put, queryCandle(c))
		e := tl.lookup(isinA, 1)
		lo := max(0, i-4)
		if got := tl.appendRange(nil, e, lo*minute, m+minute); !reflect.DeepEqual(got, put[lo:]) {
			t.Fatalf("minute %d: got %+v\nwant %+v", i, got, put[lo:])
		}
		if tl.slots(e)[tl.slotOf(m)].quotes == tailOverflow {
			t.Fatalf("minute %d: the newest candle went to the overflow map", i)
		}
	}
	if len(tl.overflow) > 5 {
		t.Errorf("%d overflow entries for a window of 5", len(tl.overflow))
	}
}
