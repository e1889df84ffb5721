package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
)

// The outbox is what the sinks besides the embedded store are fed from (ClickHouse, the
// alert sinks; the Parquet archive follows the WAL itself). Every closed candle, late
// correction, instrument registry change and hot event the pipeline derives is written to
// it in the same flush (Apply) as the store's own
// writes, under a key made of the WAL sequence of the record that produced it (its tag) and
// its index among that record's items (hot events: OutboxHotIdx + n, after the others):
//
//	o/ tag(be64) idx(be32)      → kind(1) payload
//	x/ name /wm                 → be64: the last tag the consumer name has delivered
//	x/ name /epoch              → be16: random, fixed at registration (flush ids, see Consumer)
//	x/ name /intent             → first(be64) last(be64) items(be32): the flush in progress
//
// Keys and contents depend on the WAL alone, whatever the batching: a recovery that
// re-derives items writes identical entries, so writing them again is harmless. A consumer
// reads only tags at or below Applied(): Apply commits the watermark after the outbox
// entries of the batch, so every item of a tag at or below it is present, and none of them
// changes any more. Retention (TrimOutbox) removes entries every registered consumer has
// delivered.
var (
	prefixOutbox   = []byte("o/")
	prefixConsumer = []byte("x/")
	outboxKeySize  = len(prefixOutbox) + 8 + 4
)

// OutboxKind is the type of an outbox item.
type OutboxKind uint8

// The outbox item kinds.
const (
	// OutboxClosed is the final state of a minute at its close.
	OutboxClosed OutboxKind = 1
	// OutboxLate is a late correction: a further partial state of a closed minute.
	OutboxLate OutboxKind = 2
	// OutboxInstrument is an instrument registry change.
	OutboxInstrument OutboxKind = 3
	// OutboxHot is a hot event (SPEC §4.5), for the alert sinks. Its payload starts with a
	// version byte (outboxHotVersion) so that the event encoding can evolve; the other kinds
	// are unchanged, so outboxes written before hot events existed read as they were.
	OutboxHot OutboxKind = 4
)

// OutboxHotIdx is the index of the first hot event among a record's outbox items: the
// record's candles and instrument events count up from 0, its hot events (normally one,
// the quote's own) from OutboxHotIdx, so both are deterministic however the pipeline
// batches, and a record's hot events come after its other items in key order.
const OutboxHotIdx uint32 = 1 << 31

// outboxHotVersion is the version of the hot event payload: event id, incarnation, ts,
// price, reference price, reference ts (be64 each), ISIN — the h/ encoding.
const outboxHotVersion = 1

func (k OutboxKind) String() string {
	switch k {
	case OutboxClosed:
		return "closed"
	case OutboxLate:
		return "late"
	case OutboxInstrument:
		return "instrument"
	case OutboxHot:
		return "hot"
	}
	return fmt.Sprintf("OutboxKind(%d)", uint8(k))
}

// InstrumentEvent is a change of the instrument registry: the ADD that starts an
// incarnation (New), an ADD of an active ISIN that changes its description, or the DELETE
// that ends an incarnation. ADDs that change nothing (every reconnect snapshot re-sends the
// active instruments) are not events.
type InstrumentEvent = aggregate.InstrumentEvent

// OutboxItem is one outbox entry.
type OutboxItem struct {
	// Tag is the WAL sequence of the record that produced the item, Idx its index among
	// that record's items.
	Tag uint64
	Idx uint32
	// Kind says which of Candle (OutboxClosed, OutboxLate), Instrument or Event (OutboxHot)
	// is set.
	Kind       OutboxKind
	Candle     aggregate.Candle
	Instrument InstrumentEvent
	Event      hot.Event
}

// OutboxKey returns the key of the item (tag, idx).
func OutboxKey(tag uint64, idx uint32) []byte {
	k := make([]byte, 0, outboxKeySize)
	k = append(k, prefixOutbox...)
	k = binary.BigEndian.AppendUint64(k, tag)
	return binary.BigEndian.AppendUint32(k, idx)
}

// outboxCandleHead: ISIN, incarnation, minute; the candle state follows (either format).
const outboxCandleHead = feed.ISINLen + 8 + 8

func encodeOutbox(it *OutboxItem) []byte {
	switch it.Kind {
	case OutboxClosed, OutboxLate:
		c := &it.Candle
		b := make([]byte, 0, 1+outboxCandleHead+candleCap)
		b = append(b, byte(it.Kind))
		b = append(b, c.ISIN[:]...)
		b = binary.BigEndian.AppendUint64(b, c.Incarnation)
		b = binary.BigEndian.AppendUint64(b, uint64(c.Minute))
		return appendCandle(b, c)
	case OutboxHot:
		b := make([]byte, 0, 2+eventSize)
		b = append(b, byte(OutboxHot), outboxHotVersion)
		return append(b, encodeEvent(&it.Event)...)
	default:
		e := &it.Instrument
		b := make([]byte, 0, 1+1+1+8+8+8+feed.ISINLen+len(e.Description))
		b = append(b, byte(OutboxInstrument), byte(e.Kind))
		if e.New {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.BigEndian.AppendUint64(b, e.Seq)
		b = binary.BigEndian.AppendUint64(b, uint64(e.TS))
		b = binary.BigEndian.AppendUint64(b, e.Incarnation)
		b = append(b, e.ISIN[:]...)
		return append(b, e.Description...)
	}
}

func decodeOutbox(k, v []byte, it *OutboxItem) error {
	if len(k) != outboxKeySize || len(v) < 1 {
		return fmt.Errorf("%w: outbox entry with a %d-byte key and a %d-byte value", ErrCorrupt, len(k), len(v))
	}
	*it = OutboxItem{
		Tag:  binary.BigEndian.Uint64(k[len(prefixOutbox):]),
		Idx:  binary.BigEndian.Uint32(k[len(prefixOutbox)+8:]),
		Kind: OutboxKind(v[0]),
	}
	v = v[1:]
	switch it.Kind {
	case OutboxClosed, OutboxLate:
		// Either format: candleMaxSize bounds format 1's candleV1Size too.
		if len(v) <= outboxCandleHead || len(v) > outboxCandleHead+candleMaxSize {
			return fmt.Errorf("%w: outbox candle of %d bytes", ErrCorrupt, len(v))
		}
		c := &it.Candle
		copy(c.ISIN[:], v)
		c.Incarnation = binary.BigEndian.Uint64(v[feed.ISINLen:])
		c.Minute = int64(binary.BigEndian.Uint64(v[feed.ISINLen+8:]))
		return decodeCandle(v[feed.ISINLen+16:], c)
	case OutboxInstrument:
		const fixed = 1 + 1 + 8 + 8 + 8 + feed.ISINLen
		if len(v) < fixed {
			return fmt.Errorf("%w: outbox instrument event of %d bytes", ErrCorrupt, len(v))
		}
		e := &it.Instrument
		e.Kind, e.New = feed.Kind(v[0]), v[1] == 1
		e.Seq = binary.BigEndian.Uint64(v[2:])
		e.TS = int64(binary.BigEndian.Uint64(v[10:]))
		e.Incarnation = binary.BigEndian.Uint64(v[18:])
		copy(e.ISIN[:], v[26:])
		e.Description = string(v[fixed:])
		return nil
	case OutboxHot:
		if len(v) < 1 || v[0] != outboxHotVersion {
			return fmt.Errorf("%w: outbox hot event of version %v (this build reads %d: written by a newer one?)", ErrCorrupt, v[:min(len(v), 1)], outboxHotVersion)
		}
		return decodeEvent(v[1:], &it.Event)
	}
	return fmt.Errorf("%w: outbox item of kind %d", ErrCorrupt, it.Kind)
}

// ScanOutbox calls fn for the outbox items with from ≤ tag ≤ to, in key order, until fn
// returns false or an error. The item is only valid during the call.
func (s *Store) ScanOutbox(from, to uint64, fn func(it *OutboxItem) (bool, error)) error {
	if from > to {
		return nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixOutbox
		it := txn.NewIterator(opts)
		defer it.Close()
		var item OutboxItem
		for it.Seek(OutboxKey(from, 0)); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) == outboxKeySize && binary.BigEndian.Uint64(k[len(prefixOutbox):]) > to {
				return nil
			}
			if err := it.Item().Value(func(v []byte) error { return decodeOutbox(k, v, &item) }); err != nil {
				return err
			}
			more, err := fn(&item)
			if err != nil || !more {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: read outbox from tag %d: %w", from, err)
	}
	return nil
}

// CountOutbox returns the number of outbox items with from ≤ tag ≤ to, stopping at limit
// (limit ≤ 0: no limit). It reads keys only.
func (s *Store) CountOutbox(from, to uint64, limit int) (int, error) {
	n := 0
	err := s.eachOutboxKey(from, to, func([]byte) bool {
		n++
		return limit <= 0 || n < limit
	})
	if err != nil {
		return 0, fmt.Errorf("store: count outbox: %w", err)
	}
	return n, nil
}

// CountOutboxHot returns the number of hot event items (OutboxHotIdx and above) with
// from ≤ tag ≤ to. It reads keys only.
func (s *Store) CountOutboxHot(from, to uint64) (int, error) {
	n := 0
	err := s.eachOutboxKey(from, to, func(k []byte) bool {
		if binary.BigEndian.Uint32(k[len(prefixOutbox)+8:]) >= OutboxHotIdx {
			n++
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("store: count hot events in the outbox: %w", err)
	}
	return n, nil
}

// eachOutboxKey calls fn with the key of every outbox item with from ≤ tag ≤ to, in key
// order, until fn returns false. It reads keys only.
func (s *Store) eachOutboxKey(from, to uint64, fn func(k []byte) bool) error {
	if from > to {
		return nil
	}
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixOutbox
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(OutboxKey(from, 0)); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != outboxKeySize {
				continue
			}
			if binary.BigEndian.Uint64(k[len(prefixOutbox):]) > to || !fn(k) {
				return nil
			}
		}
		return nil
	})
}

// TrimOutbox deletes the outbox items with tag ≤ through and returns how many.
func (s *Store) TrimOutbox(through uint64) (int, error) {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixOutbox
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) == outboxKeySize && binary.BigEndian.Uint64(k[len(prefixOutbox):]) > through {
				return nil
			}
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: scan outbox for retention: %w", err)
	}
	return s.deleteKeys(keys, "trim outbox")
}

// ConsumerState is the durable position of an outbox consumer.
type ConsumerState struct {
	// Watermark is the last tag delivered: the consumer reads from Watermark+1.
	Watermark uint64
	// Epoch is a random number in 1…32767 fixed when the consumer was registered in this data
	// directory; consumers mix it into their flush ids so that two data directories writing
	// to one sink do not reuse each other's ids.
	Epoch uint16
	// Intent is the flush in progress, if any (HasIntent).
	Intent    Intent
	HasIntent bool
}

// Intent is a planned flush: the outbox items with First ≤ tag ≤ Last, Items of them.
type Intent struct {
	First, Last uint64
	Items       uint32
}

// ErrConsumerName is returned for a consumer name outside [a-z0-9_-]{1,64}.
var ErrConsumerName = errors.New("store: consumer name must be 1-64 characters a-z, 0-9, _ or -")

func consumerKey(name, field string) []byte {
	return []byte(string(prefixConsumer) + name + "/" + field)
}

func checkConsumerName(name string) error {
	if len(name) == 0 || len(name) > 64 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
		return fmt.Errorf("%w: %q", ErrConsumerName, name)
	}
	return nil
}

// RegisterConsumer returns the state of the consumer name, registering it (watermark 0: it
// will deliver everything the outbox still holds — nothing if no consumer was registered
// before, see HasConsumers) when it is new. From then on, retention
// keeps the outbox items it has not delivered.
func (s *Store) RegisterConsumer(name string) (ConsumerState, error) {
	if err := checkConsumerName(name); err != nil {
		return ConsumerState{}, err
	}
	var st ConsumerState
	err := s.update(func(txn *badger.Txn) error {
		st = ConsumerState{}
		wm, ok, err := getValue(txn, consumerKey(name, "wm"))
		if err != nil {
			return err
		}
		if ok {
			if len(wm) != 8 {
				return fmt.Errorf("%w: consumer %s watermark of %d bytes", ErrCorrupt, name, len(wm))
			}
			st.Watermark = binary.BigEndian.Uint64(wm)
		} else if err := txn.Set(consumerKey(name, "wm"), make([]byte, 8)); err != nil {
			return err
		}
		ep, ok, err := getValue(txn, consumerKey(name, "epoch"))
		if err != nil {
			return err
		}
		if ok && len(ep) == 2 {
			st.Epoch = binary.BigEndian.Uint16(ep)
		} else {
			var b [2]byte
			for st.Epoch == 0 {
				if _, err := rand.Read(b[:]); err != nil {
					return err
				}
				st.Epoch = binary.BigEndian.Uint16(b[:]) & 0x7fff
			}
			if err := txn.Set(consumerKey(name, "epoch"), binary.BigEndian.AppendUint16(nil, st.Epoch)); err != nil {
				return err
			}
		}
		in, ok, err := getValue(txn, consumerKey(name, "intent"))
		if err != nil || !ok {
			return err
		}
		if len(in) != 20 {
			return fmt.Errorf("%w: consumer %s intent of %d bytes", ErrCorrupt, name, len(in))
		}
		st.HasIntent = true
		st.Intent = Intent{First: binary.BigEndian.Uint64(in), Last: binary.BigEndian.Uint64(in[8:]), Items: binary.BigEndian.Uint32(in[16:])}
		return nil
	})
	if err != nil {
		return ConsumerState{}, fmt.Errorf("store: register consumer %s: %w", name, err)
	}
	s.consumers.Store(true)
	return st, nil
}

func getValue(txn *badger.Txn, key []byte) ([]byte, bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := item.ValueCopy(nil)
	return v, err == nil, err
}

// SetIntent records the flush the consumer name is about to deliver. It is durable as the
// WAL's sync mode makes Badger writes.
func (s *Store) SetIntent(name string, in Intent) error {
	v := binary.BigEndian.AppendUint64(nil, in.First)
	v = binary.BigEndian.AppendUint64(v, in.Last)
	v = binary.BigEndian.AppendUint32(v, in.Items)
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(consumerKey(name, "intent"), v) }); err != nil {
		return fmt.Errorf("store: record intent of consumer %s: %w", name, err)
	}
	return nil
}

// CompleteIntent records, in one transaction, that the consumer name delivered everything
// through tag last: its watermark becomes last and its intent is removed.
func (s *Store) CompleteIntent(name string, last uint64) error {
	err := s.update(func(txn *badger.Txn) error {
		if err := txn.Set(consumerKey(name, "wm"), binary.BigEndian.AppendUint64(nil, last)); err != nil {
			return err
		}
		return txn.Delete(consumerKey(name, "intent"))
	})
	if err != nil {
		return fmt.Errorf("store: advance consumer %s to tag %d: %w", name, last, err)
	}
	return nil
}

// UnregisterConsumer forgets the consumer name: retention no longer keeps outbox items for
// it.
func (s *Store) UnregisterConsumer(name string) error {
	if err := checkConsumerName(name); err != nil {
		return err
	}
	err := s.update(func(txn *badger.Txn) error {
		for _, f := range []string{"wm", "epoch", "intent"} {
			if err := txn.Delete(consumerKey(name, f)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: unregister consumer %s: %w", name, err)
	}
	return s.refreshConsumers()
}

// Consumers returns the watermark of every registered consumer.
func (s *Store) Consumers() (map[string]uint64, error) {
	out := map[string]uint64{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixConsumer
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key()[len(prefixConsumer):])
			name, ok := strings.CutSuffix(k, "/wm")
			if !ok {
				continue
			}
			if err := it.Item().Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("%w: consumer %s watermark of %d bytes", ErrCorrupt, name, len(v))
				}
				out[name] = binary.BigEndian.Uint64(v)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read consumers: %w", err)
	}
	return out, nil
}

// TrimDelivered removes the outbox items every registered consumer has delivered — all of
// them when no consumer is registered, but never beyond Applied() — and returns how many.
func (s *Store) TrimDelivered() (int, error) {
	through, err := s.Applied()
	if err != nil {
		return 0, err
	}
	cs, err := s.Consumers()
	if err != nil {
		return 0, err
	}
	for _, wm := range cs {
		through = min(through, wm)
	}
	return s.TrimOutbox(through)
}
