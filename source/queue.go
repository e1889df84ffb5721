package source

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// queue is the bounded, ordered hand-off from the stream goroutines to Run's goroutine. A
// message's position is fixed, and its TS clamped, under one lock, so delivered TS never
// decrease.
type queue struct {
	mu     sync.Mutex
	buf    []feed.Message
	limit  int
	lastTS int64
	ready  chan struct{} // cap 1: signalled when buf becomes non-empty
	space  chan struct{} // closed when room appears; nil when nobody waits
}

func newQueue(limit int) *queue {
	return &queue{limit: limit, ready: make(chan struct{}, 1)}
}

// push appends m, clamping m.TS to the TS of the message before it. It blocks while the
// queue is full, until ctx is done.
func (q *queue) push(ctx context.Context, m feed.Message) error {
	q.mu.Lock()
	for len(q.buf) >= q.limit {
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
		q.mu.Lock()
	}
	if m.TS < q.lastTS {
		m.TS = q.lastTS
	}
	q.lastTS = m.TS
	q.buf = append(q.buf, m)
	if len(q.buf) == 1 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	q.mu.Unlock()
	return nil
}

// take moves up to n queued messages to out (appending) and returns it.
func (q *queue) take(out []feed.Message, n int) []feed.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(n, len(q.buf))
	out = append(out, q.buf[:k]...)
	rest := copy(q.buf, q.buf[k:])
	clear(q.buf[rest:]) // drop references to descriptions
	q.buf = q.buf[:rest]
	if q.space != nil && len(q.buf) < q.limit {
		close(q.space)
		q.space = nil
	}
	if len(q.buf) > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return out
}

// instruments is the snapshot-truth state: the active set and the snapshot in progress.
type instruments struct {
	mu         sync.Mutex
	active     map[feed.ISIN]string // ISIN → description, from accepted ADD/DELETE
	inSnapshot bool
	seen       map[feed.ISIN]struct{} // ADDed or DELETEd during the snapshot
	nActive    atomic.Int64           // len(active), readable without mu
}

// accept queues m, and for ADD/DELETE updates the active set under the same lock so the set
// always matches what was queued.
func (c *Client) accept(ctx context.Context, m feed.Message) error {
	if m.Kind != feed.KindAdd && m.Kind != feed.KindDelete {
		return c.q.push(ctx, m)
	}
	st := &c.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := c.q.push(ctx, m); err != nil {
		return err
	}
	if m.Kind == feed.KindAdd {
		st.active[m.ISIN] = m.Description
	} else {
		delete(st.active, m.ISIN)
	}
	st.nActive.Store(int64(len(st.active)))
	if st.inSnapshot {
		st.seen[m.ISIN] = struct{}{}
	}
	return nil
}

// beginSnapshot starts the snapshot of a new /instruments connection.
func (st *instruments) beginSnapshot() {
	st.mu.Lock()
	st.inSnapshot = true
	st.seen = make(map[feed.ISIN]struct{}, len(st.active))
	st.mu.Unlock()
}

// abandonSnapshot ends a snapshot without synthetic DELETEs (its connection ended).
func (st *instruments) abandonSnapshot() {
	st.mu.Lock()
	st.inSnapshot = false
	st.seen = nil
	st.mu.Unlock()
}

// finishSnapshot ends the snapshot of s (the /instruments stream) if it has been quiet for
// SnapshotQuiet, queueing the synthetic DELETEs. Otherwise it returns how much longer to wait.
func (c *Client) finishSnapshot(ctx context.Context, s *stream) time.Duration {
	quiet := c.opts.SnapshotQuiet
	st := &c.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.inSnapshot {
		return 0
	}
	if s.busy.Load() {
		return quiet
	}
	now := c.clk.Now()
	if since := time.Duration(now.UnixNano() - s.lastFrame.Load()); since < quiet {
		return quiet - since
	}
	var gone []feed.ISIN
	for isin := range st.active {
		if _, ok := st.seen[isin]; !ok {
			gone = append(gone, isin)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return string(gone[i][:]) < string(gone[j][:]) })
	for _, isin := range gone {
		m := feed.Message{TS: now.UnixNano(), Kind: feed.KindDelete, ISIN: isin, Description: st.active[isin]}
		if err := c.q.push(ctx, m); err != nil {
			return 0 // shutting down or reconnecting: the snapshot is abandoned
		}
		delete(st.active, isin)
		st.nActive.Store(int64(len(st.active)))
		c.syntheticDeletes.Add(1)
	}
	st.inSnapshot = false
	st.seen = nil
	c.snapshots.Add(1)
	c.connLog.log(slog.LevelInfo, "source: instruments snapshot complete",
		"active", len(st.active), "synthetic_deletes", len(gone))
	return 0
}
