// Package backoff is the one retry delay of quotes: capped exponential backoff with jitter,
// waited on an injected clock (benbjohnson/clock), so that tests drive it with clock.Mock.
//
//	b := backoff.New(backoff.Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.5}, clk)
//	for {
//		if err := attempt(); err == nil {
//			b.Reset()
//			continue
//		}
//		if err := b.Wait(ctx); err != nil {
//			return err // ctx done
//		}
//	}
//
// Attempt n (0-based, counted since the last Reset) waits a delay drawn uniformly from
// [b×(1−Jitter), b] where b = min(Max, Min×2ⁿ):
//
//	Jitter 0:    100ms 200ms 400ms 800ms 1s 1s …            (Min 100ms, Max 1s)
//	Jitter 0.5:  [50,100]ms [100,200]ms [200,400]ms … [0.5,1]s
//
// Jitter spreads the retries of many clients (or of a sink's several consumers) so that they
// do not hit a recovering server in lockstep.
package backoff

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// Policy is the shape of a backoff.
type Policy struct {
	// Min is the base delay of the first attempt (at least 1ns); Max caps the base delay
	// (raised to Min when smaller).
	Min, Max time.Duration
	// Jitter is the random fraction of each delay, clamped to [0, 1]: the delay is uniform
	// in [b×(1−Jitter), b]. 0 makes the delays deterministic; 0.5 gives [b/2, b].
	Jitter float64
	// Rand is the source of jitter (set it for deterministic tests); nil: a generator seeded
	// at random. A Backoff serialises its own use of Rand; share one Rand between Backoffs
	// only if they are not used concurrently.
	Rand *rand.Rand
}

// Backoff counts the attempts since the last Reset and computes and waits their delays.
// It is safe for concurrent use.
type Backoff struct {
	p   Policy
	clk clock.Clock

	mu      sync.Mutex
	attempt int
}

// New returns a Backoff with policy p, waiting on clk (the real clock when nil).
func New(p Policy, clk clock.Clock) *Backoff {
	p.Min = max(p.Min, 1)
	p.Max = max(p.Max, p.Min)
	p.Jitter = min(max(p.Jitter, 0), 1)
	if p.Rand == nil {
		p.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if clk == nil {
		clk = clock.New()
	}
	return &Backoff{p: p, clk: clk}
}

// Policy returns the policy in effect (after New's clamping).
func (b *Backoff) Policy() Policy { return b.p }

// Attempt returns the number of delays taken (Next or Wait) since the last Reset.
func (b *Backoff) Attempt() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempt
}

// Reset starts over at Min: call it after a success.
func (b *Backoff) Reset() {
	b.mu.Lock()
	b.attempt = 0
	b.mu.Unlock()
}

// Base returns the delay before jitter of attempt n (0-based): min(Max, Min×2ⁿ).
func (b *Backoff) Base(n int) time.Duration {
	d := b.p.Min
	for i := 0; i < n && d < b.p.Max; i++ {
		if d > b.p.Max/2 {
			return b.p.Max
		}
		d *= 2
	}
	return min(d, b.p.Max)
}

// Next returns the delay of the next attempt and counts it.
func (b *Backoff) Next() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.Base(b.attempt)
	b.attempt++
	if b.p.Jitter == 0 {
		return d
	}
	lo := time.Duration(float64(d) * (1 - b.p.Jitter))
	return lo + time.Duration(b.p.Rand.Int64N(int64(d-lo)+1))
}

// Wait waits the delay of the next attempt (Next) on the clock. It returns ctx.Err() if
// ctx is done first, nil otherwise.
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.clk, b.Next())
}

// Sleep waits d on clk. It returns ctx.Err() if ctx is done first (at once if it already
// is), nil otherwise.
func Sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := clk.Timer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
