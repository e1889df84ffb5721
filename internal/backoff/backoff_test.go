package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
)

func TestDelaysWithoutJitter(t *testing.T) {
	b := New(Policy{Min: 100 * time.Millisecond, Max: time.Second}, clock.NewMock())
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		if d := b.Next(); d != w*time.Millisecond {
			t.Fatalf("attempt %d: %v, want %v", i, d, w*time.Millisecond)
		}
	}
	if b.Attempt() != len(want) {
		t.Errorf("Attempt %d", b.Attempt())
	}
	b.Reset()
	if b.Attempt() != 0 || b.Next() != 100*time.Millisecond {
		t.Error("Reset does not start over at Min")
	}
}

// TestJitter: with Jitter 0.5 every delay lies in [b/2, b], and the draws spread over the
// range; a seeded Rand makes them reproducible.
func TestJitter(t *testing.T) {
	p := Policy{Min: time.Second, Max: 8 * time.Second, Jitter: 0.5, Rand: rand.New(rand.NewPCG(1, 2))}
	b := New(p, clock.NewMock())
	var seq []time.Duration
	for n := range 4 {
		base := b.Base(n)
		lo, hi := base, time.Duration(0)
		for range 2000 {
			b.mu.Lock()
			b.attempt = n
			b.mu.Unlock()
			d := b.Next()
			if d < base/2 || d > base {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", n, d, base/2, base)
			}
			lo, hi = min(lo, d), max(hi, d)
			if len(seq) < 5 {
				seq = append(seq, d)
			}
		}
		if lo > base*55/100 || hi < base*95/100 {
			t.Errorf("attempt %d: 2000 delays span only [%v, %v] of [%v, %v]", n, lo, hi, base/2, base)
		}
	}
	p.Rand = rand.New(rand.NewPCG(1, 2))
	again := New(p, clock.NewMock())
	for i, d := range seq {
		if got := again.Next(); i == 0 && got != d {
			t.Errorf("same seed, first delay %v vs %v", got, d)
		}
	}
	// Jitter 1 can wait nothing at all; it never exceeds the base.
	full := New(Policy{Min: 10, Max: 10, Jitter: 7, Rand: rand.New(rand.NewPCG(3, 4))}, nil)
	if full.Policy().Jitter != 1 {
		t.Errorf("Jitter clamped to %v", full.Policy().Jitter)
	}
	for range 100 {
		if d := full.Next(); d < 0 || d > 10 {
			t.Fatalf("Jitter 1: %v", d)
		}
	}
}

func TestPolicyClamping(t *testing.T) {
	b := New(Policy{Min: -5, Max: -10, Jitter: -1}, nil)
	if p := b.Policy(); p.Min != 1 || p.Max != 1 || p.Jitter != 0 {
		t.Errorf("clamped policy %+v", p)
	}
	// No overflow when Max is near the largest duration.
	huge := New(Policy{Min: time.Hour, Max: 1<<63 - 1}, nil)
	prev := time.Duration(0)
	for n := range 200 {
		d := huge.Base(n)
		if d < prev || d <= 0 {
			t.Fatalf("attempt %d: base %v after %v", n, d, prev)
		}
		prev = d
	}
	if prev != 1<<63-1 {
		t.Errorf("base does not reach Max: %v", prev)
	}
}

// TestWaitOnMockClock: Wait returns once the mock clock has advanced by the delay, and
// not before.
func TestWaitOnMockClock(t *testing.T) {
	mock := clock.NewMock()
	b := New(Policy{Min: time.Second, Max: 4 * time.Second}, mock)
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		start := mock.Now()
		done := make(chan time.Time)
		go func() {
			if err := b.Wait(context.Background()); err != nil {
				t.Error(err)
			}
			done <- mock.Now()
		}()
		var at time.Time
	advance:
		for {
			select {
			case at = <-done:
				break advance
			default:
				mock.Add(100 * time.Millisecond)
				time.Sleep(time.Millisecond)
			}
		}
		if waited := at.Sub(start); waited < want {
			t.Fatalf("Wait returned after %v of mock time, want at least %v", waited, want)
		}
	}
}

// TestWaitCancelled: a done context ends Wait at once with its error, without the clock
// moving, and still counts the attempt.
func TestWaitCancelled(t *testing.T) {
	mock := clock.NewMock()
	b := New(Policy{Min: time.Hour, Max: time.Hour}, mock)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled context: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Wait(ctx) }()
	time.Sleep(10 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v before the clock moved", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel: %v", err)
	}
	if b.Attempt() != 2 {
		t.Errorf("Attempt %d, want 2", b.Attempt())
	}
}

func TestSleepZero(t *testing.T) {
	mock := clock.NewMock()
	if err := Sleep(context.Background(), mock, 0); err != nil {
		t.Fatal(err)
	}
}
