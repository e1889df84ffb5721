package memlimit

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestLimit(t *testing.T) {
	for _, tc := range []struct{ budget, live, want int64 }{
		{512 << 20, 100 << 20, 512 << 20}, // under the budget: the budget
		{512 << 20, 480 << 20, 600 << 20}, // close to it: a quarter of headroom
		{512 << 20, 1 << 30, 1<<30 + 256<<20},
		{0, 0, 0},
	} {
		if got := Limit(tc.budget, tc.live); got != tc.want {
			t.Errorf("Limit(%d, %d) = %d, want %d", tc.budget, tc.live, got, tc.want)
		}
	}
}

func TestBudgetFlag(t *testing.T) {
	for in, want := range map[string]Budget{"512MiB": 512 << 20, "1GiB": 1 << 30, "1.5 GB": 3 << 29, "0": 0, "4096": 4096, "64kib": 64 << 10} {
		var b Budget
		if err := b.Set(in); err != nil || b != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1MiB", "lots", "1TiB9"} {
		var b Budget
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted", in)
		}
	}
	b := Budget(512 << 20)
	if s := b.String(); s != "512MiB" {
		t.Errorf("String() = %q", s)
	}
}

// TestRun: the limit is the budget while the live heap is small, and the previous limit is
// restored when the context ends.
func TestRun(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithCancel(context.Background())
	Run(ctx, 1<<40, time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("limit %d while running, want the budget", got)
	}
	time.Sleep(20 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("limit %d after some checks, want the budget (the live heap is small)", got)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) != before {
		if time.Now().After(deadline) {
			t.Fatal("the previous limit was not restored")
		}
		time.Sleep(time.Millisecond)
	}
	Run(context.Background(), 0, time.Millisecond)
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
	Run(ctx, budget, time.Hour)
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
