package wal

import (
	"strings"

	"context"
	"errors"
	"fmt"
	"github.com/dgraph-io/ristretto/v2/z"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/quotesdev/quotes/feed"
)

// Log is the write-ahead log. All methods are safe for concurrent use.
type Log struct {
	opts Options
	db   *badger.DB

	// mu guards closed. Every operation that touches the DB holds it shared for its
	// duration (Append while it hands its request to the writer), so Close, which takes it
	// exclusively, never closes the DB under a running operation.
	mu      sync.RWMutex
	closed  bool
	closing chan struct{} // closed by Close after closed is set: the writer drains and exits
	stopped chan struct{} // closed by the writer when it has exited

	reqs chan *appendReq
	pool sync.Pool // of *appendReq

	lastSeq  atomic.Uint64 // last acknowledged sequence
	firstSeq atomic.Uint64 // first retained sequence (lastSeq+1 when nothing is retained)

	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced whenever lastSeq advances

	truncMu sync.Mutex // serialises Truncate

	// dictSink keeps the dictionary's prefetch from being optimised away; ids are the ids
	// dict.lookup found for the records being encoded.
	dictSink uint64
	ids      [dictPrefetch]uint32
	// dict is the ISIN dictionary of format-2 blocks (see dict.go).
	dict *dict

	// resident pages the value-log files out of the resident set (resident_linux.go);
	// residentMu serialises its passes.
	residentMu sync.Mutex
	resident   *residentTrimmer
	// syncer makes the DB's writes durable (filesync.go); nil in memory.
	syncer *fileSyncer

	// Owned by the writer goroutine (and by Open before it starts).
	sinceTrim int64 // block bytes written since the last resident-set trim
	nextSeq   uint64
	cumMaxTS  int64
	failed    error
	encs      []blockEncoder
	gathered  atomic.Int64 // records gathered for the current group (test hook)
}

// appendReq is one Append waiting for the writer.
type appendReq struct {
	msgs   []feed.Message
	source string
	pos    []byte
	hasPos bool
	first  uint64
	err    error
	done   chan struct{}
}

// Open opens (creating if needed) the log in opts.Dir and recovers its sequence from the last
// block. A corrupt last block fails Open with a *CorruptionError unless opts.Repair is set.
func Open(opts Options) (*Log, error) {
	opts = opts.withDefaults()
	if opts.Dir == "" && !opts.InMemory {
		return nil, errors.New("wal: open: Options.Dir is empty")
	}
	if opts.Sync < SyncBatch || opts.Sync > SyncNone {
		return nil, fmt.Errorf("wal: open: invalid sync mode %d", int(opts.Sync))
	}
	db, err := openBadger(opts)
	if err != nil {
		return nil, fmt.Errorf("wal: open badger in %q: %w", opts.Dir, err)
	}
	l := &Log{
		opts:    opts,
		db:      db,
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
		reqs:    make(chan *appendReq, 1024),
		notify:  make(chan struct{}),
		dict:    newDict(),
	}
	if !opts.InMemory {
		var trim func() int64
		if opts.ResidentTrimBytes > 0 {
			l.resident = newResidentTrimmer(opts.Dir)
			trim = l.TrimResident
		}
		l.syncer = newFileSyncer(opts.Dir, trim)
	}
	l.pool.New = func() any { return &appendReq{done: make(chan struct{}, 1)} }
	if err := l.dict.load(db, opts.Repair, opts.Logger.Warn); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := l.recover(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if opts.Repair {
		// What repair deleted stays deleted.
		if err := l.persist(); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("wal: open: after repair: %w", err)
		}
	}
	go l.run()
	return l, nil
}

// recover finds the first and last block and sets the sequence state.
func (l *Log) recover() error {
	if l.opts.Repair {
		if err := l.repair(); err != nil {
			return err
		}
	}
	var first, last uint64
	var lastHdr blockHeader
	var found bool
	err := l.db.View(func(txn *badger.Txn) error {
		fwd := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefixBlock)})
		fwd.Rewind()
		if fwd.Valid() {
			found = true
			first, _ = parseBlockKey(fwd.Item().Key())
		}
		fwd.Close()
		if !found {
			return nil
		}
		rit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefixBlock), Reverse: true})
		defer rit.Close()
		// Reverse Rewind would seek to the bare prefix; seek past every block key instead.
		rit.Seek(blockKey(^uint64(0)))
		if !rit.Valid() {
			return errors.New("block vanished during recovery")
		}
		item := rit.Item()
		key := item.KeyCopy(nil)
		seq, ok := parseBlockKey(key)
		if !ok {
			return &CorruptionError{Key: key, Err: errors.New("malformed block key")}
		}
		return item.Value(func(v []byte) error {
			h, err := decodeHeader(v, seq)
			if err != nil {
				return &CorruptionError{Seq: seq, Key: key, Kept: seq - 1,
					Err: fmt.Errorf("last block: %w (open with Repair to drop it)", err)}
			}
			lastHdr = h
			return nil
		})
	})
	if err != nil {
		var ce *CorruptionError
		if errors.As(err, &ce) {
			return err
		}
		return fmt.Errorf("wal: recover sequence: %w", err)
	}
	if !found {
		l.nextSeq = 1
		l.firstSeq.Store(1)
		return nil
	}
	last = lastHdr.lastSeq()
	l.nextSeq = last + 1
	l.cumMaxTS = lastHdr.CumMaxTS
	l.lastSeq.Store(last)
	l.firstSeq.Store(first)
	return nil
}

// Close stops the writer (appends already handed to it are completed), and closes the DB.
// Appends and reads after Close fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	close(l.closing)
	<-l.stopped
	err := l.db.Close() // syncs every file it closes
	if l.syncer != nil {
		l.syncer.close()
	}
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("wal: close badger: %w", err)
	}
	return nil
}

// acquire takes the shared lock for an operation on the DB; release with l.mu.RUnlock.
func (l *Log) acquire() error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// DB returns the Badger database. Other packages keep their own key prefixes in it (see
// ARCHITECTURE.md); the Log owns it and closes it in Close.
func (l *Log) DB() *badger.DB { return l.db }

// Dir returns the log's directory ("" in memory). Files without Badger's suffixes (.sst,
// .vlog, .mem) are left alone by Badger: the pipeline keeps its checkpoint file there.
func (l *Log) Dir() string { return l.opts.Dir }

// Sync makes everything appended so far, and every other write to DB() that has returned,
// durable, whatever the sync mode.
func (l *Log) Sync() error {
	if err := l.acquire(); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	return l.sync(false)
}

// Persist makes every write to DB() that has returned as durable as the sync mode makes
// appends: it syncs in SyncBatch and SyncAlways and does nothing in SyncNone. Badger runs
// without SyncWrites (see the package doc), so the packages that keep their own keys in
// DB() call it after each write they rely on surviving a kernel crash or power loss, before
// they act on it.
func (l *Log) Persist() error {
	if l.opts.Sync == SyncNone {
		return nil
	}
	return l.Sync()
}

// persist is Persist for the log's own writes (the caller holds l.mu).
func (l *Log) persist() error {
	if l.opts.Sync == SyncNone {
		return nil
	}
	return l.sync(false)
}

// sync runs (or joins) a sync of the DB's files, unmapping their pages first with trim;
// nothing to do in memory.
func (l *Log) sync(trim bool) error {
	if l.syncer == nil {
		return nil
	}
	return l.syncer.sync(trim)
}

// LastSeq returns the last acknowledged sequence, 0 if the log is empty. Readers never go
// beyond it.
func (l *Log) LastSeq() uint64 { return l.lastSeq.Load() }

// FirstSeq returns the first sequence still retained, or LastSeq()+1 if nothing is (1 for an
// empty log).
func (l *Log) FirstSeq() uint64 { return l.firstSeq.Load() }

// Append appends msgs as consecutive records and returns the sequence of the first one, once
// they are durable per the sync mode. Concurrent appends are group-committed into one Badger
// write; the records of one Append are always consecutive and written atomically. With no
// messages nothing is written and first is the sequence the next record will get. It sets
// each message's Ref (feed.Message.Ref) to what its record was written with.
func (l *Log) Append(msgs []feed.Message) (first uint64, err error) {
	return l.append(msgs, "", nil, false)
}

// AppendFrom is Append that also records pos as the position of source, in the same atomic
// Badger write as the records: after a crash, SourcePosition(source) tells exactly how far the
// source got into the log (resumable replay). pos may be written with no messages.
func (l *Log) AppendFrom(msgs []feed.Message, source string, pos []byte) (first uint64, err error) {
	if source == "" {
		return 0, errors.New("wal: append from: empty source name")
	}
	return l.append(msgs, source, pos, true)
}

func (l *Log) append(msgs []feed.Message, source string, pos []byte, hasPos bool) (uint64, error) {
	p, err := l.start(msgs, source, pos, hasPos)
	if err != nil {
		return 0, err
	}
	return p.Wait()
}

// PendingAppend is an append handed to the writer by StartAppend, until Wait.
type PendingAppend struct {
	l *Log
	r *appendReq
}

// StartAppend hands msgs to the writer like AppendFrom (Append when source is ""), and
// returns at once: the records are durable per the sync mode when the PendingAppend's Wait
// returns, which must be called exactly once. Appends started one after another are
// written in that order; those that reach the writer while it writes (and, in SyncBatch
// and SyncAlways, syncs) an earlier group are written together, with one sync. So a bulk
// producer that starts its next append before the last one is durable (replay) pays one
// sync per several batches, where Append, waiting for each, pays one per batch. msgs must
// not be read or modified until Wait returns (the writer sets each message's Ref).
func (l *Log) StartAppend(msgs []feed.Message, source string, pos []byte) (PendingAppend, error) {
	return l.start(msgs, source, pos, source != "")
}

func (l *Log) start(msgs []feed.Message, source string, pos []byte, hasPos bool) (PendingAppend, error) {
	if err := l.acquire(); err != nil {
		return PendingAppend{}, err
	}
	r := l.pool.Get().(*appendReq)
	r.msgs, r.source, r.pos, r.hasPos = msgs, source, pos, hasPos
	l.reqs <- r // the writer keeps receiving until closing, which needs l.mu exclusively
	l.mu.RUnlock()
	return PendingAppend{l: l, r: r}, nil
}

// Wait blocks until the append is durable (or failed) and returns the sequence of its first
// record, as Append does.
func (p PendingAppend) Wait() (first uint64, err error) {
	r := p.r
	<-r.done
	first, err = r.first, r.err
	*r = appendReq{done: r.done}
	p.l.pool.Put(r)
	return first, err
}

// Wait blocks until LastSeq() > after, ctx is done (its error is returned) or the log is
// closed (ErrClosed).
func (l *Log) Wait(ctx context.Context, after uint64) error {
	for {
		l.notifyMu.Lock()
		ch := l.notify
		l.notifyMu.Unlock()
		if l.LastSeq() > after {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.closing:
			return ErrClosed
		}
	}
}

// publish advances lastSeq and wakes waiters.
func (l *Log) publish(last uint64) {
	l.lastSeq.Store(last)
	l.notifyMu.Lock()
	close(l.notify)
	l.notify = make(chan struct{})
	l.notifyMu.Unlock()
}

// run is the writer goroutine: it gathers appends into groups and commits each group as one
// Badger transaction.
func (l *Log) run() {
	defer close(l.stopped)
	var (
		batch     []*appendReq
		lastWrite time.Time
		n         int
	)
	add := func(r *appendReq) {
		batch = append(batch, r)
		n += len(r.msgs)
		l.gathered.Store(int64(n))
	}
	for {
		batch, n = batch[:0], 0
		select {
		case r := <-l.reqs:
			add(r)
		case <-l.closing:
			for {
				select {
				case r := <-l.reqs:
					add(r)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				l.commit(batch)
			}
			return
		}
		if l.opts.Sync == SyncBatch {
			if wait := lastWrite.Add(l.opts.BatchInterval).Sub(l.opts.Clock.Now()); wait > 0 && n < l.opts.BatchFullRecords {
				t := l.opts.Clock.Timer(wait)
			gather:
				for n < l.opts.BatchFullRecords {
					select {
					case r := <-l.reqs:
						add(r)
					case <-t.C:
						break gather
					case <-l.closing:
						break gather
					}
				}
				t.Stop()
			}
		}
	drain:
		for n < l.opts.MaxGroupRecords {
			select {
			case r := <-l.reqs:
				add(r)
			default:
				break drain
			}
		}
		lastWrite = l.opts.Clock.Now()
		l.commit(batch)
	}
}

// commit writes one group as one Badger transaction and acknowledges its appends.
func (l *Log) commit(batch []*appendReq) {
	defer func() {
		l.gathered.Store(0)
		for _, r := range batch {
			r.done <- struct{}{}
		}
	}()
	if l.failed != nil {
		for _, r := range batch {
			r.err = l.failed
		}
		return
	}
	txn := l.db.NewTransaction(true)
	defer txn.Discard()
	seq := l.nextSeq
	cum := l.cumMaxTS
	nblocks := 0
	var cur *blockEncoder
	var err error
	flush := func() {
		if cur == nil || cur.count == 0 || err != nil {
			return
		}
		var v []byte
		v, cum = cur.finish(cum)
		l.sinceTrim += int64(len(v))
		if e := txn.Set(blockKey(cur.first), v); e != nil {
			err = fmt.Errorf("wal: stage block at seq %d: %w", cur.first, e)
		}
		cur = nil
	}
	for _, r := range batch {
		r.first = seq
		for i := range r.msgs {
			if i%dictPrefetch == 0 {
				l.dictSink += l.dict.lookup(r.msgs[i:min(i+dictPrefetch, len(r.msgs))], &l.ids)
			}
			if cur == nil {
				if nblocks == len(l.encs) {
					l.encs = append(l.encs, blockEncoder{})
				}
				cur = &l.encs[nblocks]
				nblocks++
				cur.reset(seq)
				cur.dict = l.dict
			}
			if id := cur.addWithID(&r.msgs[i], l.ids[i%dictPrefetch]); id != noID {
				r.msgs[i].Ref = id + 1
			} else {
				r.msgs[i].Ref = 0
			}
			seq++
			if cur.size() >= l.opts.MaxBlockBytes {
				flush()
			}
		}
	}
	flush()
	if err == nil {
		// New ids written ahead of the group are synced before it: a block never survives a
		// power loss without the ids it uses.
		err = l.dict.stage(l.db, txn, l.persist)
	}
	writes := nblocks > 0
	for _, r := range batch {
		if r.hasPos && err == nil {
			writes = true
			if e := txn.Set(positionKey(r.source), r.pos); e != nil {
				err = fmt.Errorf("wal: stage position of %q: %w", r.source, e)
			}
		}
	}
	if err == nil && writes {
		if e := txn.Commit(); e != nil {
			err = fmt.Errorf("wal: commit seqs %d-%d: %w", l.nextSeq, seq-1, e)
		} else if l.opts.Sync != SyncNone {
			trim := l.sinceTrim >= syncTrimBytes
			if trim {
				l.sinceTrim = 0
			}
			if e := l.sync(trim); e != nil {
				err = fmt.Errorf("wal: sync seqs %d-%d: %w", l.nextSeq, seq-1, e)
			}
		}
	}
	if err != nil {
		l.failed = fmt.Errorf("%w: %w", ErrFailed, err)
		l.opts.Logger.Error("wal: write failed; appends refused until reopen", "err", err)
		for _, r := range batch {
			r.err, r.first = err, 0
		}
		return
	}
	if seq != l.nextSeq {
		l.nextSeq = seq
		l.cumMaxTS = cum
		l.publish(seq - 1)
	}
	// (The durable modes' syncs trim as they go.)
	if l.resident != nil && l.opts.Sync == SyncNone && l.sinceTrim >= l.opts.ResidentTrimBytes {
		l.sinceTrim = 0
		l.TrimResident()
	}
}

// TrimResident asks the kernel to take the log's value-log files out of the process's
// resident set (see Options.ResidentTrimBytes); the writer does it by itself as it writes,
// callers after reading much of the log (recovery). It returns the bytes of mappings
// advised (0 where unsupported or disabled).
func (l *Log) TrimResident() int64 {
	if l.resident == nil {
		return 0
	}
	l.residentMu.Lock()
	defer l.residentMu.Unlock()
	return l.resident.trim()
}

// openBadger opens the Badger DB. A process killed right after Badger created a memtable or
// value-log file, before writing to it, leaves a 0-byte file that makes the next Open fail
// with ristretto's z.NewFile ("Create a new file"): that failed Open has by then sized the
// file, and a second Open succeeds (Badger issue #2207). So that error is retried once.
func openBadger(opts Options) (*badger.DB, error) {
	db, err := badger.Open(opts.badgerOptions())
	if err != nil && (errors.Is(err, z.NewFile) || strings.Contains(err.Error(), z.NewFile.Error())) {
		opts.Logger.Warn("badger found an empty file left by a crash; opening again", "dir", opts.Dir, "err", err)
		db, err = badger.Open(opts.badgerOptions())
	}
	return db, err
}
