package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The lifecycle of outbox consumers, beside their position (outbox.go):
//
//	x/ name /seen    → be64 Unix ns: the last time a process ran the consumer (its start, then
//	                   at most every ConsumerOptions.SeenEvery while it runs)
//	x/ name /ok      → be64 Unix ns: the last time it delivered a flush or found nothing to deliver
//	x/ name /target  → where it delivers (e.g. clickhouse://host:9000/db, no credentials)
//	x/ name /lost    → what retention dropped while it was stale (see ExpireConsumer)
//
// A consumer that no process has run for longer than a limit is stale: the engine reports
// it, and retention stops keeping the outbox for it (ExpireConsumer), so that a sink that
// was configured once and then dropped does not make the outbox grow without bound.

// consumerFields are every field a consumer has under x/name/.
var consumerFields = []string{"wm", "epoch", "intent", "seen", "ok", "target", "lost"}

// Lost is what retention dropped from the outbox for a stale consumer: the items with
// FirstTag ≤ tag ≤ LastTag, Items of them, whose event times (candle minutes, instrument
// and hot event times) span From…To (Unix ns). A backfill of [From, To+1m) recomputes them.
type Lost struct {
	Items             uint64
	FirstTag, LastTag uint64
	From, To          int64
}

// Empty reports whether nothing was lost.
func (l Lost) Empty() bool { return l.Items == 0 && l.LastTag == 0 }

func (l Lost) merge(o Lost) Lost {
	if l.Empty() {
		return o
	}
	if o.Empty() {
		return l
	}
	return Lost{Items: l.Items + o.Items, FirstTag: min(l.FirstTag, o.FirstTag), LastTag: max(l.LastTag, o.LastTag),
		From: min(l.From, o.From), To: max(l.To, o.To)}
}

func encodeLost(l Lost) []byte {
	b := binary.BigEndian.AppendUint64(nil, l.Items)
	b = binary.BigEndian.AppendUint64(b, l.FirstTag)
	b = binary.BigEndian.AppendUint64(b, l.LastTag)
	b = binary.BigEndian.AppendUint64(b, uint64(l.From))
	return binary.BigEndian.AppendUint64(b, uint64(l.To))
}

func decodeLost(v []byte) (Lost, error) {
	if len(v) != 40 {
		return Lost{}, fmt.Errorf("%w: lost record of %d bytes", ErrCorrupt, len(v))
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(v[i*8:]) }
	return Lost{Items: u(0), FirstTag: u(1), LastTag: u(2), From: int64(u(3)), To: int64(u(4))}, nil
}

// ConsumerInfo is everything the store knows about a registered consumer.
type ConsumerInfo struct {
	Name string
	// Watermark is the last tag delivered; HasIntent is set while a flush is in progress.
	Watermark uint64
	HasIntent bool
	// LastRun and LastSuccess are zero when never recorded (a consumer registered by an
	// older version).
	LastRun, LastSuccess time.Time
	Target               string
	Lost                 Lost
}

func decodeTime(name, field string, v []byte) (time.Time, error) {
	if len(v) != 8 {
		return time.Time{}, fmt.Errorf("%w: consumer %s %s of %d bytes", ErrCorrupt, name, field, len(v))
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(), nil
}

// ConsumerInfos returns every registered consumer (one with a watermark), by name.
func (s *Store) ConsumerInfos() ([]ConsumerInfo, error) {
	byName := map[string]*ConsumerInfo{}
	fields := map[string]map[string][]byte{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixConsumer
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key()[len(prefixConsumer):])
			i := strings.LastIndexByte(k, '/')
			if i <= 0 {
				continue
			}
			name, field := k[:i], k[i+1:]
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if fields[name] == nil {
				fields[name] = map[string][]byte{}
			}
			fields[name][field] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read consumers: %w", err)
	}
	for name, f := range fields {
		wm, ok := f["wm"]
		if !ok {
			continue // a leftover without a position is not registered
		}
		if len(wm) != 8 {
			return nil, fmt.Errorf("%w: consumer %s watermark of %d bytes", ErrCorrupt, name, len(wm))
		}
		ci := &ConsumerInfo{Name: name, Watermark: binary.BigEndian.Uint64(wm), Target: string(f["target"])}
		_, ci.HasIntent = f["intent"]
		if v, ok := f["seen"]; ok {
			if ci.LastRun, err = decodeTime(name, "seen", v); err != nil {
				return nil, err
			}
		}
		if v, ok := f["ok"]; ok {
			if ci.LastSuccess, err = decodeTime(name, "ok", v); err != nil {
				return nil, err
			}
		}
		if v, ok := f["lost"]; ok {
			if ci.Lost, err = decodeLost(v); err != nil {
				return nil, fmt.Errorf("consumer %s: %w", name, err)
			}
		}
		byName[name] = ci
	}
	out := make([]ConsumerInfo, 0, len(byName))
	for _, ci := range byName {
		out = append(out, *ci)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ConsumerInfo returns what the store knows about the consumer name; ok is false when it
// is not registered.
func (s *Store) ConsumerInfo(name string) (ConsumerInfo, bool, error) {
	all, err := s.ConsumerInfos()
	if err != nil {
		return ConsumerInfo{}, false, err
	}
	for _, ci := range all {
		if ci.Name == name {
			return ci, true, nil
		}
	}
	return ConsumerInfo{}, false, nil
}

// TouchConsumer records that the consumer name runs at t; success also records it as its
// last success (it delivered, or found nothing to deliver).
func (s *Store) TouchConsumer(name string, t time.Time, success bool) error {
	if err := checkConsumerName(name); err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
	err := s.update(func(txn *badger.Txn) error {
		if err := txn.Set(consumerKey(name, "seen"), v); err != nil {
			return err
		}
		if success {
			return txn.Set(consumerKey(name, "ok"), v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: record last run of consumer %s: %w", name, err)
	}
	return nil
}

// SetConsumerTarget records where the consumer name delivers (shown by `quotes sinks
// list`); it must not contain credentials.
func (s *Store) SetConsumerTarget(name, target string) error {
	if err := checkConsumerName(name); err != nil {
		return err
	}
	err := s.update(func(txn *badger.Txn) error { return txn.Set(consumerKey(name, "target"), []byte(target)) })
	if err != nil {
		return fmt.Errorf("store: record target of consumer %s: %w", name, err)
	}
	return nil
}

// RemoveConsumer forgets the consumer name entirely (position, intent, last run, target,
// lost record) and returns whether it was registered. Retention no longer keeps outbox
// items for it; registering it again starts from what the outbox holds then.
func (s *Store) RemoveConsumer(name string) (bool, error) {
	if err := checkConsumerName(name); err != nil {
		return false, err
	}
	found := false
	err := s.update(func(txn *badger.Txn) error {
		_, ok, err := getValue(txn, consumerKey(name, "wm"))
		if err != nil {
			return err
		}
		found = ok
		for _, f := range consumerFields {
			if err := txn.Delete(consumerKey(name, f)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: remove consumer %s: %w", name, err)
	}
	return found, s.refreshConsumers()
}

// ErrConsumerActive means the consumer ran after the caller decided it was stale.
var ErrConsumerActive = errors.New("store: consumer ran meanwhile")

// ExpireConsumer stops retention from keeping outbox items for the stale consumer name:
// provided its last run is still before staleBefore (a consumer that never recorded one is
// stale too), its watermark moves to Applied() (past its intent, if any), and what it had
// not delivered is added to its lost record, which it returns (empty when there was
// nothing to drop). A consumer that ran meanwhile is left alone (ErrConsumerActive).
func (s *Store) ExpireConsumer(name string, staleBefore time.Time) (Lost, error) {
	ci, ok, err := s.ConsumerInfo(name)
	if err != nil || !ok {
		return Lost{}, err
	}
	applied, err := s.Applied()
	if err != nil {
		return Lost{}, err
	}
	if !ci.LastRun.Before(staleBefore) {
		return Lost{}, fmt.Errorf("consumer %s: %w", name, ErrConsumerActive)
	}
	through := applied
	if ci.Watermark >= through {
		return Lost{}, nil
	}
	// What it loses, read outside the transaction below (items at or below Applied() never
	// change), so that the transaction's conflict set holds only the consumer's own keys.
	lost := Lost{From: math.MaxInt64, To: math.MinInt64}
	err = s.ScanOutbox(ci.Watermark+1, through, func(it *OutboxItem) (bool, error) {
		if lost.Items == 0 {
			lost.FirstTag = it.Tag
		}
		lost.Items++
		lost.LastTag = it.Tag
		var ts int64
		switch it.Kind {
		case OutboxInstrument:
			ts = it.Instrument.TS
		case OutboxHot:
			ts = it.Event.TS
		default:
			ts = it.Candle.Minute
		}
		lost.From, lost.To = min(lost.From, ts), max(lost.To, ts)
		return true, nil
	})
	if err != nil {
		return Lost{}, err
	}
	if lost.Items == 0 {
		lost = Lost{}
	}
	err = s.update(func(txn *badger.Txn) error {
		wm, ok, err := getValue(txn, consumerKey(name, "wm"))
		if err != nil || !ok {
			return err
		}
		if len(wm) != 8 || binary.BigEndian.Uint64(wm) != ci.Watermark {
			return fmt.Errorf("consumer %s: %w", name, ErrConsumerActive)
		}
		if seen, ok, err := getValue(txn, consumerKey(name, "seen")); err != nil {
			return err
		} else if ok && len(seen) == 8 && !time.Unix(0, int64(binary.BigEndian.Uint64(seen))).Before(staleBefore) {
			return fmt.Errorf("consumer %s: %w", name, ErrConsumerActive)
		}
		all := ci.Lost.merge(lost)
		if !all.Empty() {
			if err := txn.Set(consumerKey(name, "lost"), encodeLost(all)); err != nil {
				return err
			}
		}
		if err := txn.Delete(consumerKey(name, "intent")); err != nil {
			return err
		}
		return txn.Set(consumerKey(name, "wm"), binary.BigEndian.AppendUint64(nil, through))
	})
	if errors.Is(err, badger.ErrConflict) {
		err = fmt.Errorf("consumer %s: %w", name, ErrConsumerActive)
	}
	if err != nil {
		if errors.Is(err, ErrConsumerActive) {
			return Lost{}, err
		}
		return Lost{}, fmt.Errorf("store: expire consumer %s: %w", name, err)
	}
	return lost, nil
}

// OutboxSize returns the number of items in the outbox (keys only).
func (s *Store) OutboxSize() (int, error) { return s.CountOutbox(0, math.MaxUint64, 0) }
