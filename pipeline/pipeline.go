// Package pipeline is the one loop between the write-ahead log and everything derived from
// it: each WAL record is applied, in sequence order, to the aggregator (registry, candles)
// and the hot detector, and what they derive is flushed to the embedded store. It also
// recovers that state after a restart, and answers queries against it.
//
// Exactly once. Everything derived is a pure function of the WAL. Every derived item (a
// closed candle, a late correction, a hot event) is tagged with the sequence of the record
// that produced it; the store commits its watermark with the items, and recovery re-applies
// the WAL after the last checkpoint while skipping items at or below that watermark. So a
// crash at any moment leaves the store equal to an uninterrupted run, and a hot event is
// published once, with the same id.
//
// Outbox. Every closed candle, late correction, instrument change (an ADD that starts an
// incarnation or changes a description, a DELETE) and hot event also goes, in the same
// store write, to the store's outbox, keyed by (sequence of the producing record, index
// within it; a hot event at store.OutboxHotIdx): the feed of the other sinks
// (export.Consumer, the alert sinks). Retention removes outbox items once every
// registered consumer has delivered them. OutboxChanged wakes consumers.
//
// Checkpoints. Periodically (every Options.CheckpointEvery of event time, or sooner once
// Options.CheckpointRecords records were applied since the last one) and on Close the
// full aggregator and hot detector state is written to a file in the WAL's directory
// together with the sequence it reflects (checkpoint.go); recovery loads it and re-applies
// only the WAL after it. WAL retention never removes records after the last checkpoint.
package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/store"
	"github.com/quotesdev/quotes/wal"
)

// ErrUnknownInstrument is returned by queries for an ISIN that is not active (never added,
// or deleted).
var ErrUnknownInstrument = errors.New("unknown or deleted instrument")

// Options configure a Pipeline.
type Options struct {
	Aggregate aggregate.Options
	Hot       hot.Options
	// CheckpointEvery is the event time between state checkpoints (default 5m). Shorter
	// means faster restarts and more writes.
	CheckpointEvery time.Duration
	// CheckpointRecords also takes a checkpoint once this many WAL records were applied
	// since the last one (default DefaultCheckpointRecords; negative: event time only).
	// Recovery re-applies the records after the last checkpoint, so this bounds a
	// restart's time whatever the feed's rate: CheckpointEvery alone lets a fast replay
	// or a heavy feed pile up minutes of records between checkpoints.
	CheckpointRecords int
	// EventRetention is how long hot events are kept in the store (default 24h, at least the
	// hot window).
	EventRetention time.Duration
	// WALRetention keeps WAL records younger than this (by event time) even when no
	// consumer needs them, for `replay DATA_DIR` and `backfill --source wal` (default 24h;
	// negative: keep only what consumers need).
	WALRetention time.Duration
	// Metrics, if set, receives flush and checkpoint timings.
	Metrics *Metrics
	// Consumers, if set, returns the lowest WAL sequence any further consumer (a sink)
	// still needs; retention keeps it and everything after.
	Consumers func() uint64
	// RecoveryProgress, if set, is called during Open's recovery with the WAL records
	// re-applied so far and the number to re-apply: first (0, total), then after every run
	// of records.
	RecoveryProgress func(replayed, total uint64)
	// CandleRetention, if positive, is how long (event time, before the watermark) closed
	// candles stay in the store; older ones go once the outbox consumers have them.
	CandleRetention time.Duration
	// TrimOutbox, if set, replaces store.TrimDelivered in the retention pass (the engine
	// expires stale consumers first and says who keeps the outbox).
	TrimOutbox func() (int, error)
	// TailMinutes is how many recently closed minutes of every active instrument are kept
	// in memory, so that queries of recent ranges (last=30m) do not read the store: 0 means
	// DefaultTailMinutes (30: a last=30m query's 29 closed minutes and the previous close;
	// 40 bytes a minute, ~60 MB at 50,000 instruments), negative none (every query reads
	// the store). After a restart the tail fills again as minutes close; until then queries
	// of earlier minutes read the store.
	TailMinutes int
	// CommitQueue is how many derived runs AppendAsync lets wait for the commit goroutine
	// (default DefaultCommitQueue) before it blocks.
	CommitQueue int
	Logger      *slog.Logger
}

// DefaultCommitQueue is the default of Options.CommitQueue: with the source's batches of up
// to 1,024 messages, over a second of the heavy workload (200,000 quotes/s) can be derived
// and wait while a checkpoint (~0.5 s at 100,000 instruments) holds the commit goroutine,
// a few MB of hot-detector operations.
const DefaultCommitQueue = 256

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		Aggregate:         aggregate.DefaultOptions(),
		Hot:               hot.DefaultOptions(),
		CheckpointEvery:   5 * time.Minute,
		CheckpointRecords: DefaultCheckpointRecords,
		EventRetention:    24 * time.Hour,
		WALRetention:      24 * time.Hour,
		TailMinutes:       DefaultTailMinutes,
		CommitQueue:       DefaultCommitQueue,
	}
}

// DefaultCheckpointRecords is the default of Options.CheckpointRecords: recovery
// re-applies WAL records at about 2.5 million a second on the 2-core machine of the
// benchmarks, so a restart re-applies at most about 0.8 s of them (a kill during a
// checkpoint's writing leaves the one before, a little more); at the spec load (50,000
// quotes/s) it means a checkpoint every 40 s. With 3M, a restart after a kill half-way
// through the spec replay took 2.1–2.8 s when the kill fell just before a checkpoint.
const DefaultCheckpointRecords = 2_000_000

// Pipeline applies WAL records to the aggregator and the hot detector and flushes what they
// derive to the store. Writes (Append, AppendFrom, Tick, Finish, Close) must be called from
// one goroutine at a time; queries may run concurrently with them.
type Pipeline struct {
	opts  Options
	log   *wal.Log
	store *store.Store

	// The aggregate half: mu guards agg and these fields against queries.
	mu      sync.RWMutex
	agg     *aggregate.Aggregator
	applied uint64   // last WAL sequence applied to agg
	skipTo  uint64   // items derived from records ≤ skipTo are already in the store
	cur     uint64   // sequence of the record being applied
	outIdx  uint32   // index of the next outbox item of the record being applied
	d       *derived // what the records being applied derive
	// aggStateLen is the size of the largest aggregator snapshot taken for a checkpoint.
	aggStateLen int
	lastCkpt    int64 // watermark at the last checkpoint
	// legacyCkpt: Badger holds a checkpoint of an older version, deleted by the next one.
	legacyCkpt bool
	ckptSeq    uint64 // sequence of the last checkpoint
	expired    int64  // minute of the last hot.Detector.Expire: MinuteOf(watermark) after every record
	// inflightMu guards inflight, the runs derived and not committed yet (Writer, Append),
	// oldest first: their closed minutes are no longer open in agg and not yet in the
	// store. Commit writes a run's candles to the store and removes it from inflight under
	// inflightMu, not p.mu, so the next batch's derive (and the queries answered from
	// memory) do not wait for that write; a query that reads the store holds it shared
	// and sees each candle in exactly one of the two. Lock order: p.mu, then inflightMu.
	inflightMu sync.RWMutex
	inflight   []*derived
	// tail holds the recently closed candles for queries (tail.go): derive updates it with
	// agg, so it holds what the store holds plus the inflight runs.
	tail     *candleTail
	isActive func(feed.ISIN, uint64) bool // activeIncarnation, for tail.put
	sink     int64                        // what aggregate.Aggregator.PrefetchGroup read (unused)

	// tailServed and storeServed count the candle queries answered from the tail and those
	// that read the store.
	tailServed, storeServed atomic.Uint64

	// The commit half: commitMu serialises the hot detector and the store writes.
	commitMu sync.Mutex
	det      *hot.Detector
	events   []hot.Event
	hotTotal atomic.Uint64 // hot events derived (including recovered ones)
	hotIncs  []uint64      // prefetchHot's scratch
	hotRefs  []uint32      // prefetchHot's scratch
	hotSlots []int32
	hotSink  int64 // what hot.Detector.PrefetchGroup read (unused)

	freeDerived chan *derived // recycled derived values (newDerived)

	// The commit goroutine (AppendAsync), started by its first call: commits the queued
	// runs in order. commitErr holds its first error; asyncMu guards both.
	asyncMu   sync.Mutex
	commitQ   chan commitJob
	commitErr error
	committed chan struct{} // closed when the commit goroutine has stopped

	eventsChanged *notifier
	outboxChanged *notifier
	closed        bool

	retaining  sync.Mutex // held while a retention pass runs
	recovering bool       // Open is recovering: checkpoints run no retention pass
	// retainedSeq is the checkpoint of the last retention pass started; p.retaining guards it.
	retainedSeq uint64
}

// Open recovers the pipeline over log: it loads the last checkpoint and re-applies the WAL
// records after it.
func Open(log *wal.Log, opts Options) (*Pipeline, error) {
	def := DefaultOptions()
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = def.CheckpointEvery
	}
	if opts.CheckpointRecords == 0 {
		opts.CheckpointRecords = def.CheckpointRecords
	}
	if opts.EventRetention <= 0 {
		opts.EventRetention = def.EventRetention
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TailMinutes == 0 {
		opts.TailMinutes = def.TailMinutes
	}
	if opts.CommitQueue <= 0 {
		opts.CommitQueue = DefaultCommitQueue
	}
	p := &Pipeline{
		opts:          opts,
		log:           log,
		store:         store.New(log.DB(), log.Persist),
		agg:           aggregate.New(opts.Aggregate),
		det:           hot.New(opts.Hot),
		freeDerived:   make(chan *derived, 16),
		eventsChanged: newNotifier(),
		outboxChanged: newNotifier(),
		tail:          newCandleTail(opts.TailMinutes),
	}
	p.isActive = p.activeIncarnation
	if err := p.recover(); err != nil {
		return nil, err
	}
	return p, nil
}

// LockCommits blocks the pipeline's store writes until unlock is called: for writers of the
// store beside the pipeline (a backfill into a running engine), so that what they read and
// write is not interleaved with a flush.
//
// The candle tail stops answering for the minutes closed so far (queries of them read the
// store, which the caller may have changed).
func (p *Pipeline) LockCommits() (unlock func()) {
	// The runs queued by AppendAsync first (those derived meanwhile wait, as one derived
	// right before the lock always could).
	_ = p.waitCommits() // an error stays with the pipeline: its next Append returns it
	p.commitMu.Lock()
	return func() {
		p.commitMu.Unlock()
		// Not under commitMu: Close takes p.mu, then commitMu.
		p.mu.Lock()
		p.tail.forget(p.agg.ClosedThrough())
		p.mu.Unlock()
	}
}

// Store returns the embedded store the pipeline flushes to.
func (p *Pipeline) Store() *store.Store { return p.store }

// Applied returns the last WAL sequence applied.
func (p *Pipeline) Applied() uint64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.applied
}

// Append writes msgs to the WAL (durably, per its sync mode) and then applies them: when
// it returns, what they derive is in the store. Appends must not be concurrent.
func (p *Pipeline) Append(msgs []feed.Message) error {
	return p.append(msgs, false)
}

// AppendAsync is Append for a live feed: it returns once msgs are durable in the WAL and
// applied to the aggregator (queries see their candles), and leaves the commit half — hot
// detection, the store's writes, a checkpoint that is due — to the pipeline's commit
// goroutine, up to Options.CommitQueue runs behind. So a checkpoint, or a slow store
// write, holds up the commits but not the intake. An error of an earlier commit is
// returned by the next AppendAsync or Append, Flush and Close; queries and hot events
// reflect the commits done so far (the candles derived are visible at once, as with
// Writer).
func (p *Pipeline) AppendAsync(msgs []feed.Message) error {
	return p.append(msgs, true)
}

func (p *Pipeline) append(msgs []feed.Message, async bool) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := p.asyncErr(); err != nil {
		return err
	}
	first, err := p.log.Append(msgs)
	if err != nil {
		return fmt.Errorf("pipeline: append to WAL: %w", err)
	}
	return p.applyMessages(first, msgs, async)
}

// AppendFrom is Append that also records pos as the position of source in the WAL, in the
// same write (resumable replay).
func (p *Pipeline) AppendFrom(msgs []feed.Message, source string, pos []byte) error {
	if err := p.asyncErr(); err != nil {
		return err
	}
	first, err := p.log.AppendFrom(msgs, source, pos)
	if err != nil {
		return fmt.Errorf("pipeline: append to WAL: %w", err)
	}
	return p.applyMessages(first, msgs, false)
}

// Tick records that the clock reached ts (a wal.KindTick record), closing the minutes that
// ended at least a grace period before it.
func (p *Pipeline) Tick(ts int64) error {
	return p.Append([]feed.Message{{TS: ts, Kind: wal.KindTick}})
}

// TickAsync is Tick through AppendAsync.
func (p *Pipeline) TickAsync(ts int64) error {
	return p.AppendAsync([]feed.Message{{TS: ts, Kind: wal.KindTick}})
}

// applyMessages applies msgs (sequences first, first+1, …): it derives under p.mu and
// commits after releasing it, so queries do not wait for the store write (and its sync)
// or a checkpoint. As with the Writer, a run with closed or late candles is in p.inflight
// until commit moves them to the store. Appends come one at a time, so runs are derived,
// and queued for commitRun, in order.
func (p *Pipeline) applyMessages(first uint64, msgs []feed.Message, async bool) error {
	p.mu.Lock()
	d, err := p.derive(first, msgs, false)
	if err == nil {
		p.addInflight(d)
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.commitRun(d, async)
}

// commitJob is a run queued for the commit goroutine (nil: none, for waitCommits); done,
// if not nil, receives the commit's result.
type commitJob struct {
	d    *derived
	done chan error
}

// commitRun commits d after every run derived before it: on the commit goroutine, once
// AppendAsync has started it (waiting for d's commit unless async), else here.
func (p *Pipeline) commitRun(d *derived, async bool) error {
	p.asyncMu.Lock()
	if async && p.commitQ == nil && p.committed == nil {
		p.commitQ, p.committed = make(chan commitJob, p.opts.CommitQueue), make(chan struct{})
		go p.commitLoop(p.commitQ, p.committed)
	}
	q := p.commitQ
	p.asyncMu.Unlock()
	if q == nil {
		return p.commit(d)
	}
	if async {
		q <- commitJob{d: d}
		return nil
	}
	done := make(chan error, 1)
	q <- commitJob{d: d, done: done}
	return <-done
}

// commitLoop commits the queued runs in order; after an error it drops the rest (the
// pipeline is unusable then: Open recovers from the WAL).
func (p *Pipeline) commitLoop(q <-chan commitJob, stopped chan<- struct{}) {
	defer close(stopped)
	for j := range q {
		err := p.asyncErr()
		switch {
		case j.d == nil: // waitCommits
		case err == nil:
			if err = p.commit(j.d); err != nil {
				p.asyncMu.Lock()
				p.commitErr = err
				p.asyncMu.Unlock()
			}
		default:
			// Dropped, not recycled: a run with candles is still in p.inflight.
		}
		if j.done != nil {
			j.done <- err
		}
	}
}

// asyncErr returns the commit goroutine's error, if any.
func (p *Pipeline) asyncErr() error {
	p.asyncMu.Lock()
	defer p.asyncMu.Unlock()
	return p.commitErr
}

// stopCommits waits for the queued commits and stops the commit goroutine, if it runs,
// and returns its error.
func (p *Pipeline) stopCommits() error {
	p.asyncMu.Lock()
	q, stopped := p.commitQ, p.committed
	p.commitQ = nil
	p.asyncMu.Unlock()
	if q != nil {
		close(q)
		<-stopped
	}
	return p.asyncErr()
}

// addInflight registers d in p.inflight when it has closed or late candles; p.mu must be
// held.
func (p *Pipeline) addInflight(d *derived) {
	if len(d.closed) > 0 || len(d.late) > 0 {
		d.inflight = true
		p.inflightMu.Lock()
		p.inflight = append(p.inflight, d)
		p.inflightMu.Unlock()
	}
}

// derived is what applying a run of records to the aggregator produced, ready for the
// commit half: the hot detector's operations in order, and the store's items.
type derived struct {
	last     uint64 // last sequence applied
	skipTo   uint64 // hot events with an id ≤ skipTo are already stored
	ops      []hotOp
	closed   []aggregate.Candle
	late     []aggregate.Candle
	lateSeqs []uint64 // the record that produced each of late (store.Batch.LateSeqs)
	outbox   []store.OutboxItem
	aggState []byte // set when a checkpoint is due after this run
	// inflight is set when the run is in Pipeline.inflight (Writer): its closed and late
	// candles are served from there until commit writes them to the store.
	inflight bool
	// outboxOn is whether the run writes outbox items (store.HasConsumers when derived).
	outboxOn  bool
	watermark int64
}

// prefetchGroup is how many records (and hot operations) are prefetched together before
// they are applied (aggregate.Aggregator.PrefetchGroup, hot.Detector.PrefetchGroup).
const prefetchGroup = 32

// prefetchHot prefetches the windows of the quotes among ops; p.commitMu must be held.
func (p *Pipeline) prefetchHot(ops []hotOp) {
	incs, refs := p.hotIncs[:0], p.hotRefs[:0]
	for i := range ops {
		if ops[i].kind == opObserve {
			incs, refs = append(incs, ops[i].incarnation), append(refs, ops[i].ref)
		}
	}
	if len(p.hotSlots) < len(incs) {
		p.hotSlots = make([]int32, prefetchGroup)
	}
	p.hotSink += p.det.PrefetchGroup(refs, incs, p.hotSlots)
	p.hotIncs, p.hotRefs = incs, refs
}

// maxRecycledItems bounds the candles and outbox items a recycled derived keeps room for.
const maxRecycledItems = 4096

// newDerived returns an empty derived for n records, recycled when possible: a replay
// derives a batch of 32,768 records every few milliseconds, and allocating its slices
// anew (~2 MB of hot operations alone) was a large part of the garbage.
func (p *Pipeline) newDerived(n int) *derived {
	var d *derived
	select {
	case d = <-p.freeDerived:
	default:
		d = &derived{}
	}
	d.skipTo = p.skipTo
	if cap(d.ops) < n {
		d.ops = make([]hotOp, 0, n)
	}
	return d
}

// releaseDerived recycles d once commit is done with it (nothing keeps references into it:
// the store encodes what it writes).
func (p *Pipeline) releaseDerived(d *derived) {
	clear(d.outbox) // items hold strings
	*d = derived{ops: d.ops[:0], closed: d.closed[:0], late: d.late[:0], lateSeqs: d.lateSeqs[:0], outbox: d.outbox[:0]}
	// The batch that closes a minute carries a candle per instrument: do not keep such
	// slices around in every recycled value.
	if cap(d.closed) > maxRecycledItems {
		d.closed = nil
	}
	if cap(d.late) > maxRecycledItems {
		d.late, d.lateSeqs = nil, nil
	}
	if cap(d.outbox) > maxRecycledItems {
		d.outbox = nil
	}
	select {
	case p.freeDerived <- d:
	default:
	}
}

// hotOp is one operation for the hot detector, in record order.
type hotOp struct {
	kind        uint8 // opObserve, opForget, opExpire
	isin        feed.ISIN
	ref         uint32 // feed.Message.Ref of the quote's incarnation (hot.Detector.ObserveRef)
	incarnation uint64
	ts          int64 // quote time; watermark for opExpire
	seq         uint64
	price       feed.Price
	tag         uint64 // the record being applied: the outbox tag of a hot event
}

const (
	opObserve uint8 = iota
	opForget
	opExpire
)

// derive applies msgs (sequences first, first+1, …) to the aggregator; p.mu must be held.
// forceCheckpoint makes the result carry a checkpoint of the aggregator.
func (p *Pipeline) derive(first uint64, msgs []feed.Message, forceCheckpoint bool) (*derived, error) {
	if len(msgs) > 0 && first != p.applied+1 {
		return nil, fmt.Errorf("pipeline: WAL returned sequence %d, expected %d: another writer on this log?", first, p.applied+1)
	}
	// The tail sees every close from here on; minutes closed before are in the store.
	p.tail.start(p.agg.ClosedThrough())
	d := p.newDerived(len(msgs))
	d.outboxOn = p.store.HasConsumers()
	p.d = d
	for g := 0; g < len(msgs); g += prefetchGroup {
		group := msgs[g:min(g+prefetchGroup, len(msgs))]
		p.sink += p.agg.PrefetchGroup(group)
		for i := range group {
			p.apply(wal.Record{Seq: first + uint64(g+i), Message: group[i]})
		}
	}
	p.d = nil
	d.last, d.watermark = p.applied, p.agg.Watermark()
	if p.lastCkpt == math.MinInt64 {
		// No checkpoint and no watermark yet: count CheckpointEvery from the first one
		// (the distance to math.MinInt64 would overflow).
		p.lastCkpt = d.watermark
	}
	// Recovery takes none: it would add a checkpoint's time to the restart's, and the
	// first run of records after it takes it instead.
	due := !p.recovering && p.ckptSeq != p.applied && (d.watermark-p.lastCkpt >= int64(p.opts.CheckpointEvery) ||
		p.opts.CheckpointRecords > 0 && p.applied-p.ckptSeq >= uint64(p.opts.CheckpointRecords))
	if forceCheckpoint || due {
		// Sized from the largest one so far (the size moves with the open minutes and the
		// held quotes, 4.5–9.5 MB at the spec load): appending to nil doubled its way up.
		d.aggState = p.agg.AppendState(make([]byte, 0, p.aggStateLen+p.aggStateLen/8))
		p.aggStateLen = max(p.aggStateLen, len(d.aggState))
		p.ckptSeq, p.lastCkpt = p.applied, d.watermark
	}
	return d, nil
}

// apply applies one record to the aggregator; p.mu must be held and p.d set.
func (p *Pipeline) apply(r wal.Record) {
	p.cur, p.outIdx = r.Seq, 0
	p.agg.Apply(r, (*output)(p))
	p.applied = r.Seq
	// Once per minute of event time, let the hot detector drop what can no longer matter.
	// It is triggered by the record sequence alone, so recovery expires at the same points.
	if m, ok := p.agg.CurrentMinute(); ok && m > p.expired {
		p.expired = m
		p.d.ops = append(p.d.ops, hotOp{kind: opExpire, ts: p.agg.Watermark()})
	}
}

// commit runs the hot detector over d's operations and writes d's items and events to the
// store, then the checkpoint d carries, if any.
func (p *Pipeline) commit(d *derived) error {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	defer p.releaseDerived(d)
	defer p.opts.Metrics.observeCommit(time.Now())
	p.events = p.events[:0]
	var hotTag uint64
	hotIdx := store.OutboxHotIdx
	for i := range d.ops {
		if i%prefetchGroup == 0 {
			p.prefetchHot(d.ops[i:min(i+prefetchGroup, len(d.ops))])
		}
		op := &d.ops[i]
		switch op.kind {
		case opObserve:
			if ev, ok := p.det.ObserveRef(op.ref, op.isin, op.incarnation, op.ts, op.seq, op.price); ok {
				p.hotTotal.Add(1)
				if ev.ID > d.skipTo {
					p.events = append(p.events, ev)
					if !d.outboxOn {
						continue
					}
					// The event for the alert sinks, tagged with the record that produced
					// it (the triggering quote's, = the event id, unless a held-back quote
					// was released by an ADD) after that record's other items.
					if op.tag != hotTag {
						hotTag, hotIdx = op.tag, store.OutboxHotIdx
					}
					d.outbox = append(d.outbox, store.OutboxItem{Tag: op.tag, Idx: hotIdx, Kind: store.OutboxHot, Event: ev})
					hotIdx++
				}
			}
		case opForget:
			p.det.Forget(op.incarnation)
		case opExpire:
			p.det.Expire(op.ts)
		}
	}
	b := store.Batch{Seq: d.last, Closed: d.closed, Late: d.late, LateSeqs: d.lateSeqs, Events: p.events, Outbox: d.outbox}
	if d.inflight {
		// The candles leave inflight as they land in the store, under inflightMu: a query
		// sees them in exactly one of the two.
		p.inflightMu.Lock()
		err := p.applyBatch(&b)
		p.inflight = slices.DeleteFunc(p.inflight, func(x *derived) bool { return x == d })
		p.inflightMu.Unlock()
		if err != nil {
			return err
		}
	} else if err := p.applyBatch(&b); err != nil {
		return err
	}
	if len(d.outbox) > 0 {
		p.outboxChanged.notify()
	}
	if len(p.events) > 0 {
		p.eventsChanged.notify()
	}
	if d.aggState != nil {
		return p.checkpoint(d.last, d.watermark, d.aggState)
	}
	return nil
}

func (p *Pipeline) applyBatch(b *store.Batch) error {
	if b.Empty() {
		return nil
	}
	return p.store.Apply(b)
}

// Finish closes every open minute at the end of a replay's input, flushes and
// checkpoints. Closing is itself a WAL record (a tick one minute plus the grace period past
// the watermark's minute), so a crash during Finish and the re-run that follows derive the
// same candles as one uninterrupted run. Nothing is appended when nothing is open.
func (p *Pipeline) Finish() error {
	p.mu.RLock()
	pending := p.agg.Pending()
	wm := p.agg.Watermark()
	p.mu.RUnlock()
	if pending {
		end := aggregate.MinuteOf(wm) + aggregate.MinuteNanos + int64(p.agg.Grace())
		if err := p.Tick(end); err != nil {
			return err
		}
	}
	return p.Flush()
}

// Flush checkpoints the state (everything applied is already in the store). The
// checkpoint is written after p.mu is released, as applyMessages does.
func (p *Pipeline) Flush() error {
	if err := p.asyncErr(); err != nil {
		return err
	}
	p.mu.Lock()
	d, err := p.checkpointRun()
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if d == nil {
		return p.waitCommits()
	}
	return p.commitRun(d, false)
}

// waitCommits waits until the runs queued for the commit goroutine are committed.
func (p *Pipeline) waitCommits() error {
	p.asyncMu.Lock()
	q := p.commitQ
	p.asyncMu.Unlock()
	if q == nil {
		return p.asyncErr()
	}
	done := make(chan error, 1)
	q <- commitJob{d: nil, done: done}
	return <-done
}

// checkpointRun derives an empty run that carries a checkpoint, or returns nil when the
// last checkpoint is of the current state already; p.mu must be held.
func (p *Pipeline) checkpointRun() (*derived, error) {
	if p.ckptSeq == p.applied && p.ckptSeq != 0 && !p.legacyCkpt {
		return nil, nil
	}
	return p.derive(p.applied+1, nil, true)
}

// Close flushes and checkpoints. It does not close the WAL.
func (p *Pipeline) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.stopCommits()
	var d *derived
	if err == nil {
		d, err = p.checkpointRun()
	}
	if err == nil && d != nil {
		err = p.commit(d)
	}
	p.eventsChanged.close()
	p.outboxChanged.close()
	// Let a background retention pass finish before the WAL closes; if the last checkpoint's
	// pass was skipped because an earlier one was still running, run it now, so that Close
	// always leaves retention applied as of the last checkpoint.
	p.retaining.Lock()
	if err == nil && p.ckptSeq != 0 && p.retainedSeq != p.ckptSeq {
		p.retain(p.ckptSeq, p.lastCkpt)
	}
	p.retaining.Unlock()
	return err
}

// output receives what the aggregator derives from the record being applied (p.cur) and
// records it in p.d.
type output Pipeline

func (o *output) Quote(q aggregate.AcceptedQuote) {
	p := (*Pipeline)(o)
	p.d.ops = append(p.d.ops, hotOp{kind: opObserve, isin: q.ISIN, ref: q.Ref, incarnation: q.Incarnation, ts: q.TS, seq: q.Seq, price: q.Price, tag: p.cur})
}

// Instrument sends the registry change to the outbox; the end of an incarnation also makes
// the hot detector forget it.
func (o *output) Instrument(ev aggregate.InstrumentEvent) {
	p := (*Pipeline)(o)
	if ev.Kind == feed.KindDelete {
		p.d.ops = append(p.d.ops, hotOp{kind: opForget, incarnation: ev.Incarnation})
		p.tail.drop(ev.ISIN, ev.Incarnation)
	}
	if p.cur > p.skipTo && p.d.outboxOn {
		p.addOutbox(store.OutboxItem{Kind: store.OutboxInstrument, Instrument: ev})
	}
}

// Closing makes room for the candles of a closing minute (aggregate.ClosingHinter): the
// minute that closes 50,000 candles at the spec load no longer grows its slice by
// doubling, copying and discarding it a dozen times.
func (o *output) Closing(n int) {
	p := (*Pipeline)(o)
	if p.cur > p.skipTo {
		p.d.closed = slices.Grow(p.d.closed, n)
	}
}

func (o *output) Closed(c *aggregate.Candle) {
	p := (*Pipeline)(o)
	if p.tail.enabled() {
		p.tail.put(c, false, p.isActive)
	}
	if p.cur > p.skipTo {
		p.d.closed = append(p.d.closed, *c)
		if p.d.outboxOn {
			p.addOutbox(store.OutboxItem{Kind: store.OutboxClosed, Candle: *c})
		}
	}
}

func (o *output) Late(c *aggregate.Candle) {
	p := (*Pipeline)(o)
	if p.tail.enabled() {
		p.tail.put(c, true, p.isActive)
	}
	if p.cur > p.skipTo {
		p.d.late = append(p.d.late, *c)
		p.d.lateSeqs = append(p.d.lateSeqs, p.cur)
		if p.d.outboxOn {
			p.addOutbox(store.OutboxItem{Kind: store.OutboxLate, Candle: *c})
		}
	}
}

// addOutbox adds an item for the other sinks, tagged with the record being applied and its
// index among that record's items: the same key whatever the batching.
func (p *Pipeline) addOutbox(it store.OutboxItem) {
	it.Tag, it.Idx = p.cur, p.outIdx
	p.outIdx++
	p.d.outbox = append(p.d.outbox, it)
}

// activeIncarnation reports whether inc is isin's active incarnation; p.mu must be held.
func (p *Pipeline) activeIncarnation(isin feed.ISIN, inc uint64) bool {
	in, ok := p.agg.Instrument(isin)
	return ok && in.Incarnation == inc
}
