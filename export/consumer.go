package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/internal/backoff"
	"github.com/quotesdev/quotes/store"
)

// Sink is a destination fed from the store's outbox by a Consumer.
type Sink interface {
	// Name is the consumer's name in the data directory ([a-z0-9_-], e.g. "clickhouse"): its
	// position is kept under it, and retention keeps the outbox items it has not delivered.
	Name() string
	// Write delivers one flush: the outbox items of a range of tags, in key order. After a
	// failure (or a crash) the same flush is retried with the same flushID and exactly the
	// same items, so a sink is exactly-once if writing a flushID again changes nothing.
	// Items are only valid during the call.
	Write(ctx context.Context, flushID uint64, items []store.OutboxItem) error
}

// Targeted is a Sink that names where it delivers (without credentials): NewConsumer
// records it for `quotes sinks list`.
type Targeted interface {
	Target() string
}

// Defaults of ConsumerOptions.
const (
	DefaultFlushItems  = 200_000
	DefaultMinBackoff  = 500 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
	DefaultPoll        = time.Second
	DefaultLogInterval = time.Minute
	DefaultSeenEvery   = time.Minute
)

// ConsumerOptions configure a Consumer.
type ConsumerOptions struct {
	// FlushItems is the size of a flush: it ends at the first record boundary at or after
	// this many items (DefaultFlushItems when zero). Memory is about one flush.
	FlushItems int
	// MinBackoff and MaxBackoff bound the wait between retries after a failure: it doubles
	// from MinBackoff up to MaxBackoff, with jitter (defaults 500ms, 30s).
	MinBackoff, MaxBackoff time.Duration
	// Changed, if set, returns a channel closed when new outbox items are stored
	// (pipeline.Pipeline.OutboxChanged); Poll is how often to look without one (default 1s).
	Changed func() <-chan struct{}
	Poll    time.Duration
	// LogInterval rate-limits the failure logs: at most one per interval (default 1m); the
	// first failure and the recovery are always logged.
	LogInterval time.Duration
	// SeenEvery is how often a running consumer records that it runs (store.TouchConsumer:
	// its last run and last success, which tell a stale consumer; default 1m).
	SeenEvery time.Duration
	Clock     clock.Clock
	Logger    *slog.Logger
}

// ConsumerStats are a consumer's counters and gauges.
type ConsumerStats struct {
	Sink string
	// Watermark is the last tag delivered.
	Watermark uint64
	// Backlog is the number of outbox items not delivered yet, as of the last look.
	Backlog int
	// Delivered counts items, Flushes successful writes, Redone flushes repeated from an
	// intent found at start, Failures failed attempts.
	Delivered, Flushes, Redone, Failures uint64
	// LastSuccess is the time of the last successful flush (zero: none yet); LastError the
	// last failure's message while the sink is failing (Down).
	LastSuccess time.Time
	LastError   string
	Down        bool
}

// Consumer delivers the store's outbox to a Sink, exactly once, across sink failures and
// process crashes.
//
// The protocol: the consumer's watermark (the last tag delivered) is durable in the store.
// A flush is planned from the items after it — up to FlushItems, ending at a record
// boundary, and only tags at or below store.Applied(), which are complete and final — and
// its range is recorded as the consumer's intent before anything is written to the sink.
// The sink gets flushID = epoch<<48 | first tag (epoch: random per data directory and
// consumer, so two data directories do not share ids); on success one transaction advances
// the watermark to the last tag and removes the intent. An intent found at start is
// redone with exactly the same items and id. So a flush is either not begun (no intent:
// nothing was written), or redone as the same flush (the sink skips what landed), or
// complete.
//
// A failing sink is retried with capped exponential backoff and jitter; nothing blocks the
// pipeline, which keeps writing the outbox (the backlog lives in Badger, memory stays at
// one flush). Run and Drain must not run at the same time.
type Consumer struct {
	st   *store.Store
	sink Sink
	name string
	opts ConsumerOptions

	state   store.ConsumerState
	buf     []store.OutboxItem
	redone  bool
	backoff *backoff.Backoff // delays between failed attempts; reset by a success

	mu        sync.Mutex // guards stats
	stats     ConsumerStats
	lastLog   time.Time
	suppressN int
	failures  int // consecutive

	lastSeen time.Time // when the last run was recorded (the goroutine running Step)
	lastOK   time.Time // when the last success was recorded
}

// NewConsumer registers sink's consumer in st (when new, it starts with whatever the outbox
// holds) and returns it.
func NewConsumer(st *store.Store, sink Sink, opts ConsumerOptions) (*Consumer, error) {
	if opts.FlushItems <= 0 {
		opts.FlushItems = DefaultFlushItems
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.LogInterval <= 0 {
		opts.LogInterval = DefaultLogInterval
	}
	if opts.SeenEvery <= 0 {
		opts.SeenEvery = DefaultSeenEvery
	}
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	name := sink.Name()
	state, err := st.RegisterConsumer(name)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	c := &Consumer{st: st, sink: sink, name: name, opts: opts, state: state,
		backoff: backoff.New(backoff.Policy{Min: opts.MinBackoff, Max: opts.MaxBackoff, Jitter: 0.5}, opts.Clock)}
	c.stats.Sink, c.stats.Watermark = name, state.Watermark
	if _, err := c.refreshBacklog(); err != nil {
		return nil, err
	}
	if t, ok := sink.(Targeted); ok {
		if err := st.SetConsumerTarget(name, t.Target()); err != nil {
			return nil, err
		}
	}
	info, _, err := st.ConsumerInfo(name)
	if err != nil {
		return nil, err
	}
	if l := info.Lost; !l.Empty() {
		opts.Logger.Warn("retention dropped outbox items of this sink while no process ran it (longer than --sink-stale): backfill that range to complete it, then `quotes sinks remove` and re-add the sink to clear this",
			"sink", name, "items", l.Items, "from", time.Unix(0, l.From).UTC().Format(time.RFC3339), "to", time.Unix(0, l.To+60e9).UTC().Format(time.RFC3339))
	}
	if err := c.touch(false); err != nil {
		return nil, err
	}
	return c, nil
}

// touch records, at most every SeenEvery, that the consumer runs (and, with success, that
// it is caught up or delivered): a consumer nobody runs becomes stale (see store).
func (c *Consumer) touch(success bool) error {
	now := c.opts.Clock.Now()
	if now.Sub(c.lastSeen) < c.opts.SeenEvery && (!success || now.Sub(c.lastOK) < c.opts.SeenEvery) {
		return nil
	}
	if err := c.st.TouchConsumer(c.name, now, success); err != nil {
		return err
	}
	c.lastSeen = now
	if success {
		c.lastOK = now
	}
	return nil
}

// Name returns the sink's name.
func (c *Consumer) Name() string { return c.name }

// Stats returns the consumer's counters.
func (c *Consumer) Stats() ConsumerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// maxTag is the largest tag a flush id can carry (the epoch takes the top 16 bits).
const maxTag = 1<<48 - 1

// FlushID returns the flush id of a flush starting at tag first for a consumer epoch. Epochs
// are below 1<<15, so consumer flush ids never have the top bit set: ids with it are free
// for other writers (backfill).
func FlushID(epoch uint16, first uint64) uint64 { return uint64(epoch)<<48 | first }

// Step delivers at most one flush (an intent left by an earlier run first) and returns how
// many items it delivered: 0 when there was nothing to deliver.
func (c *Consumer) Step(ctx context.Context) (int, error) {
	in := c.state.Intent
	if !c.state.HasIntent {
		applied, err := c.st.Applied()
		if err != nil {
			return 0, err
		}
		if in, err = c.plan(applied); err != nil || in.Items == 0 {
			return 0, err
		}
		if in.First > maxTag || in.Last > maxTag {
			return 0, fmt.Errorf("consumer %s: tag %d beyond the flush id range", c.name, in.Last)
		}
		if err := c.st.SetIntent(c.name, in); err != nil {
			return 0, err
		}
		c.state.Intent, c.state.HasIntent = in, true
	} else {
		if err := c.load(in); err != nil {
			return 0, err
		}
		if !c.redone {
			c.redone = true
			c.mu.Lock()
			c.stats.Redone++
			c.mu.Unlock()
			c.opts.Logger.Info("redoing an interrupted flush", "sink", c.name, "first", in.First, "last", in.Last, "items", in.Items)
		}
	}
	// The write itself is not cancelled with ctx (it is bounded by the sink's own
	// timeouts): an abandoned write could still land after its retry checked for it.
	if err := c.sink.Write(context.WithoutCancel(ctx), FlushID(c.state.Epoch, in.First), c.buf); err != nil {
		return 0, fmt.Errorf("sink %s: flush of tags %d…%d (%d items): %w", c.name, in.First, in.Last, in.Items, err)
	}
	if err := c.st.CompleteIntent(c.name, in.Last); err != nil {
		return 0, err
	}
	c.state.Watermark, c.state.HasIntent, c.state.Intent = in.Last, false, store.Intent{}
	c.redone = false
	if err := c.touch(true); err != nil {
		c.opts.Logger.Warn("record the sink's last run", "sink", c.name, "err", err)
	}
	n := len(c.buf)
	c.releaseBuf()
	c.mu.Lock()
	c.stats.Watermark = in.Last
	c.stats.Delivered += uint64(n)
	c.stats.Flushes++
	c.stats.Backlog = max(0, c.stats.Backlog-n)
	c.stats.LastSuccess = c.opts.Clock.Now()
	c.mu.Unlock()
	return n, nil
}

// releaseBuf empties the flush buffer, dropping it when it grew beyond a flush.
func (c *Consumer) releaseBuf() {
	if cap(c.buf) > 2*c.opts.FlushItems {
		c.buf = nil
	}
	c.buf = c.buf[:0]
}

// plan reads the next flush into c.buf: the items after the watermark, up to FlushItems
// and the end of that record, with tags ≤ applied.
func (c *Consumer) plan(applied uint64) (store.Intent, error) {
	c.releaseBuf()
	var last uint64
	err := c.st.ScanOutbox(c.state.Watermark+1, applied, func(it *store.OutboxItem) (bool, error) {
		if len(c.buf) >= c.opts.FlushItems && it.Tag != last {
			return false, nil
		}
		c.buf = append(c.buf, *it)
		last = it.Tag
		return true, nil
	})
	if err != nil || len(c.buf) == 0 {
		return store.Intent{}, err
	}
	return store.Intent{First: c.buf[0].Tag, Last: last, Items: uint32(len(c.buf))}, nil
}

// load reads the items of an intent into c.buf.
func (c *Consumer) load(in store.Intent) error {
	c.releaseBuf()
	err := c.st.ScanOutbox(in.First, in.Last, func(it *store.OutboxItem) (bool, error) {
		c.buf = append(c.buf, *it)
		return true, nil
	})
	if err != nil {
		return err
	}
	if len(c.buf) != int(in.Items) {
		return fmt.Errorf("consumer %s: the intent for tags %d…%d has %d items, the outbox %d: %w",
			c.name, in.First, in.Last, in.Items, len(c.buf), store.ErrCorrupt)
	}
	return nil
}

// refreshBacklog counts the undelivered items.
func (c *Consumer) refreshBacklog() (int, error) {
	applied, err := c.st.Applied()
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	wm := c.stats.Watermark // c.state belongs to the goroutine running Step; stats are shared
	c.mu.Unlock()
	n, err := c.st.CountOutbox(wm+1, applied, 0)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.stats.Backlog = n
	c.mu.Unlock()
	return n, nil
}

// Pending returns the number of outbox items not delivered yet.
func (c *Consumer) Pending() (int, error) { return c.refreshBacklog() }

// Run delivers flushes until ctx is done, waiting for new items when caught up and backing
// off after failures. It returns nil when ctx is done.
func (c *Consumer) Run(ctx context.Context) error {
	for {
		var changed <-chan struct{}
		if c.opts.Changed != nil {
			changed = c.opts.Changed()
		}
		n, err := c.Step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if terr := c.touch(false); terr != nil {
				c.opts.Logger.Warn("record the sink's last run", "sink", c.name, "err", terr)
			}
			if !c.sleep(ctx, c.failed(err)) {
				return nil
			}
			continue
		}
		c.succeeded()
		if n > 0 {
			continue
		}
		if err := c.touch(true); err != nil {
			c.opts.Logger.Warn("record the sink's last run", "sink", c.name, "err", err)
		}
		if _, err := c.refreshBacklog(); err != nil {
			c.opts.Logger.Warn("count sink backlog", "sink", c.name, "err", err)
		}
		t := c.opts.Clock.Timer(c.opts.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// Drain delivers everything stored so far (up to store.Applied() at the call), retrying
// failures with backoff, until done or ctx is done. It returns the number of items still
// pending and, if any, the last error.
func (c *Consumer) Drain(ctx context.Context) (int, error) {
	applied, err := c.st.Applied()
	if err != nil {
		return 0, err
	}
	var last error
	for (c.state.Watermark < applied || c.state.HasIntent) && ctx.Err() == nil {
		n, err := c.Step(ctx)
		if err == nil {
			c.succeeded()
			if n == 0 {
				break
			}
			continue
		}
		last = err
		if ctx.Err() != nil || !c.sleep(ctx, c.failed(err)) {
			break
		}
	}
	pending, err := c.refreshBacklog()
	if err != nil {
		return 0, err
	}
	if pending == 0 {
		if err := c.touch(true); err != nil {
			c.opts.Logger.Warn("record the sink's last run", "sink", c.name, "err", err)
		}
		return 0, nil
	}
	if last == nil {
		last = ctx.Err()
	}
	return pending, last
}

// sleep waits d on the clock; false if ctx ended first.
func (c *Consumer) sleep(ctx context.Context, d time.Duration) bool {
	return backoff.Sleep(ctx, c.opts.Clock, d) == nil
}

// failed records a failure and returns the backoff before the next attempt.
func (c *Consumer) failed(err error) time.Duration {
	c.failures++
	now := c.opts.Clock.Now()
	c.mu.Lock()
	c.stats.Failures++
	c.stats.Down, c.stats.LastError = true, err.Error()
	c.mu.Unlock()
	if _, cerr := c.refreshBacklog(); cerr != nil {
		c.opts.Logger.Warn("count sink backlog", "sink", c.name, "err", cerr)
	}
	d := c.backoff.Next()
	if c.failures == 1 || now.Sub(c.lastLog) >= c.opts.LogInterval {
		attrs := []any{"sink", c.name, "err", err, "retry_in", d.Round(time.Millisecond), "backlog", c.Stats().Backlog}
		if c.suppressN > 0 {
			attrs = append(attrs, "failures_not_logged", c.suppressN)
		}
		if errors.Is(err, ErrFlushConflict) {
			c.opts.Logger.Error("sink refuses the flush: one with its id landed with other contents (another data directory writing to the same database?); retrying", attrs...)
		} else {
			c.opts.Logger.Warn("sink write failed; the backlog stays in the outbox and is retried", attrs...)
		}
		c.lastLog, c.suppressN = now, 0
	} else {
		c.suppressN++
	}
	return d
}

func (c *Consumer) succeeded() {
	if c.failures == 0 {
		return
	}
	c.opts.Logger.Info("sink recovered", "sink", c.name, "failed_attempts", c.failures)
	c.failures, c.suppressN = 0, 0
	c.backoff.Reset()
	c.mu.Lock()
	c.stats.Down, c.stats.LastError = false, ""
	c.mu.Unlock()
}
