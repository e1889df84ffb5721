// Package memlimit keeps the Go heap near a memory budget (issue 15). The runtime's soft
// limit (debug.SetMemoryLimit, GOMEMLIMIT) makes the collector run before the heap doubles
// (GOGC's 100 % headroom), which is most of the resident memory of a replay; but a fixed
// limit below the live heap makes the collector run all the time. So the limit is
// max(budget, live heap × (1 + Headroom)), recomputed after garbage collections: at or below
// the budget the heap stays under it, above it the collector still gets a quarter of the
// live heap of headroom.
//
// What the budget has to hold (the spec workload, 50,000 instruments quoting every second):
// the hot detector's windows, 8 bytes per quote of the last window + lateness (5m30s) ≈
// 140 MiB with ring slack when full; the aggregator's incarnations and open candles
// (~20 MiB); the pipeline's tail of closed candles for queries (~60 MiB: 30 minutes of
// every instrument); Badger's memtable being filled and the one being flushed (16 MiB
// each, wal.Options.MemTableSize, allocated whole) and its table builders; its block cache
// (16 MiB, wal.Options.BlockCacheSize); and a replay's batches in flight (8 per stage of
// 32,768 messages, ~2 MiB each). DefaultBudget is below that once the windows and the tail
// are full, and a replay's live heap is above it, so their limit follows the live heap +
// 25 %. A larger instrument count or quote rate raises the live heap, and the limit
// follows it. docs/performance.md has the measured resident sizes.
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
)

// DefaultBudget is the default soft limit of the Go heap.
const DefaultBudget = 256 << 20

// Headroom is the collector's headroom above the live heap when that is over the budget.
// An eighth brought a live ingest at the spec load from 304 to 283 MiB of anonymous RSS
// (make bench), but made the spec replay 25–95 % slower: it allocates fast, and the
// collector then runs all the time.
const Headroom = 0.25

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

// Limit returns the soft memory limit for a live heap of live bytes: max(budget, live ×
// (1 + Headroom)).
func Limit(budget, live int64) int64 {
	return max(budget, live+int64(float64(live)*Headroom))
}

// Run sets the soft memory limit from budget and keeps it at Limit(budget, live heap),
// recomputed after every garbage collection and at least every interval, until ctx is
// done; then it restores the limit it found. It returns at once, doing nothing, when
// budget ≤ 0.
//
// After every collection, not only on a timer: while a restart restores its state the
// live heap grows by ~150 MiB in half a second, and with the limit still at the budget the
// collector ran back to back (40 collections in 1.4 s).
func Run(ctx context.Context, budget int64, interval time.Duration) {
	if budget <= 0 {
		return
	}
	g := &governor{budget: budget, cur: budget, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	g.prev = debug.SetMemoryLimit(budget)
	g.armGC()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				g.stop()
				return
			case <-t.C:
				g.update()
			}
		}
	}()
}

// governor is the state of one Run.
type governor struct {
	mu      sync.Mutex
	budget  int64
	cur     int64 // the limit set
	prev    int64 // the limit before Run
	stopped bool
	sample  []metrics.Sample
}

// update sets the limit for the live heap of the last collection; it reports false once
// the governor is stopped.
func (g *governor) update() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	metrics.Read(g.sample)
	if g.sample[0].Value.Kind() != metrics.KindUint64 {
		return true
	}
	live := g.sample[0].Value.Uint64()
	if live > math.MaxInt64/2 {
		return true
	}
	if l := Limit(g.budget, int64(live)); l != g.cur {
		g.cur = l
		debug.SetMemoryLimit(l)
	}
	return true
}

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
