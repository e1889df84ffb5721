package memlimit

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
)

func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		budget, live, meta int64
		rate               float64
		want               int64
	}{
		{512 * mib, 100 * mib, 10 * mib, 0, 512 * mib},                     // under the budget: the budget
		{512 * mib, 480 * mib, 10 * mib, 1e9, 610 * mib},                   // fast allocation: a quarter of headroom
		{512 * mib, 480 * mib, 10 * mib, 1 * mib, 530 * mib},               // slow: a twelfth (40 MiB)
		{512 * mib, 480 * mib, 10 * mib, 20 * mib, 570 * mib},              // between: 4 s of allocation
		{256 * mib, 240 * mib, 12 * mib, 0, 240*mib + 12*mib + 240*mib/12}, // near the budget: meta counts
		{512 * mib, 1 << 30, 0, 1e12, 1<<30 + 256*mib},
		{0, 0, 0, 0, 0},
	} {
		if got := Limit(tc.budget, tc.live, tc.meta, tc.rate); got != tc.want {
			t.Errorf("Limit(%d, %d, %d, %g) = %d, want %d", tc.budget, tc.live, tc.meta, tc.rate, got, tc.want)
		}
	}
}

// mib is a mebibyte.
const mib = 1 << 20

// testGovernor returns a governor with a budget of 256 MiB that reads *u, on a mock clock,
// and the process's memory limit before it, which is restored when the test ends.
func testGovernor(t *testing.T, u *usage) (*governor, *clock.Mock, int64) {
	t.Helper()
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	clk := clock.NewMock()
	g := newGovernor(256*mib, clk, func() usage { return *u })
	g.prev = before
	return g, clk, before
}

// TestGovernorRate: the governor measures the allocation rate between its updates on its
// clock as a moving average — a sustained fast pace gets the most headroom within seconds,
// a short burst hardly moves it, a slow pace gets the least — and sets the limit from it.
func TestGovernorRate(t *testing.T) {
	u := usage{live: 1024 * mib, meta: 16 * mib, ok: true}
	g, clk, before := testGovernor(t, &u)
	step := func(d time.Duration, allocated uint64) {
		t.Helper()
		clk.Add(d)
		u.allocs += allocated
		if !g.update() {
			t.Fatal("update reports the governor stopped")
		}
	}
	limit := func() int64 { return debug.SetMemoryLimit(-1) }
	least, most := int64(1024*mib+16*mib+1024*mib/12), int64(1024*mib+16*mib+256*mib)
	step(0, 0) // first sample: no rate yet
	if limit() != least || g.rate != 0 {
		t.Fatalf("limit %d rate %g at the start, want %d (a twelfth) and 0", limit(), g.rate, least)
	}
	step(time.Second, 400*mib) // a replay's pace: the average climbs
	if want := 400 * mib * -math.Expm1(-1.0/30); math.Abs(g.rate-want) > 1 {
		t.Fatalf("rate %g after a second at 400 MiB/s, want %g", g.rate, want)
	}
	for range 5 {
		step(time.Second, 400*mib)
	}
	if limit() != most {
		t.Fatalf("limit %d after 6 s at 400 MiB/s, want %d (a quarter)", limit(), most)
	}
	rate := g.rate
	step(100*time.Millisecond, 0) // too short to measure: nothing changes
	if g.rate != rate || g.lastAt != clk.Now().Add(-100*time.Millisecond) {
		t.Fatalf("rate %g after 100 ms, want %g unchanged", g.rate, rate)
	}
	for range 60 {
		step(5*time.Second, 5*mib) // a live ingest's pace, 1 MiB/s, for 5 minutes
	}
	if limit() != least || g.rate < 1*mib || g.rate > 1.01*mib {
		t.Fatalf("limit %d rate %g at 1 MiB/s, want %d and ~%d", limit(), g.rate, least, 1*mib)
	}
	step(time.Second, 60*mib) // a checkpoint's burst
	if limit() != least || g.rate > 3*mib {
		t.Fatalf("limit %d rate %g after a 60 MiB burst, want %d and under 3 MiB/s", limit(), g.rate, least)
	}
	u.allocs = 0 // a counter that went back (it never does): measure afresh
	step(time.Second, 0)
	if g.lastAllocs != 0 || g.lastAt != clk.Now() {
		t.Fatal("a counter that went back was not taken as a new start")
	}
	g.stop()
	if g.update() || limit() != before {
		t.Fatal("a stopped governor updated, or did not restore the limit")
	}
}

// TestGovernorBusy: a program that allocates fast (a replay) gets no recheck collection of
// its own and keeps the memory of a jump that ended: it collects often by itself.
func TestGovernorBusy(t *testing.T) {
	u := usage{live: 300 * mib, meta: 10 * mib, ok: true}
	g, clk, _ := testGovernor(t, &u)
	collect := func(d time.Duration, live uint64) {
		clk.Add(d)
		u.live, u.gcs, u.allocs = live, u.gcs+1, u.allocs+uint64(d.Seconds()*300*mib)
		g.update()
	}
	collect(0, 280*mib)
	for range 10 {
		collect(time.Second, 290*mib) // 300 MiB/s
	}
	collect(time.Second, 330*mib) // a jump
	clk.Add(RecheckAfter)
	g.update()
	if g.recheckDue() {
		t.Fatal("a recheck collection in a program that collects every second")
	}
	collect(time.Second, 285*mib)
	if !g.ended || g.takeEnded() {
		t.Fatal("the end of the jump was not recorded, or its memory given back in a busy program")
	}
}

// TestGovernorLongRate: in a process that has allocated slowly for minutes, a burst of a
// few seconds (a Badger compaction) raises the 30-s average but not the long-run rate, and
// the headroom stays the least; a replay's pace from the start gets the most at once.
func TestGovernorLongRate(t *testing.T) {
	u := usage{live: 280 * mib, meta: 12 * mib, ok: true}
	g, clk, _ := testGovernor(t, &u)
	step := func(d time.Duration, allocated uint64) {
		clk.Add(d)
		u.allocs += allocated
		g.update()
	}
	limit := func() int64 { return debug.SetMemoryLimit(-1) }
	least := Limit(256*mib, 280*mib, 12*mib, 0)
	step(0, 0)
	for range 120 {
		step(5*time.Second, 5*mib) // 10 minutes at 1 MiB/s
	}
	for range 8 {
		step(250*time.Millisecond, 45*mib) // 2 s at 180 MiB/s
	}
	if g.rate < 10*mib || g.long > 5*mib {
		t.Fatalf("rate %g, long-run rate %g after the burst: want over 10 MiB/s and under 5", g.rate/mib, g.long/mib)
	}
	if limit() != least {
		t.Fatalf("limit %d MiB after the burst, want %d (the least headroom)", limit()/mib, least/mib)
	}

	u.allocs = 0 // a new start: a replay's pace
	step(time.Second, 0)
	for range 6 {
		step(time.Second, 400*mib)
	}
	if most := int64(280*mib + 12*mib + 280*mib/4); limit() != most || g.long < 300*mib {
		t.Fatalf("limit %d MiB, long-run rate %g MiB/s after 6 s at 400 MiB/s: want %d and the mean since the start", limit()/mib, g.long/mib, most/mib)
	}
}

// TestRun: the limit is the budget while the live heap is small, also after the ticker's
// updates, and the previous limit is restored when the context ends.
func TestRun(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithCancel(context.Background())
	clk := clock.NewMock()
	Run(ctx, Options{Budget: 1 << 40, Interval: time.Millisecond, Clock: clk})
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("limit %d while running, want the budget", got)
	}
	for range 20 {
		clk.Add(time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("limit %d after some checks, want the budget (the live heap is small)", got)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) != before {
		if time.Now().After(deadline) {
			t.Fatal("the previous limit was not restored")
		}
		runtime.Gosched()
	}
	Run(context.Background(), Options{})
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("budget 0 changed the limit to %d", got)
	}
}

// TestRunAfterCollection: when the live heap outgrows the budget, the limit follows it
// after the next collection, without waiting for the timer.
func TestRunAfterCollection(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		for debug.SetMemoryLimit(-1) != before {
			time.Sleep(time.Millisecond)
		}
	}()
	const budget = 8 << 20
	Run(ctx, Options{Budget: budget, Interval: time.Hour})
	held := make([][]byte, 0, 64)
	for range 64 {
		held = append(held, make([]byte, 1<<20)) // 64 MiB live
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		if got := debug.SetMemoryLimit(-1); got >= 64<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("limit %d after collections with 64 MiB live, want it above the live heap (budget %d)", debug.SetMemoryLimit(-1), budget)
		}
		time.Sleep(time.Millisecond)
	}
	runtime.KeepAlive(held)
}

// TestGovernorRecheck: a collection that finds the live heap jumped (a memtable flush's
// moment) raises the limit at once, and RecheckAfter later, unless a collection has found
// it over, the governor asks for one; a jump that is over brings the limit back,
// one that stays is the new level, and a collection after the recheck time settles it
// without a forced one.
func TestGovernorRecheck(t *testing.T) {
	u := usage{meta: 10 * mib, ok: true}
	g, clk, _ := testGovernor(t, &u)
	limitFor := func(live uint64) int64 { return Limit(256*mib, int64(live), 10*mib, 0) }
	collect := func(live uint64) { // a collection found live; its cleanup runs update
		t.Helper()
		u.live, u.gcs = live, u.gcs+1
		g.update()
		if got := debug.SetMemoryLimit(-1); got != limitFor(live) {
			t.Fatalf("limit %d after a collection found %d MiB live, want %d", got, live/mib, limitFor(live))
		}
	}
	tick := func(d time.Duration) bool { // the timer: update, then is a collection due?
		t.Helper()
		clk.Add(d)
		g.update()
		return g.recheckDue()
	}

	collect(240 * mib)
	collect(250 * mib) // within a sixteenth: no jump
	if tick(RecheckAfter) {
		t.Fatal("a recheck without a jump")
	}
	collect(300 * mib) // a memtable flush: the limit follows at once
	if tick(RecheckAfter / 2) {
		t.Fatal("a recheck before its time")
	}
	if !tick(RecheckAfter / 2) {
		t.Fatal("no recheck RecheckAfter after the jump")
	}
	if tick(time.Second) {
		t.Fatal("a second forced collection for the same jump")
	}
	collect(245 * mib) // the forced collection: the flush is over
	if !g.takeEnded() {
		t.Fatal("the end of the flush's jump was not reported")
	}
	if tick(RecheckAfter) {
		t.Fatal("a recheck after the jump was over")
	}

	collect(320 * mib) // a lasting rise: a replay's batches
	clk.Add(RecheckAfter / 2)
	collect(330 * mib) // measured again too soon to tell
	clk.Add(RecheckAfter)
	collect(330 * mib) // after the recheck time: the new level
	if tick(time.Second) {
		t.Fatal("a forced collection though one after the recheck time settled the jump")
	}
	collect(340 * mib) // a sixteenth of 330 MiB is more than 10: no jump from the new base
	if g.base != 330*mib || !g.recheckAt.IsZero() {
		t.Fatalf("base %d MiB, recheck at %v: want 330 MiB (kept) and none", g.base/mib, g.recheckAt)
	}
	if g.takeEnded() {
		t.Fatal("jumps that became new levels were taken as ended")
	}

	// A compaction: the live heap grows a few MiB from one collection to the next, each
	// within a sixteenth of the one before, 60 MiB in all. It is a jump from where it
	// started, rechecked, and once over recorded as ended (its memory is given back).
	clk.Add(time.Minute)
	collect(330 * mib)
	for live := uint64(336); live <= 390; live += 6 {
		collect(live * mib)
		clk.Add(200 * time.Millisecond)
	}
	if g.base != 330*mib || g.recheckAt.IsZero() {
		t.Fatalf("base %d MiB, recheck at %v after a rise in small steps: want 330 MiB and a recheck", g.base/mib, g.recheckAt)
	}
	if !tick(RecheckAfter) {
		t.Fatal("no recheck of a rise in small steps")
	}
	collect(332 * mib) // the compaction is over
	if !g.takeEnded() || g.takeEnded() {
		t.Fatal("the end of a jump was not reported exactly once")
	}

	collect(400 * mib)
	g.stop()
	clk.Add(RecheckAfter)
	if g.recheckDue() {
		t.Fatal("a stopped governor asked for a collection")
	}
}
