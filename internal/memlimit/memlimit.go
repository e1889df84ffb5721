// Package memlimit keeps the Go heap near a memory budget (issue 15). The runtime's soft
// limit (debug.SetMemoryLimit, GOMEMLIMIT) makes the collector run before the heap doubles
// (GOGC's 100 % headroom), which is most of the resident memory of a replay; but a fixed
// limit below the live heap makes the collector run all the time. So the limit is
// max(budget, live heap + runtime memory + headroom), recomputed after garbage
// collections: at or below the budget the heap stays under it, above it the collector gets
// the headroom of the allocation rate (Limit).
//
// What the budget has to hold (the spec workload, 50,000 instruments quoting every second):
// the hot detector's windows, 4 bytes per quote of the last window + lateness (5m30s) in
// their delta form (8 for a few minutes after a price jump) ≈ 75 MiB with ring slack and
// headers when full; the aggregator's incarnations and open candles
// (~20 MiB); the pipeline's tail of closed candles for queries (~32 MiB: 30 minutes of
// every instrument); Badger's memtable (~10 MiB with its slack: wal.Options.MemTableSize,
// allocated whole) and its table builders; its block cache (16 MiB,
// wal.Options.BlockCacheSize); and a replay's batches in flight (8 per stage of 32,768
// messages, ~2 MiB each). Once the windows and the tail are full that is ~155 MiB, below
// DefaultBudget: a live ingest's heap grows towards the budget between collections (its
// steady resident set, ~250 MiB, is mostly that; at its ~1 MB a second, a collection
// every minute or two). A replay's live heap is above the budget, so its limit follows the
// live heap; a larger instrument count or quote rate raises the live heap, and the limit
// follows it.
// docs/performance.md has the measured resident sizes.
//
// A collection can also find a live heap swollen for a moment: while Badger flushes a
// memtable (every minute or two at the spec load) it holds the next memtable's arena and the new
// table's blocks too, ~25 MiB more, and the table builder's buffers stay in Badger's pool
// for seconds after. A limit set from that lets the heap grow into it until the next
// collection, a minute later at a live ingest's pace; so a jump is measured again
// (RecheckAfter).
package memlimit

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// DefaultBudget is the default soft limit of the Go heap.
const DefaultBudget = 256 << 20

// The collector's headroom above the live heap, when that is over the budget: what the
// program allocates in AllocHorizon, at least MinHeadroom and at most MaxHeadroom of the
// live heap. A replay allocates hundreds of MB a second and gets the most: an eighth made
// it 25–95 % slower, the collector running all the time. A live ingest at the spec load
// allocates about 1 MB a second: a quarter of its ~260 MiB live heap held ~65 MiB of
// garbage for a minute between collections, most of what kept its resident set above
// 300 MiB (make bench); with a twelfth it collects every ~3 s, ~1 % of a core. A sixteenth
// was too little: the runtime keeps ~3 % of the limit for itself, and what was left let
// collections run back to back (600 in 30 s). The rate
// is a moving average over about RateWindow: a checkpoint every 40 s allocates tens of MB
// in a second, which a rate measured over that second turned into a quarter of headroom.
// And it is at most the long-run rate (LongRateWindow): a Badger compaction in a live
// ingest (~360 MB in 2 s every ~6.5 minutes at the spec load) raised the 30-s average to
// 12 MB/s, 48 MB of headroom on top of the ~50 MB its table builders hold, and the resident
// set to 323 MiB for a few seconds; the long-run rate of that process is ~2 MB/s. A
// replay, or a restart's restore, allocates as fast from its start: its long-run rate is
// the mean since the start, above the 30-s average, so it gets the headroom as before.
const (
	MaxHeadroom  = 0.25
	MinHeadroom  = 1.0 / 12
	AllocHorizon = 4 * time.Second
	// RateWindow is the time constant of the allocation rate's moving average.
	RateWindow = 30 * time.Second
	// LongRateWindow is the span of the long-run rate: the mean since the start while the
	// governor has run for less than that, then a moving average with that time constant.
	LongRateWindow = 2 * time.Minute
)

// A collection that finds the live heap more than JumpFraction above its settled level
// starts a recheck: RecheckAfter later, unless a collection has found the jump over by
// then, the governor runs one; a live heap found at or after that time still above the
// jump's base is the new level. The limit follows the jump meanwhile (a lower one would
// make the collector run back to back while the memory is held); the recheck only shortens
// how long the heap may grow into it, and once a jump is over the governor gives the
// memory the heap grew into back to the system (debug.FreeOSMemory: one more collection;
// the runtime's scavenger alone took 20 s or more). A memtable flush or a compaction holds
// its memory for a few seconds; a restart's restore or a replay's pace grows the live heap
// for good, and their own collections confirm that.
const (
	JumpFraction = 1.0 / 16
	RecheckAfter = 5 * time.Second
)

// Budget is a byte size flag value: "512MiB", "1GiB", "800000000"; 0 turns the governor off.
type Budget int64

// Set parses KiB, MiB, GiB (and KB, MB, GB as the same binary units) or plain bytes.
func (b *Budget) Set(s string) error {
	up := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if num, ok := strings.CutSuffix(up, u.suffix); ok {
			up, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(up, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || v*float64(mult) >= math.MaxInt64 {
		return fmt.Errorf("memory budget %q: want a size like 512MiB or 1GiB, or 0 for none", s)
	}
	*b = Budget(v * float64(mult))
	return nil
}

// String prints the budget in MiB when it is a whole number of them.
func (b *Budget) String() string {
	if *b > 0 && *b%(1<<20) == 0 {
		return strconv.FormatInt(int64(*b)>>20, 10) + "MiB"
	}
	return strconv.FormatInt(int64(*b), 10)
}

// Type names the flag value type for pflag help output.
func (b *Budget) Type() string { return "size" }

// Limit returns the soft memory limit for a live heap of live bytes that the program
// allocates to at rate bytes per second, beside meta bytes of the runtime's own memory
// (stacks, metadata: what does not grow with the limit): max(budget, live + meta +
// headroom), the headroom being rate × AllocHorizon, between live × MinHeadroom and live
// × MaxHeadroom. Counting meta keeps the heap's own headroom when the live heap nears the
// budget (without it, collections ran every ~200 ms there).
func Limit(budget, live, meta int64, rate float64) int64 {
	h := min(max(rate*AllocHorizon.Seconds(), float64(live)*MinHeadroom), float64(live)*MaxHeadroom)
	return max(budget, live+meta+int64(h))
}

// Options configure Run.
type Options struct {
	// Budget is the soft limit while the live heap is small; ≤ 0: Run does nothing.
	Budget int64
	// Interval is how often the limit is recomputed besides after every collection
	// (default 500 ms).
	Interval time.Duration
	// Clock times the updates and the allocation rate (default the wall clock).
	Clock clock.Clock
}

// Run sets the soft memory limit to opts.Budget and keeps it at Limit(budget, live heap,
// runtime memory, allocation rate), recomputed after every garbage collection and at least
// every interval, until ctx is done; then it restores the limit it found. On its timer it
// also runs the collection that rechecks a jump of the live heap (RecheckAfter). It
// returns at once, doing nothing, when the budget is ≤ 0.
//
// After every collection, not only on a timer: while a restart restores its state the
// live heap grows by ~150 MiB in half a second, and with the limit still at the budget the
// collector ran back to back (40 collections in 1.4 s).
func Run(ctx context.Context, opts Options) {
	if opts.Budget <= 0 {
		return
	}
	if opts.Interval <= 0 {
		opts.Interval = 500 * time.Millisecond
	}
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	g := newGovernor(opts.Budget, opts.Clock, readRuntime())
	g.prev = debug.SetMemoryLimit(opts.Budget)
	g.armGC()
	go func() {
		t := opts.Clock.Ticker(opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				g.stop()
				return
			case <-t.C:
				if g.update() && g.recheckDue() {
					runtime.GC()
					g.update() // judge the recheck now (the collection's cleanup may run later)
				}
				if g.takeEnded() {
					debug.FreeOSMemory()
				}
			}
		}
	}()
}

// usage is what the governor reads from the runtime: the live heap (as of the last
// collection), the bytes allocated so far, the runtime's own memory, and the number of
// collections so far.
type usage struct {
	live, allocs, meta, gcs uint64
	ok                      bool
}

// readRuntime returns a reader of usage from runtime/metrics.
func readRuntime() func() usage {
	names := []string{
		"/gc/heap/live:bytes",
		"/gc/heap/allocs:bytes",
		"/memory/classes/heap/unused:bytes",
		"/memory/classes/heap/stacks:bytes",
		"/memory/classes/os-stacks:bytes",
		"/memory/classes/metadata/other:bytes",
		"/memory/classes/metadata/mspan/inuse:bytes",
		"/memory/classes/metadata/mcache/inuse:bytes",
		"/memory/classes/other:bytes",
		"/memory/classes/profiling/buckets:bytes",
		"/gc/cycles/total:gc-cycles",
	}
	sample := make([]metrics.Sample, len(names))
	for i, n := range names {
		sample[i].Name = n
	}
	return func() usage {
		metrics.Read(sample)
		u := usage{ok: true}
		for i := range sample {
			if sample[i].Value.Kind() != metrics.KindUint64 {
				return usage{}
			}
			switch v := sample[i].Value.Uint64(); i {
			case 0:
				u.live = v
			case 1:
				u.allocs = v
			case len(names) - 1:
				u.gcs = v
			default:
				u.meta += v
			}
		}
		return u
	}
}

// governor is the state of one Run.
type governor struct {
	mu      sync.Mutex
	budget  int64
	clock   clock.Clock
	read    func() usage
	cur     int64 // the limit set
	prev    int64 // the limit before Run
	stopped bool
	// rate is the allocation rate (bytes/s) over the last seconds: the rates measured
	// between its updates, averaged with weights that halve every RateWindow × ln 2 (an
	// exponential moving average), so that a sustained pace counts within seconds and a
	// burst (a checkpoint's buffers) hardly. long is the long-run rate (LongRateWindow),
	// measured from startAt and startAllocs at first. The governor goes by the smaller.
	rate        float64
	long        float64
	lastAt      time.Time
	lastAllocs  uint64
	startAt     time.Time
	startAllocs uint64
	live        uint64 // the live heap of the last update
	// The recheck of a jump: gcs is the collection count of the last update, base the live
	// heap before the jump (0: none yet), recheckAt when the jump is measured again (zero:
	// no jump pending), forced whether the governor ran that collection itself, ended
	// whether a jump ended since the memory was last given back.
	gcs       uint64
	base      uint64
	recheckAt time.Time
	forced    bool
	ended     bool
}

func newGovernor(budget int64, clk clock.Clock, read func() usage) *governor {
	return &governor{budget: budget, cur: budget, clock: clk, read: read}
}

// minRateSpan is the shortest time over which the allocation rate is measured.
const minRateSpan = 250 * time.Millisecond

// update sets the limit for the live heap of the last collection; it reports false once
// the governor is stopped.
func (g *governor) update() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	u := g.read()
	if !u.ok || u.live > math.MaxInt64/2 || u.meta > math.MaxInt64/4 {
		return true
	}
	now := g.clock.Now()
	switch dt := now.Sub(g.lastAt); {
	case g.lastAt.IsZero() || u.allocs < g.lastAllocs:
		g.lastAt, g.lastAllocs = now, u.allocs
		g.startAt, g.startAllocs = now, u.allocs
	case dt >= minRateSpan:
		measured := float64(u.allocs-g.lastAllocs) / dt.Seconds()
		g.rate += (measured - g.rate) * -math.Expm1(-dt.Seconds()/RateWindow.Seconds())
		if since := now.Sub(g.startAt); since <= LongRateWindow {
			g.long = float64(u.allocs-g.startAllocs) / since.Seconds()
		} else {
			g.long += (measured - g.long) * -math.Expm1(-dt.Seconds()/LongRateWindow.Seconds())
		}
		g.lastAt, g.lastAllocs = now, u.allocs
	}
	g.live = u.live
	if u.gcs != g.gcs {
		g.gcs = u.gcs
		g.judge(u.live, now)
	}
	if l := Limit(g.budget, int64(u.live), int64(u.meta), g.pace()); l != g.cur {
		g.cur = l
		debug.SetMemoryLimit(l)
	}
	return true
}

// judge takes the live heap a new collection found. The base is the level a jump is
// measured from: a collection that finds less sets it; one that finds more than
// JumpFraction above it starts a recheck, and one at or after the recheck time that still
// finds that much makes it the new base; one within the fraction ends a pending jump and
// leaves the base where it was. (A base that followed every rise within the fraction never
// saw a compaction's jump: its live heap grew a few MB from one collection to the next.)
// A jump that ended is recorded for release.
func (g *governor) judge(live uint64, now time.Time) {
	switch {
	case g.base == 0 || float64(live) <= float64(g.base)*(1+JumpFraction):
		g.ended = g.ended || !g.recheckAt.IsZero()
		g.recheckAt = time.Time{}
		if g.base == 0 || live < g.base {
			g.base = live
		}
	case g.recheckAt.IsZero():
		g.recheckAt, g.forced = now.Add(RecheckAfter), false
	case !now.Before(g.recheckAt):
		g.base, g.recheckAt = live, time.Time{} // still there: the new level
	}
}

// takeEnded reports, once, that a jump has ended since the last call, in a slow program.
func (g *governor) takeEnded() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.ended && !g.stopped && g.slow()
	g.ended = false
	return e
}

// recheckDue reports whether a jump's recheck time has come and no collection has settled
// it, once per jump, in a slow program: the caller then runs one.
func (g *governor) recheckDue() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped || g.recheckAt.IsZero() || g.forced || g.clock.Now().Before(g.recheckAt) || !g.slow() {
		return false
	}
	g.forced = true
	return true
}

// slow reports whether the program allocates so slowly that its next collection may be
// more than RecheckAfter away: what it allocates in RecheckAfter is less than the least
// headroom. Only then is a recheck worth a collection of its own, or the memory a jump
// leaves worth giving back: a replay's live heap swings by a tenth from one collection to
// the next, it collects every second or so by itself, and it would take the memory back at
// once (without this check a spec replay ran two forced collections, each well before its
// heap reached the goal).
func (g *governor) slow() bool {
	return g.pace()*RecheckAfter.Seconds() < float64(g.live)*MinHeadroom
}

// pace is the allocation rate the governor goes by (bytes/s): the smaller of the 30-s
// average and the long-run rate, so that a burst in a long-running process counts for
// little.
func (g *governor) pace() float64 { return min(g.rate, g.long) }

// stop restores the limit found by Run; later updates do nothing.
func (g *governor) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	debug.SetMemoryLimit(g.prev)
}

// armGC makes update run after the next garbage collection, and again after each one
// until the governor stops: a fresh object that nothing references is unreachable at the
// next collection, which then runs its cleanup. (16 bytes: smaller pointer-free objects
// share blocks with others and may outlive the collection.)
func (g *governor) armGC() {
	runtime.AddCleanup(new([16]byte), func(g *governor) {
		if g.update() {
			g.armGC()
		}
	}, g)
}
