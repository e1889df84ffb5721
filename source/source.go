// Package source is the websocket client for the partner's two streams (SPEC §2):
// /instruments (ADD/DELETE) and /quotes (QUOTE), both below one base URL.
//
// # Delivery
//
// Client.Run keeps one connection per stream, decodes every text frame with feed.Decoder and
// hands the accepted messages to the caller's deliver function, from the goroutine that called
// Run, in batches of up to Options.BatchSize. Batching is opportunistic: a batch is delivered
// as soon as at least one message is waiting; whatever else has arrived meanwhile rides along.
// With Options.GroupInterval, a delivery also waits until that long after the previous one
// began, unless a full batch is waiting: a group commit for the WAL append each delivery is.
//
// Every message is stamped with its arrival time: Options.Clock.Now() taken when its frame
// was read. Both streams feed one queue; a message's place in the queue is its arrival order,
// and its TS is clamped to be at least the TS of the message before it, so delivered TS never
// decrease, even if the clock steps back. The queue is bounded (256 batches): while deliver is
// slow, the readers stop reading (TCP backpressure towards the partner) instead of growing
// memory; time spent waiting for the consumer never counts as a stall.
//
// Nothing accepted is lost: a decoded message is either delivered or Run returns an error.
// When ctx is done, Run stops reading, delivers everything already queued (deliver is
// called after ctx is done in that case), and returns nil.
//
// # Snapshot truth (SPEC §2, §14)
//
// The client tracks the set of active ISINs (with their descriptions) from the ADD and DELETE
// messages it accepted (Options.Active seeds it, e.g. with the registry recovered from a WAL).
// On every connect of /instruments the partner sends one ADD per active instrument, the
// snapshot, without an end marker. Instruments we hold that the snapshot does not mention were
// deleted while we were away and get a synthetic DELETE — but a partner that is late, empty,
// slow or stuck must never make us delete live instruments, so this package reconciles only
// a snapshot that has settled, by this rule:
//
//  1. The snapshot has begun: at least one ADD arrived on this connection. Until then there
//     is no end to wait for (a late snapshot is waited for; an empty one never reconciles —
//     Stats.EmptySnapshots counts connections whose snapshot was still empty after
//     SnapshotQuiet).
//  2. It is quiet: no /instruments frame (accepted or rejected) has arrived for
//     Options.SnapshotQuiet since the last one, and the /instruments reader is not blocked
//     handing a message to the consumer (time spent waiting for us is not the partner's
//     quiet).
//  3. The quiet is the partner's choice, not a dead connection: a ping sent after 1 and 2 held
//     was answered, and no frame arrived meanwhile (else the quiet starts over). A partner
//     that stopped answering is a stall: the connection is dropped and its snapshot abandoned.
//  4. The result is plausible: the ISINs it would delete are at most
//     max(1, ⌊SnapshotMaxDelete% × active⌋), active counting every instrument held at that
//     moment. A snapshot that would delete more is treated as incomplete (stalled midway,
//     truncated, or a partner restart that needs an operator's eye): none of them is deleted,
//     they are counted (Stats.DeletesWithheld), and a WARN names how many and how to accept
//     such a snapshot (raise the bound). Deleting "the first 10 %" would pick victims
//     arbitrarily; when a snapshot looks incomplete none of its verdicts can be trusted.
//
// When the snapshot settles, every ISIN that was active and was neither ADDed nor DELETEd
// during the snapshot (on either stream) gets a synthetic DELETE, with the description we
// held and TS = now (clamped as above), queued in ISIN order behind everything that arrived
// before. If the /instruments connection ends before its snapshot settled, the snapshot is
// abandoned without synthetic DELETEs; the next connection starts a new one. The first
// connection is no exception: with a seeded set, its snapshot deletes (within the bound)
// whatever seeded ISIN it does not mention.
//
// Duplicate ADDs: an ADD of an ISIN that is active with the same description changes nothing
// downstream (SPEC §4.4), and every reconnect re-sends one per instrument, so the client does
// not deliver it (Stats.DuplicateAdds counts them; it still counts as "seen" for the
// snapshot). An ADD that changes the description is delivered. So a reconnect storm cannot
// flood the WAL with copies of the snapshot.
//
// # Bad input (SPEC §8)
//
// Every rejected frame is counted by reason (Stats.Rejects), passed to Options.OnReject and
// logged, rate-limited (Options.Logger):
//   - text frames that feed.Decoder rejects (garbage, unknown type, bad ISIN or price, …), with
//     the decoder's reason;
//   - binary frames: feed.ReasonBinaryFrame, the frame is read and discarded;
//   - frames longer than Options.MaxFrame: feed.ReasonOversized. The connection's read limit is
//     set to 16×MaxFrame: a frame up to that size is read into a MaxFrame buffer and the rest is
//     discarded, so the connection survives; a larger frame makes gorilla/websocket close the
//     connection (StatusMessageTooBig), the frame is counted as oversized all the same and the
//     stream reconnects with backoff. Memory stays bounded by MaxFrame per stream either way.
//
// # Stalls, reconnects and throttling
//
// A watchdog ticks every ReadTimeout/4 (Options.Clock). When a stream has seen neither a frame
// nor a pong for ReadTimeout/2 it sends a ping; after ReadTimeout without either, the
// connection is declared stalled (Stats.*.Stalls), closed, and re-established. Any failure
// (dial error, handshake refused, read error, stall, oversized beyond the read limit,
// throttling) ends the connection and the stream reconnects on its own, independently of the
// other stream, after a delay of capped exponential backoff with jitter: attempt n (0-based)
// waits a uniformly random duration in [b/2, b] where b = min(BackoffMax, BackoffMin×2ⁿ). The
// attempt counter is reset only when a connection stayed up for Options.HealthyAfter (default
// 30s): a partner that accepts and drops, or sends one good message and then garbage, is
// retried ever more slowly, at most about once per BackoffMax/2. The very first connect of a
// stream is immediate. Dialing (TCP + handshake) is bounded by ReadTimeout. On shutdown
// connections are closed without a close handshake.
//
// A connection whose rejected frames exceed a token bucket (Options.RejectRate per second,
// burst Options.RejectBurst) is throttled: closed, counted (Stats.*.Throttled), and retried
// with backoff like any failure, so garbage costs us at most RejectBurst decodes per
// connection attempt.
//
// # Pause
//
// Pause closes both connections and keeps them closed until Resume (e.g. while the disk is
// full): what was already queued is still delivered, nothing more is read. A snapshot in
// progress is abandoned; the connection after Resume starts a new one, so instruments deleted
// during the pause are reconciled like after any reconnect.
//
// # Metrics
//
// With Options.Registerer set, New registers a collector that exports Stats at scrape time
// (names in metrics.go: quotes_source_*).
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/backoff"
)

// Defaults of Options; DefaultOptions returns them, and New uses them for zero fields.
const (
	DefaultMaxFrame      = 64 << 10
	DefaultReadTimeout   = 15 * time.Second
	DefaultBackoffMin    = 100 * time.Millisecond
	DefaultBackoffMax    = 10 * time.Second
	DefaultSnapshotQuiet = time.Second
	DefaultBatchSize     = 1024
	// DefaultGroupInterval is DefaultOptions' GroupInterval (New leaves a zero one alone).
	DefaultGroupInterval = 5 * time.Millisecond
	// DefaultSnapshotMaxDelete is the largest share, in percent of the active instruments,
	// that one snapshot may delete (see the package doc).
	DefaultSnapshotMaxDelete = 10.0
	// DefaultHealthyAfter is how long a connection must stay up to reset the backoff.
	DefaultHealthyAfter = 30 * time.Second
	// DefaultRejectRate and DefaultRejectBurst bound the rejected frames one connection may
	// send before it is throttled (per second, and at once).
	DefaultRejectRate  = 10.0
	DefaultRejectBurst = 100
)

// maxMaxFrame bounds Options.MaxFrame so that the connection read limit (16×MaxFrame) cannot
// overflow and a misconfiguration cannot ask for absurd buffers.
const maxMaxFrame = 1 << 30

// queueBatches is the queue capacity, in batches: 262,144 messages at the default
// BatchSize, about 12 MB when full. The queue carries the streams through the pauses of
// the delivery (a minute's close writes a candle per instrument, a checkpoint the hot
// windows: a few hundred ms at 100,000 instruments), which would otherwise push back
// onto the partner's connection: 8 batches were 41 ms of the heavy workload (200,000
// quotes/s), whose generator drops a client that lags 100,000 messages.
const queueBatches = 256

// Options configures a Client. Zero fields take the defaults of DefaultOptions (except URL,
// which is required).
type Options struct {
	// URL is the partner's base URL (ws, wss, http or https), e.g. ws://127.0.0.1:8032; the
	// streams are URL+"/instruments" and URL+"/quotes".
	URL string
	// Clock stamps arrivals and drives backoff, stall detection and the snapshot end.
	// Default: the wall clock.
	Clock clock.Clock
	// MaxFrame is the largest accepted frame in bytes (default 64 KiB); larger frames are
	// rejected with feed.ReasonOversized (see the package doc).
	MaxFrame int64
	// ReadTimeout: no frame and no pong within it means the connection stalled and is
	// re-established (default 15s). It also bounds a dial.
	ReadTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect backoff (defaults 100ms and 10s).
	BackoffMin, BackoffMax time.Duration
	// SnapshotQuiet is the quiet after the last snapshot frame that settles a /instruments
	// snapshot (default 1s; see the package doc).
	SnapshotQuiet time.Duration
	// SnapshotMaxDelete is the largest share of the active instruments, in percent (0 < x ≤
	// 100), that one settled snapshot may delete; a snapshot that would delete more deletes
	// nothing (default 10; 100 trusts every settled snapshot). At least one instrument may
	// always be deleted.
	SnapshotMaxDelete float64
	// HealthyAfter is how long a connection must stay up before the reconnect backoff starts
	// again from BackoffMin (default 30s).
	HealthyAfter time.Duration
	// RejectRate and RejectBurst: a connection whose rejected frames exceed this token bucket
	// (per second, and burst) is closed and retried with backoff (defaults 10/s and 100).
	RejectRate  float64
	RejectBurst int
	// Registerer, if set, receives a collector of the client's metrics (quotes_source_*);
	// New fails if they are already registered there.
	Registerer prometheus.Registerer
	// BatchSize is the largest batch handed to deliver (default 1024).
	BatchSize int
	// GroupInterval lets a batch gather: deliver is called at most once per GroupInterval
	// (from the start of one call to the next), unless a full batch (BatchSize) is queued
	// sooner. Each delivery is one WAL append, with its fsync under --sync batch: fewer,
	// larger ones cost less (at 50,000 quotes/s, ~390 appends a second without it and
	// ~185 with 5 ms, which took a quarter off ingest's CPU) for at most GroupInterval
	// more latency. DefaultOptions sets DefaultGroupInterval; zero (as in an Options
	// literal, e.g. tests on a mock clock) delivers whatever is queued at once.
	GroupInterval time.Duration
	// Active seeds the set of active instruments (ISIN → description), e.g. from the registry
	// recovered at startup, so that the first snapshot also deletes what vanished while we
	// were away. The map is copied by New.
	Active map[feed.ISIN]string
	// OnReject, if set, is called for every rejected frame. It is called from the stream
	// goroutines, possibly concurrently, and must be fast and safe for concurrent use.
	OnReject func(err *feed.DecodeError)
	// Logger receives rate-limited logs of rejects, connects and disconnects (default:
	// discard).
	Logger *slog.Logger
	// Rand is the source of backoff jitter (set it for deterministic tests). The Client
	// serialises its use; do not use it elsewhere concurrently. Default: seeded from the clock.
	Rand *rand.Rand
}

// DefaultOptions returns the default options for the partner at url.
func DefaultOptions(url string) Options {
	return Options{
		URL:           url,
		Clock:         clock.New(),
		MaxFrame:      DefaultMaxFrame,
		ReadTimeout:   DefaultReadTimeout,
		BackoffMin:    DefaultBackoffMin,
		BackoffMax:    DefaultBackoffMax,
		SnapshotQuiet: DefaultSnapshotQuiet,
		BatchSize:     DefaultBatchSize,
		GroupInterval: DefaultGroupInterval,

		SnapshotMaxDelete: DefaultSnapshotMaxDelete,
		HealthyAfter:      DefaultHealthyAfter,
		RejectRate:        DefaultRejectRate,
		RejectBurst:       DefaultRejectBurst,
	}
}

// Client is the websocket client of both partner streams. Create it with New, run it once
// with Run; Connected and Stats may be called concurrently at any time.
type Client struct {
	opts   Options
	clk    clock.Clock
	dialer *websocket.Dialer

	streams [2]*stream // instruments, quotes
	q       *queue
	state   instruments

	rndMu sync.Mutex
	rnd   *rand.Rand

	rejectLog *limitedLog
	connLog   *limitedLog

	ran              atomic.Bool
	rejectsMu        sync.Mutex
	rejects          map[feed.Reason]uint64
	syntheticDeletes atomic.Uint64
	snapshots        atomic.Uint64
	emptySnapshots   atomic.Uint64
	withheldSnaps    atomic.Uint64
	deletesWithheld  atomic.Uint64
	withheldNow      atomic.Int64
	duplicateAdds    atomic.Uint64
	delivered        atomic.Uint64

	pause gate

	hooks hooks
}

// hooks are test seams; all nil in production.
type hooks struct {
	// backoff is called by a stream after its backoff timer of d was armed and before it
	// waits for it.
	backoff func(stream string, attempt int, d time.Duration)
	// snapshot is called by the /instruments watchdog after each snapshot-end check with
	// the time still to wait (0: the snapshot ended or was no longer in progress).
	snapshot func(remaining time.Duration)
	// tick is called by a watchdog after it handled a ticker tick without declaring a stall.
	tick func(stream string)
}

// New validates opts, fills in defaults and returns a Client.
func New(opts Options) (*Client, error) {
	def := DefaultOptions(opts.URL)
	if opts.Clock == nil {
		opts.Clock = def.Clock
	}
	if opts.MaxFrame == 0 {
		opts.MaxFrame = def.MaxFrame
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = def.ReadTimeout
	}
	if opts.BackoffMin == 0 {
		opts.BackoffMin = def.BackoffMin
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = max(def.BackoffMax, opts.BackoffMin)
	}
	if opts.SnapshotQuiet == 0 {
		opts.SnapshotQuiet = def.SnapshotQuiet
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = def.BatchSize
	}
	if opts.SnapshotMaxDelete == 0 {
		opts.SnapshotMaxDelete = def.SnapshotMaxDelete
	}
	if opts.HealthyAfter == 0 {
		opts.HealthyAfter = def.HealthyAfter
	}
	if opts.RejectRate == 0 {
		opts.RejectRate = def.RejectRate
	}
	if opts.RejectBurst == 0 {
		opts.RejectBurst = def.RejectBurst
	}
	switch {
	case opts.MaxFrame < 0 || opts.MaxFrame > maxMaxFrame:
		return nil, fmt.Errorf("source: max frame %d: want 1 to %d bytes", opts.MaxFrame, maxMaxFrame)
	case opts.ReadTimeout < 0:
		return nil, fmt.Errorf("source: read timeout %v: must be positive", opts.ReadTimeout)
	case opts.BackoffMin < 0 || opts.BackoffMax < opts.BackoffMin:
		return nil, fmt.Errorf("source: backoff %v..%v: want 0 < min <= max", opts.BackoffMin, opts.BackoffMax)
	case opts.SnapshotQuiet < 0:
		return nil, fmt.Errorf("source: snapshot quiet %v: must be positive", opts.SnapshotQuiet)
	case opts.BatchSize < 0:
		return nil, fmt.Errorf("source: batch size %d: must be positive", opts.BatchSize)
	case !(opts.SnapshotMaxDelete > 0 && opts.SnapshotMaxDelete <= 100):
		return nil, fmt.Errorf("source: snapshot max delete %v%%: want more than 0 and at most 100", opts.SnapshotMaxDelete)
	case opts.HealthyAfter < 0:
		return nil, fmt.Errorf("source: healthy-after %v: must be positive", opts.HealthyAfter)
	case !(opts.RejectRate > 0) || opts.RejectBurst < 0:
		return nil, fmt.Errorf("source: reject budget %v/s burst %d: must be positive", opts.RejectRate, opts.RejectBurst)
	}
	instrURL, quotesURL, err := endpoints(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	rnd := opts.Rand
	if rnd == nil {
		seed := uint64(opts.Clock.Now().UnixNano())
		rnd = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	}
	c := &Client{
		opts:      opts,
		clk:       opts.Clock,
		dialer:    newDialer(),
		q:         newQueue(opts.BatchSize*queueBatches, opts.BatchSize),
		rnd:       rnd,
		rejectLog: newLimitedLog(opts.Logger, opts.Clock),
		connLog:   newLimitedLog(opts.Logger, opts.Clock),
		rejects:   make(map[feed.Reason]uint64),
	}
	c.state.active = make(map[feed.ISIN]string, len(opts.Active))
	for isin, desc := range opts.Active {
		c.state.active[isin] = desc
	}
	c.state.nActive.Store(int64(len(c.state.active)))
	c.streams[0] = newStream(c, "instruments", instrURL, true)
	c.streams[1] = newStream(c, "quotes", quotesURL, false)
	c.pause.init()
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(&collector{c: c}); err != nil {
			return nil, fmt.Errorf("source: register metrics: %w", err)
		}
	}
	return c, nil
}

// endpoints derives the two stream URLs from the base URL.
func endpoints(base string) (instruments, quotes string, err error) {
	if base == "" {
		return "", "", errors.New("source: partner URL is empty")
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", "", fmt.Errorf("source: partner URL %q: %w", base, err)
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return "", "", fmt.Errorf("source: partner URL %q: scheme must be ws, wss, http or https", base)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("source: partner URL %q: no host", base)
	}
	path := strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	u.Path = path + "/instruments"
	instruments = u.String()
	u.Path = path + "/quotes"
	quotes = u.String()
	return instruments, quotes, nil
}

// Run connects both streams and delivers every accepted message, stamped with its arrival
// time, to deliver: from the calling goroutine, in arrival order across both streams, in
// batches, until ctx is done. The batch slice is reused after deliver returns; deliver must
// not retain it. deliver's error stops Run (the messages still queued are dropped) and is
// returned wrapped. When ctx is done, Run stops reading, delivers what is queued and returns
// nil. Each stream reconnects independently with backoff on any failure; Run itself never
// fails for network reasons. Run may be called only once per Client.
func (c *Client) Run(ctx context.Context, deliver func(batch []feed.Message) error) error {
	if deliver == nil {
		return errors.New("source: run: deliver is nil")
	}
	if !c.ran.CompareAndSwap(false, true) {
		return errors.New("source: run: a Client can be run only once")
	}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range c.streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(sctx)
		}()
	}
	stop := func() {
		cancel()
		wg.Wait()
	}

	batch := make([]feed.Message, 0, c.opts.BatchSize)
	var last time.Time // when the last delivery began
	for {
		select {
		case <-ctx.Done():
			stop()
			for {
				batch = c.q.take(batch[:0], c.opts.BatchSize)
				if len(batch) == 0 {
					return nil
				}
				if err := deliver(batch); err != nil {
					return fmt.Errorf("source: deliver %d messages at shutdown: %w", len(batch), err)
				}
				c.delivered.Add(uint64(len(batch)))
			}
		case <-c.q.ready:
		}
		c.gather(ctx, last)
		batch = c.q.take(batch[:0], c.opts.BatchSize)
		if len(batch) == 0 {
			continue
		}
		last = c.clk.Now()
		if err := deliver(batch); err != nil {
			stop()
			return fmt.Errorf("source: deliver %d messages: %w", len(batch), err)
		}
		c.delivered.Add(uint64(len(batch)))
	}
}

// gather waits until GroupInterval has passed since last (when the last delivery began),
// a full batch is queued or ctx is done. A clock that stepped back does not make it wait.
func (c *Client) gather(ctx context.Context, last time.Time) {
	since := c.clk.Since(last)
	if since < 0 || since >= c.opts.GroupInterval {
		return
	}
	wait := c.opts.GroupInterval - since
	c.q.clearFull()
	if c.q.len() >= c.opts.BatchSize {
		return
	}
	t := c.clk.Timer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.q.full:
	case <-ctx.Done():
	}
}

// Connected reports whether both streams are currently connected (for /readyz).
func (c *Client) Connected() bool {
	return c.streams[0].connected.Load() && c.streams[1].connected.Load()
}

// StreamStats are the counters of one stream.
type StreamStats struct {
	// Connected reports whether the stream is connected now.
	Connected bool
	// Connects counts successful websocket handshakes.
	Connects uint64
	// ConnectFailures counts failed dials and refused handshakes.
	ConnectFailures uint64
	// Disconnects counts connections that ended other than by shutdown.
	Disconnects uint64
	// Stalls counts the disconnects caused by stall detection (no frame nor pong within
	// ReadTimeout).
	Stalls uint64
	// Throttled counts the connections closed for sending too many rejected frames.
	Throttled uint64
	// Backoff is the delay of the reconnect waited for now, or of the last one (0 before
	// any).
	Backoff time.Duration
	// Frames counts data frames read (text and binary, accepted or rejected).
	Frames uint64
	// Accepted counts the messages decoded and queued for delivery.
	Accepted uint64
}

// Stats is a snapshot of the Client's counters.
type Stats struct {
	// Instruments and Quotes are the per-stream counters.
	Instruments, Quotes StreamStats
	// Rejects counts rejected frames by reason (only reasons that occurred are present).
	Rejects map[feed.Reason]uint64
	// SyntheticDeletes counts the DELETEs made up at the end of a snapshot.
	SyntheticDeletes uint64
	// Snapshots counts /instruments snapshots that settled and were reconciled (see the
	// package doc), WithheldSnapshots those of them that would have deleted more than
	// SnapshotMaxDelete allows and so deleted nothing, DeletesWithheld the instruments kept
	// that way (summed over snapshots), and Withheld how many the last settled snapshot kept.
	Snapshots, WithheldSnapshots, DeletesWithheld uint64
	Withheld                                      int
	// EmptySnapshots counts /instruments connections whose snapshot had no ADD after
	// SnapshotQuiet (they delete nothing).
	EmptySnapshots uint64
	// DuplicateAdds counts ADDs of an active ISIN with an unchanged description: not
	// delivered (see the package doc).
	DuplicateAdds uint64
	// Paused reports whether the client is paused (see Pause).
	Paused bool
	// Delivered counts the messages handed to deliver successfully.
	Delivered uint64
	// Active is the number of instruments the Client currently holds as active.
	Active int
}

// Rejected returns the total number of rejected frames.
func (s Stats) Rejected() uint64 {
	var n uint64
	for _, v := range s.Rejects {
		n += v
	}
	return n
}

// Stats returns the current counters. It never blocks on the data path and may be called
// from deliver.
func (c *Client) Stats() Stats {
	st := Stats{
		Instruments:      c.streams[0].stats(),
		Quotes:           c.streams[1].stats(),
		SyntheticDeletes: c.syntheticDeletes.Load(),
		Snapshots:        c.snapshots.Load(),
		Delivered:        c.delivered.Load(),

		WithheldSnapshots: c.withheldSnaps.Load(),
		DeletesWithheld:   c.deletesWithheld.Load(),
		Withheld:          int(c.withheldNow.Load()),
		EmptySnapshots:    c.emptySnapshots.Load(),
		DuplicateAdds:     c.duplicateAdds.Load(),
		Paused:            c.pause.paused.Load(),
	}
	c.rejectsMu.Lock()
	st.Rejects = make(map[feed.Reason]uint64, len(c.rejects))
	for r, n := range c.rejects {
		st.Rejects[r] = n
	}
	c.rejectsMu.Unlock()
	// Not under state.mu: a reader may hold it while it waits for the consumer, and Stats
	// must never block (deliver itself may call it).
	st.Active = int(c.state.nActive.Load())
	return st
}

// reject counts, reports and logs one rejected frame.
func (c *Client) reject(stream string, de *feed.DecodeError) {
	c.rejectsMu.Lock()
	c.rejects[de.Reason]++
	c.rejectsMu.Unlock()
	if c.opts.OnReject != nil {
		c.opts.OnReject(de)
	}
	c.rejectLog.log(slog.LevelWarn, "source: frame rejected", "stream", stream, "reason", string(de.Reason), "detail", de.Detail)
}

// newBackoff returns a stream's reconnect backoff: attempt n waits a random delay in
// [b/2, b], b = min(BackoffMax, BackoffMin×2ⁿ), on the client's clock, with a jitter
// generator of its own seeded from the client's (Options.Rand), so seeded tests stay
// deterministic.
func (c *Client) newBackoff() *backoff.Backoff {
	c.rndMu.Lock()
	rnd := rand.New(rand.NewPCG(c.rnd.Uint64(), c.rnd.Uint64()))
	c.rndMu.Unlock()
	return backoff.New(backoff.Policy{Min: c.opts.BackoffMin, Max: c.opts.BackoffMax, Jitter: 0.5, Rand: rnd}, c.clk)
}

// wait waits d on the clock; false if ctx ended first.
func (c *Client) wait(ctx context.Context, stream string, attempt int, d time.Duration) bool {
	t := c.clk.Timer(d)
	defer t.Stop()
	if c.hooks.backoff != nil {
		c.hooks.backoff(stream, attempt, d)
	}
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
