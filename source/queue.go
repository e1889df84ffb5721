package source

import (
	"context"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// queue is the bounded, ordered hand-off from the stream goroutines to Run's goroutine. A
// message's position is fixed, and its TS clamped, under one lock, so delivered TS never
// decrease.
//
// It is a ring: take costs what it takes, whatever is queued behind. (It was a slice whose
// remainder each take moved to the front: with a backlog — ingest behind after a minute
// close, say — every batch of 1,024 moved the whole backlog, up to 16 MB, under the lock the
// streams push with, so a backlog made ingest slower the larger it was.)
type queue struct {
	mu     sync.Mutex
	ring   []feed.Message // len(ring) is the capacity: doubled as needed, up to limit
	head   int            // index of the oldest message
	n      int            // messages queued
	limit  int
	lastTS int64
	ready  chan struct{} // cap 1: signalled when the queue becomes non-empty
	space  chan struct{} // closed when room appears; nil when nobody waits
	fullAt int           // a full batch
	full   chan struct{} // cap 1: signalled when the queue reaches fullAt
}

func newQueue(limit, fullAt int) *queue {
	return &queue{limit: limit, ready: make(chan struct{}, 1), fullAt: fullAt, full: make(chan struct{}, 1)}
}

// len returns the number of queued messages.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// clearFull drops a full signal left from before: check len after it, then wait for full.
func (q *queue) clearFull() {
	select {
	case <-q.full:
	default:
	}
}

// push appends m, clamping m.TS to the TS of the message before it. It blocks while the
// queue is full, until ctx is done.
func (q *queue) push(ctx context.Context, m feed.Message) error {
	q.mu.Lock()
	for q.n >= q.limit {
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
	if q.n == len(q.ring) {
		q.grow()
	}
	i := q.head + q.n
	if i >= len(q.ring) {
		i -= len(q.ring)
	}
	q.ring[i] = m
	q.n++
	if q.n == 1 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	if q.n == q.fullAt {
		select {
		case q.full <- struct{}{}:
		default:
		}
	}
	q.mu.Unlock()
	return nil
}

// grow doubles the ring (at least 64 messages, at most limit), the oldest message first.
func (q *queue) grow() {
	c := min(max(2*len(q.ring), 64), max(q.limit, 1))
	ring := make([]feed.Message, c)
	k := copy(ring, q.ring[q.head:])
	copy(ring[k:], q.ring[:q.head])
	q.ring, q.head = ring, 0
}

// take moves up to n queued messages to out (appending) and returns it.
func (q *queue) take(out []feed.Message, n int) []feed.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	for k := min(n, q.n); k > 0; {
		seg := q.ring[q.head:min(q.head+k, len(q.ring))]
		out = append(out, seg...)
		clear(seg) // drop references to descriptions
		q.head += len(seg)
		if q.head == len(q.ring) {
			q.head = 0
		}
		q.n -= len(seg)
		k -= len(seg)
	}
	if q.n == 0 {
		q.head = 0
	}
	if q.space != nil && q.n < q.limit {
		close(q.space)
		q.space = nil
	}
	if q.n > 0 {
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
	adds       int                    // ADDs (duplicates included) during the snapshot
	emptySeen  bool                   // this snapshot was counted as empty
	nActive    atomic.Int64           // len(active), readable without mu
}

// accept queues m, and for ADD/DELETE updates the active set under the same lock so the set
// always matches what was queued. An ADD that changes nothing (active, same description) is
// not queued: queued reports false.
func (c *Client) accept(ctx context.Context, m feed.Message) (queued bool, err error) {
	if m.Kind != feed.KindAdd && m.Kind != feed.KindDelete {
		return true, c.q.push(ctx, m)
	}
	st := &c.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.inSnapshot {
		if m.Kind == feed.KindAdd {
			st.adds++
		}
	}
	if m.Kind == feed.KindAdd {
		if desc, ok := st.active[m.ISIN]; ok && desc == m.Description {
			c.duplicateAdds.Add(1)
			if st.inSnapshot {
				st.seen[m.ISIN] = struct{}{}
			}
			return false, nil
		}
	}
	if err := c.q.push(ctx, m); err != nil {
		return false, err
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
	return true, nil
}

// beginSnapshot starts the snapshot of a new /instruments connection.
func (st *instruments) beginSnapshot() {
	st.mu.Lock()
	st.inSnapshot = true
	st.seen = make(map[feed.ISIN]struct{}, len(st.active))
	st.adds = 0
	st.emptySeen = false
	st.mu.Unlock()
}

// abandonSnapshot ends a snapshot without synthetic DELETEs (its connection ended).
func (st *instruments) abandonSnapshot() {
	st.mu.Lock()
	st.inSnapshot = false
	st.seen = nil
	st.mu.Unlock()
}

// checkSnapshot applies rules 1 and 2 of the package doc to the snapshot of s (the
// /instruments stream): ready means they hold, and mark is the time of the last frame they
// were checked against (settleSnapshot needs it unchanged). Otherwise it returns how much
// longer to wait (0: no snapshot in progress).
func (c *Client) checkSnapshot(s *stream) (remaining time.Duration, mark int64, ready bool) {
	quiet := c.opts.SnapshotQuiet
	st := &c.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.inSnapshot {
		return 0, 0, false
	}
	if s.busy.Load() {
		return quiet, 0, false
	}
	if st.adds == 0 {
		if !st.emptySeen {
			st.emptySeen = true
			c.emptySnapshots.Add(1)
			c.connLog.log(slog.LevelWarn, "source: instruments snapshot empty so far: no synthetic DELETEs until it has ADDs",
				"active", len(st.active), "waited", quiet.String())
		}
		return quiet, 0, false
	}
	mark = s.lastFrame.Load()
	if since := time.Duration(c.clk.Now().UnixNano() - mark); since < quiet {
		return quiet - since, 0, false
	}
	return 0, mark, true
}

// settleSnapshot ends the snapshot of s if no frame arrived since mark (rule 3; else it
// returns how long to wait again) and reconciles it within the delete bound (rule 4).
func (c *Client) settleSnapshot(ctx context.Context, s *stream, mark int64) time.Duration {
	st := &c.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.inSnapshot {
		return 0
	}
	if s.busy.Load() || s.lastFrame.Load() != mark {
		return c.opts.SnapshotQuiet
	}
	now := c.clk.Now()
	var gone []feed.ISIN
	for isin := range st.active {
		if _, ok := st.seen[isin]; !ok {
			gone = append(gone, isin)
		}
	}
	limit := deleteLimit(len(st.active), c.opts.SnapshotMaxDelete)
	c.snapshots.Add(1)
	if len(gone) > limit {
		c.withheldSnaps.Add(1)
		c.deletesWithheld.Add(uint64(len(gone)))
		c.withheldNow.Store(int64(len(gone)))
		st.inSnapshot, st.seen = false, nil
		c.opts.Logger.Warn("source: instruments snapshot would delete too many instruments: keeping them all",
			"missing", len(gone), "active", len(st.active), "snapshot_adds", st.adds, "limit", limit,
			"max_delete_percent", c.opts.SnapshotMaxDelete,
			"hint", "a stalled or truncated snapshot, or a partner restart; raise the snapshot max delete share (--snapshot-max-delete) to accept it")
		return 0
	}
	c.withheldNow.Store(0)
	sort.Slice(gone, func(i, j int) bool { return string(gone[i][:]) < string(gone[j][:]) })
	for _, isin := range gone {
		m := feed.Message{TS: feed.ArrivalTime(now), Kind: feed.KindDelete, ISIN: isin, Description: st.active[isin]}
		if err := c.q.push(ctx, m); err != nil {
			return 0 // shutting down or reconnecting: the snapshot is abandoned
		}
		delete(st.active, isin)
		st.nActive.Store(int64(len(st.active)))
		c.syntheticDeletes.Add(1)
	}
	st.inSnapshot, st.seen = false, nil
	c.connLog.log(slog.LevelInfo, "source: instruments snapshot complete",
		"active", len(st.active), "snapshot_adds", st.adds, "synthetic_deletes", len(gone))
	return 0
}

// deleteLimit is the largest number of synthetic DELETEs one snapshot may make with active
// instruments held: max(1, ⌊percent/100 × active⌋).
func deleteLimit(active int, percent float64) int {
	return max(1, int(math.Floor(percent/100*float64(active)+1e-9)))
}
