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
// every instrument); Badger's memtable being filled and the one being flushed (32 MiB
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
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
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
// checking every interval until ctx is done; then it restores the limit it found. It
// returns at once, doing nothing, when budget ≤ 0.
func Run(ctx context.Context, budget int64, interval time.Duration) {
	if budget <= 0 {
		return
	}
	prev := debug.SetMemoryLimit(budget)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	go func() {
		defer debug.SetMemoryLimit(prev)
		t := time.NewTicker(interval)
		defer t.Stop()
		cur := budget
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				continue
			}
			live := sample[0].Value.Uint64()
			if live > math.MaxInt64/2 {
				continue
			}
			if l := Limit(budget, int64(live)); l != cur {
				cur = l
				debug.SetMemoryLimit(l)
			}
		}
	}()
}
