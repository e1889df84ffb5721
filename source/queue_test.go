package source

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// TestQueueOrder drives the ring through random pushes and takes (it wraps around and grows
// many times) against a plain slice: the same messages come out, in order, with TS clamped
// so that it never decreases.
func TestQueueOrder(t *testing.T) {
	for _, limit := range []int{1, 3, 64, 100, 1000} {
		r := rand.New(rand.NewPCG(uint64(limit), 1))
		q := newQueue(limit, limit)
		var model []feed.Message
		var lastTS int64
		next := 0
		for step := 0; step < 20000; step++ {
			if r.IntN(2) == 0 {
				for k := r.IntN(limit + 1); k > 0 && len(model) < limit; k-- {
					next++
					m := feed.Message{TS: int64(next) - int64(r.IntN(3)), Kind: feed.KindQuote, Price: feed.Price(next)}
					if err := q.push(context.Background(), m); err != nil {
						t.Fatal(err)
					}
					m.TS = max(m.TS, lastTS)
					lastTS = m.TS
					model = append(model, m)
				}
			} else {
				n := r.IntN(limit + 2)
				got := q.take(nil, n)
				want := model[:min(n, len(model))]
				if len(got) != len(want) {
					t.Fatalf("limit %d step %d: take(%d) gave %d messages, want %d", limit, step, n, len(got), len(want))
				}
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("limit %d step %d: message %d = %+v, want %+v", limit, step, i, got[i], want[i])
					}
				}
				model = model[len(want):]
			}
			if q.len() != len(model) {
				t.Fatalf("limit %d step %d: len %d, want %d", limit, step, q.len(), len(model))
			}
		}
	}
}

// TestQueueFullBlocks: a push into a full queue waits for a take (or its context).
func TestQueueFullBlocks(t *testing.T) {
	q := newQueue(2, 2)
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		if err := q.push(ctx, feed.Message{TS: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := q.push(cctx, feed.Message{TS: 3}); err == nil {
		t.Fatal("push into a full queue with a cancelled context returned nil")
	}
	done := make(chan error, 1)
	go func() { done <- q.push(ctx, feed.Message{TS: 3}) }()
	select {
	case err := <-done:
		t.Fatalf("push into a full queue returned %v before a take", err)
	case <-time.After(20 * time.Millisecond):
	}
	if got := q.take(nil, 1); len(got) != 1 || got[0].TS != 1 {
		t.Fatalf("take = %+v, want the message of TS 1", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := q.take(nil, 5); len(got) != 2 || got[0].TS != 2 || got[1].TS != 3 {
		t.Fatalf("take = %+v, want TS 2 and 3", got)
	}
}

// BenchmarkQueueBacklog takes batches of 1,024 from a queue holding a backlog of 200,000
// messages (kept topped up): the cost of a batch must not grow with the backlog.
func BenchmarkQueueBacklog(b *testing.B) {
	const backlog, batch = 200_000, 1024
	q := newQueue(backlog+batch, batch)
	ctx := context.Background()
	m := feed.Message{Kind: feed.KindQuote, Price: 1}
	for i := 0; i < backlog; i++ {
		_ = q.push(ctx, m)
	}
	out := make([]feed.Message, 0, batch)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out = q.take(out[:0], batch)
		for range out {
			_ = q.push(ctx, m)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
}
