// Package store is the embedded candle store: closed 1-minute candles and hot events, kept in
// the same Badger database as the write-ahead log so that a flush of derived data and the WAL
// sequence it reflects commit together.
//
// Key layout (see ARCHITECTURE.md for the whole key space):
//
//	c/ ISIN(12) incarnation(be64) minute(be64, Unix ns)  → candle state (format 2: encodeCandle)
//	h/ id(be64)                                          → hot event
//	s/applied                                            → be64 WAL sequence the store reflects
//	o/ tag(be64) idx(be32)                               → outbox item for the other sinks
//	x/ consumer /wm|/epoch|/intent                       → an outbox consumer's position
//
// The outbox (outbox.go) carries closed candles, late corrections, instrument changes and hot
// events to the sinks besides this store (export.Consumer), exactly once, from the same
// flush.
//
// Exactly-once: every item written carries the sequence of the WAL record that produced it,
// and Apply writes the batch's last sequence as the store's watermark in the same
// transaction as the non-idempotent writes (late corrections merge into what is stored). A
// recovery that re-derives items from the WAL skips those at or below Applied().
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/internal/encoding"
)

var (
	prefixCandle  = []byte("c/")
	prefixEvent   = []byte("h/")
	keyApplied    = []byte("s/applied")
	candleKeySize = len(prefixCandle) + feed.ISINLen + 8 + 8
)

// ErrCorrupt means a stored value could not be decoded. It also matches
// encoding.ErrCorrupt.
var ErrCorrupt = encoding.NewCorruptSentinel("store: corrupt value")

// Store reads and writes candles and hot events in a Badger DB it does not own. There is one
// Store per DB (the pipeline's): it caches a bound on what the DB holds.
type Store struct {
	db      *badger.DB
	persist func() error // makes the DB's writes durable (never nil)

	// low bounds the minutes of the stored candles from below when lowKnown (math.MaxInt64:
	// none stored), so that a retention pass with nothing old enough to delete costs
	// nothing; every candle write lowers it. Unknown until the first retention pass.
	lowMu    sync.Mutex
	low      int64
	lowKnown bool

	// consumers is whether an outbox consumer is registered (HasConsumers), kept up to date
	// by the methods that register and remove them.
	consumers atomic.Bool
}

// New returns a Store over db (usually wal.Log.DB()). persist is called after every write
// and must make it durable (wal.Log.Persist, for a DB without SyncWrites); nil when db's
// writes need nothing more (a DB with SyncWrites, in memory, or one whose durability does
// not matter).
func New(db *badger.DB, persist func() error) *Store {
	if persist == nil {
		persist = func() error { return nil }
	}
	s := &Store{db: db, persist: persist}
	// A store without candles (a new data directory) knows its bound from the start.
	_ = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixCandle})
		defer it.Close()
		if it.Rewind(); !it.Valid() {
			s.low, s.lowKnown = math.MaxInt64, true
		}
		return nil
	})
	_ = s.refreshConsumers()
	return s
}

// HasConsumers reports whether an outbox consumer is registered. While none is, the
// pipeline writes no outbox items: a consumer registered later starts with what the outbox
// holds then, and retention would remove them unread anyway.
func (s *Store) HasConsumers() bool { return s.consumers.Load() }

// refreshConsumers re-reads whether a consumer is registered.
func (s *Store) refreshConsumers() error {
	cs, err := s.Consumers()
	if err != nil {
		return err
	}
	s.consumers.Store(len(cs) > 0)
	return nil
}

// lowerBound records that candles of minute m are being written.
func (s *Store) lowerBound(m int64) {
	s.lowMu.Lock()
	s.low = min(s.low, m)
	s.lowMu.Unlock()
}

// Batch is one flush: everything derived from WAL records up to Seq.
type Batch struct {
	// Seq is the last WAL sequence this batch reflects; it becomes Applied().
	Seq uint64
	// Closed are final states of minutes at their close: written as they are (idempotent).
	Closed []aggregate.Candle
	// Late are corrections for already closed minutes: merged into the stored state.
	Late []aggregate.Candle
	// LateSeqs, if set, are the sequences of the records that produced each of Late
	// (ascending). They let Apply merge a long run of corrections in several transactions
	// (maxLatesPerTxn), each ending at a record and moving Applied() to it; without them
	// all go in one, which Badger caps in size.
	LateSeqs []uint64
	// Events are hot events, keyed by their id (idempotent).
	Events []hot.Event
	// Outbox are the items for the other sinks (see ScanOutbox), keyed by (tag, idx):
	// idempotent puts. Hot events that go to the alert sinks are here too (OutboxHot), besides
	// Events.
	Outbox []OutboxItem
}

// Empty reports whether the batch writes nothing but the watermark.
func (b *Batch) Empty() bool {
	return len(b.Closed) == 0 && len(b.Late) == 0 && len(b.Events) == 0 && len(b.Outbox) == 0
}

// Reset empties the batch for reuse, keeping its buffers.
func (b *Batch) Reset() {
	b.Seq = 0
	b.Closed = b.Closed[:0]
	b.Late = b.Late[:0]
	b.LateSeqs = b.LateSeqs[:0]
	b.Events = b.Events[:0]
	b.Outbox = b.Outbox[:0]
}

// Apply writes the batch. Closed candles, events and outbox items are idempotent puts and go
// first, in write batches of at most maxEntriesPerWrite; the late merges and the watermark
// follow in one transaction (or, given LateSeqs, in transactions of at most
// maxLatesPerTxn merges, each moving the watermark to its last record), so a crash anywhere
// leaves Applied() at a point from which re-applying the same derived items gives the same
// result. Without late merges the watermark is the last put of the write batches.
func (s *Store) Apply(b *Batch) error {
	if len(b.Closed) > 0 || len(b.Events) > 0 || len(b.Outbox) > 0 {
		if len(b.Closed) > 0 {
			s.lowerBound(minMinute(b.Closed))
		}
		w := s.newBatchWriter()
		defer w.cancel()
		for i := range b.Closed {
			c := &b.Closed[i]
			if err := w.set(candleKey(c.Key), encodeCandle(c)); err != nil {
				return fmt.Errorf("store: write candle %s: %w", c.ISIN, err)
			}
		}
		for i := range b.Events {
			e := &b.Events[i]
			if err := w.set(eventKey(e.ID), encodeEvent(e)); err != nil {
				return fmt.Errorf("store: write hot event %d: %w", e.ID, err)
			}
		}
		for i := range b.Outbox {
			it := &b.Outbox[i]
			if err := w.set(OutboxKey(it.Tag, it.Idx), encodeOutbox(it)); err != nil {
				return fmt.Errorf("store: write outbox item %d/%d: %w", it.Tag, it.Idx, err)
			}
		}
		if len(b.Late) == 0 {
			// Nothing to merge: the watermark goes last in the same writes, which Badger
			// makes durable in order, so it never gets ahead of the items. (A transaction
			// that reads, as a merge is, first waits for every write in flight, the WAL's
			// appends and their fsyncs included.)
			if err := w.set(keyApplied, appliedValue(b.Seq)); err != nil {
				return fmt.Errorf("store: write applied seq %d: %w", b.Seq, err)
			}
		}
		if err := w.flush(); err != nil {
			return fmt.Errorf("store: flush closed candles: %w", err)
		}
		if len(b.Late) == 0 {
			return nil
		}
	}
	if len(b.Late) > 0 {
		s.lowerBound(minMinute(b.Late))
	}
	late, seqs := b.Late, b.LateSeqs
	if len(seqs) == len(late) {
		// Merges are not idempotent, so each transaction also moves Applied() to the last
		// record whose corrections it holds: a crash in between re-applies exactly the
		// records after it. (Everything else of the batch is written already, and writing
		// it again is harmless.)
		for len(late) > maxLatesPerTxn {
			n := maxLatesPerTxn
			for n > 0 && seqs[n-1] == seqs[n] {
				n-- // a record's corrections stay together
			}
			if n == 0 {
				break // one record with more: the single transaction below
			}
			if err := s.mergeLate(late[:n], seqs[n-1]); err != nil {
				return err
			}
			late, seqs = late[n:], seqs[n:]
		}
	}
	return s.mergeLate(late, b.Seq)
}

// maxEntriesPerWrite is how many sets or deletes the store sends to Badger in one write
// (batchWriter). The store shares Badger, and so its single writer goroutine, with the
// WAL: the minute that closes a candle per instrument (50,000 at the spec load, ~5 MB)
// written as one write held every WAL append behind it for ~200 ms, and with them the
// whole pipeline; retention's deletes and a backfill's candles run beside a live ingest
// too. In writes of 4,096 the appends get in between.
const maxEntriesPerWrite = 4096

// batchWriter writes idempotent sets and deletes in Badger write batches of at most
// maxEntriesPerWrite each.
type batchWriter struct {
	db      *badger.DB
	persist func() error
	wb      *badger.WriteBatch
	n       int
}

func (s *Store) newBatchWriter() *batchWriter {
	return &batchWriter{db: s.db, persist: s.persist, wb: s.db.NewWriteBatch()}
}

// room writes the staged entries first when there are maxEntriesPerWrite.
func (w *batchWriter) room() error {
	if w.n == maxEntriesPerWrite {
		if err := w.flush(); err != nil {
			return err
		}
		w.wb = w.db.NewWriteBatch()
	}
	w.n++
	return nil
}

// set stages a put.
func (w *batchWriter) set(k, v []byte) error {
	if err := w.room(); err != nil {
		return err
	}
	return w.wb.Set(k, v)
}

// delete stages a delete.
func (w *batchWriter) delete(k []byte) error {
	if err := w.room(); err != nil {
		return err
	}
	return w.wb.Delete(k)
}

// flush writes the staged entries and waits until they are written and durable (each
// write before the next: a power loss never keeps a later one without an earlier one).
func (w *batchWriter) flush() error {
	w.n = 0
	if err := w.wb.Flush(); err != nil {
		return err
	}
	return w.persist()
}

// update runs fn in a read-write transaction and makes its writes durable.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	if err := s.db.Update(fn); err != nil {
		return err
	}
	return s.persist()
}

// cancel drops the staged entries (after an error; harmless after flush).
func (w *batchWriter) cancel() { w.wb.Cancel() }

// maxLatesPerTxn is how many late corrections one transaction merges at most when their
// records are known (Batch.LateSeqs): well within Badger's cap on a transaction (15 % of
// wal.Options.MemTableSize) at ~120 bytes each.
const maxLatesPerTxn = 8192

// mergeLate merges late into the stored candles and sets Applied() to seq, atomically.
func (s *Store) mergeLate(late []aggregate.Candle, seq uint64) error {
	err := s.update(func(txn *badger.Txn) error {
		for i := range late {
			c := late[i]
			key := candleKey(c.Key)
			item, err := txn.Get(key)
			switch {
			case err == nil:
				var stored aggregate.Candle
				if err := item.Value(func(v []byte) error { return decodeCandle(v, &stored) }); err != nil {
					return err
				}
				stored.Key = c.Key
				stored.Merge(&c)
				c = stored
			case !errors.Is(err, badger.ErrKeyNotFound):
				return err
			}
			if err := txn.Set(key, encodeCandle(&c)); err != nil {
				return err
			}
		}
		return txn.Set(keyApplied, appliedValue(seq))
	})
	if err != nil {
		return fmt.Errorf("store: apply batch up to seq %d: %w", seq, err)
	}
	return nil
}

// appliedValue encodes seq as the value of keyApplied.
func appliedValue(seq uint64) []byte {
	var v encoding.Encbuf
	v.PutBE64(seq)
	return v.Get()
}

// Applied returns the WAL sequence the store reflects (0 for a new store).
func (s *Store) Applied() (uint64, error) {
	var seq uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyApplied)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			d := encoding.NewDecbuf(v)
			s := d.BE64()
			if err := d.Done(); err != nil {
				return fmt.Errorf("%w: watermark of %d bytes: %w", ErrCorrupt, len(v), err)
			}
			seq = s
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("store: read watermark: %w", err)
	}
	return seq, nil
}

// Candles returns the stored candles of one incarnation with from ≤ minute < to, oldest
// first.
func (s *Store) Candles(isin feed.ISIN, incarnation uint64, from, to int64) ([]aggregate.Candle, error) {
	var out []aggregate.Candle
	start := candleKey(aggregate.Key{ISIN: isin, Incarnation: incarnation, Minute: from})
	prefix := start[:candleKeySize-8]
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(start); it.Valid(); it.Next() {
			m := keyMinute(it.Item().Key())
			if m >= to {
				break
			}
			c := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: incarnation, Minute: m}}
			if err := it.Item().Value(func(v []byte) error { return decodeCandle(v, &c) }); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read candles of %s: %w", isin, err)
	}
	return out, nil
}

// CandleBefore returns the latest stored candle of the incarnation whose minute is before
// minute, if any: the previous close that gap filling starts from.
func (s *Store) CandleBefore(isin feed.ISIN, incarnation uint64, minute int64) (aggregate.Candle, bool, error) {
	var (
		c     aggregate.Candle
		found bool
	)
	seek := candleKey(aggregate.Key{ISIN: isin, Incarnation: incarnation, Minute: minute - 1})
	prefix := seek[:candleKeySize-8]
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.Reverse = true
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Seek(seek)
		if !it.Valid() {
			return nil
		}
		c.Key = aggregate.Key{ISIN: isin, Incarnation: incarnation, Minute: keyMinute(it.Item().Key())}
		found = true
		return it.Item().Value(func(v []byte) error { return decodeCandle(v, &c) })
	})
	if err != nil {
		return c, false, fmt.Errorf("store: read candle before %d of %s: %w", minute, isin, err)
	}
	return c, found, nil
}

// Events returns the stored hot events with id > afterID and TS ≥ since, in id order, at
// most limit of them (limit ≤ 0: all).
func (s *Store) Events(afterID uint64, since int64, limit int) ([]hot.Event, error) {
	var out []hot.Event
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixEvent
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(eventKey(afterID + 1)); it.Valid(); it.Next() {
			var e hot.Event
			if err := it.Item().Value(func(v []byte) error { return decodeEvent(v, &e) }); err != nil {
				return err
			}
			if e.TS < since {
				continue
			}
			out = append(out, e)
			if limit > 0 && len(out) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read hot events: %w", err)
	}
	return out, nil
}

// DeleteEventsBefore removes hot events whose TS is before ts (retention: events are kept
// at least as long as the hot window).
func (s *Store) DeleteEventsBefore(ts int64) error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixEvent
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var e hot.Event
			if err := it.Item().Value(func(v []byte) error { return decodeEvent(v, &e) }); err != nil {
				return err
			}
			if e.TS >= ts {
				continue
			}
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: scan hot events for retention: %w", err)
	}
	_, err = s.deleteKeys(keys, "delete hot events")
	return err
}

func candleKey(k aggregate.Key) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, candleKeySize)}
	e.PutBytes(prefixCandle)
	e.PutBytes(k.ISIN[:])
	e.PutBE64(k.Incarnation)
	e.PutBE64int64(k.Minute)
	return e.Get()
}

// parseCandleKey decodes a key made by candleKey.
func parseCandleKey(k []byte) (aggregate.Key, error) {
	var key aggregate.Key
	d := encoding.NewDecbuf(k)
	if string(d.Bytes(len(prefixCandle))) != string(prefixCandle) {
		d.Failf("not a candle key")
	}
	copy(key.ISIN[:], d.Bytes(feed.ISINLen))
	key.Incarnation = d.BE64()
	key.Minute = d.BE64int64()
	if err := d.Done(); err != nil {
		return aggregate.Key{}, fmt.Errorf("%w: candle key of %d bytes: %w", ErrCorrupt, len(k), err)
	}
	return key, nil
}

// keyMinute returns the minute of a candle key whose prefix (ISIN, incarnation) the
// iterator already matched.
func keyMinute(k []byte) int64 {
	d := encoding.NewDecbuf(k[candleKeySize-8:])
	return d.BE64int64()
}

func eventKey(id uint64) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, len(prefixEvent)+8)}
	e.PutBytes(prefixEvent)
	e.PutBE64(id)
	return e.Get()
}

// A candle state is stored in format 2 since issue 15 (Badger's tables are no longer
// compressed, and the fixed layout took 72 bytes where ~30 say the same):
//
//	format     1 B       2
//	Open       varint
//	High       varint    as High − Open
//	Low        varint    as Low − Open
//	Close      varint    as Close − Open
//	OpenTS     varint
//	CloseTS    varint    as CloseTS − OpenTS
//	OpenSeq    uvarint
//	CloseSeq   varint    as CloseSeq − OpenSeq
//	Quotes     uvarint
//
// (varint: zigzag, encoding/binary; differences wrap around in 64 bits, so any values round
// trip). Format 1, written before, is the nine fields as big-endian 8-byte words in the same
// order, exactly candleV1Size bytes; it is still read. A format-2 encoding that would be
// candleV1Size long gets one zero byte of padding, so the length tells the formats apart.
const (
	candleV1Size  = 9 * 8
	candleFormat2 = 2
	// candleMaxSize bounds a format-2 encoding: the format byte, nine varints, the padding.
	candleMaxSize = 1 + 9*binary.MaxVarintLen64 + 1
	// candleCap is the capacity to allocate for one: a candle of the partner's feed takes
	// ~30 bytes.
	candleCap = 40
)

func encodeCandle(c *aggregate.Candle) []byte {
	return appendCandle(make([]byte, 0, candleCap), c)
}

// appendCandle appends c's state in format 2 to b.
func appendCandle(b []byte, c *aggregate.Candle) []byte {
	start := len(b)
	e := encoding.Encbuf{B: b}
	e.PutByte(candleFormat2)
	e.PutVarint(int64(c.Open))
	e.PutVarint(int64(c.High - c.Open))
	e.PutVarint(int64(c.Low - c.Open))
	e.PutVarint(int64(c.Close - c.Open))
	e.PutVarint(c.OpenTS)
	e.PutVarint(c.CloseTS - c.OpenTS)
	e.PutUvarint(c.OpenSeq)
	e.PutVarint(int64(c.CloseSeq - c.OpenSeq))
	e.PutUvarint(c.Quotes)
	if e.Len()-start == candleV1Size {
		e.PutByte(0)
	}
	return e.Get()
}

// decodeCandle decodes a candle state (either format) into c's value fields (c.Key is left
// alone); on error c is unchanged.
func decodeCandle(v []byte, c *aggregate.Candle) error {
	d := encoding.NewDecbuf(v)
	t := *c
	if len(v) == candleV1Size {
		t.Open, t.High, t.Low, t.Close = feed.Price(d.BE64int64()), feed.Price(d.BE64int64()), feed.Price(d.BE64int64()), feed.Price(d.BE64int64())
		t.OpenTS, t.CloseTS = d.BE64int64(), d.BE64int64()
		t.OpenSeq, t.CloseSeq, t.Quotes = d.BE64(), d.BE64(), d.BE64()
	} else {
		if f := d.Byte(); f != candleFormat2 && d.Err() == nil {
			d.Failf("candle format %d", f)
		}
		t.Open = feed.Price(d.Varint())
		t.High = t.Open + feed.Price(d.Varint())
		t.Low = t.Open + feed.Price(d.Varint())
		t.Close = t.Open + feed.Price(d.Varint())
		t.OpenTS = d.Varint()
		t.CloseTS = t.OpenTS + d.Varint()
		t.OpenSeq = d.Uvarint()
		t.CloseSeq = t.OpenSeq + uint64(d.Varint())
		t.Quotes = d.Uvarint()
		if len(v) == candleV1Size+1 && d.Len() == 1 && d.Byte() != 0 {
			d.Failf("candle padding is not zero")
		}
	}
	if err := d.Done(); err != nil {
		return fmt.Errorf("%w: candle of %d bytes: %w", ErrCorrupt, len(v), err)
	}
	*c = t
	return nil
}

// eventSize: id, incarnation, ts, price, reference price, reference ts (8 bytes each,
// big-endian) + ISIN.
const eventSize = 6*8 + feed.ISINLen

func encodeEvent(ev *hot.Event) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, eventSize)}
	e.PutBE64(ev.ID)
	e.PutBE64(ev.Incarnation)
	e.PutBE64int64(ev.TS)
	e.PutBE64int64(int64(ev.Price))
	e.PutBE64int64(int64(ev.ReferencePrice))
	e.PutBE64int64(ev.ReferenceTS)
	e.PutBytes(ev.ISIN[:])
	return e.Get()
}

// decodeEvent decodes a hot event into e; on error e is unchanged.
func decodeEvent(v []byte, e *hot.Event) error {
	d := encoding.NewDecbuf(v)
	var t hot.Event
	t.ID, t.Incarnation, t.TS = d.BE64(), d.BE64(), d.BE64int64()
	t.Price, t.ReferencePrice, t.ReferenceTS = feed.Price(d.BE64int64()), feed.Price(d.BE64int64()), d.BE64int64()
	copy(t.ISIN[:], d.Bytes(feed.ISINLen))
	if err := d.Done(); err != nil {
		return fmt.Errorf("%w: hot event of %d bytes: %w", ErrCorrupt, len(v), err)
	}
	t.ChangePercent = hot.Change(t.Price, t.ReferencePrice)
	*e = t
	return nil
}

// ScanCandles calls fn for every stored candle, in key order (ISIN, incarnation, minute),
// deleted incarnations included. It is meant for exports, backfills and tests.
func (s *Store) ScanCandles(fn func(c aggregate.Candle) error) error {
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixCandle
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key, err := parseCandleKey(it.Item().Key())
			if err != nil {
				return err
			}
			c := aggregate.Candle{Key: key}
			if err := it.Item().Value(func(v []byte) error { return decodeCandle(v, &c) }); err != nil {
				return err
			}
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: scan candles: %w", err)
	}
	return nil
}

// PutCandles writes full candle states as they are, replacing what is stored under their
// keys (backfill: idempotent). Empty candles are skipped.
func (s *Store) PutCandles(cs []aggregate.Candle) error {
	if len(cs) > 0 {
		s.lowerBound(minMinute(cs))
	}
	w := s.newBatchWriter()
	defer w.cancel()
	for i := range cs {
		c := &cs[i]
		if c.Empty() {
			continue
		}
		if err := w.set(candleKey(c.Key), encodeCandle(c)); err != nil {
			return fmt.Errorf("store: put candle %s: %w", c.ISIN, err)
		}
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("store: put candles: %w", err)
	}
	return nil
}

// minMinute returns the smallest minute of cs (not empty).
func minMinute(cs []aggregate.Candle) int64 {
	m := int64(math.MaxInt64)
	for i := range cs {
		m = min(m, cs[i].Minute)
	}
	return m
}
