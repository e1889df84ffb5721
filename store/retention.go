package store

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
)

// DeleteCandlesBefore removes the stored candles whose minute is before `before`
// (retention of the embedded store) and returns how many. A candle the outbox still holds
// an undelivered item for (a closed state or a late correction some registered consumer
// has not delivered yet) is kept, whatever its age: it goes once delivered.
//
// It visits only the candles it deletes plus one key per incarnation (keys are ordered by
// ISIN, incarnation, minute: after the first kept minute it seeks to the next incarnation),
// and the undelivered part of the outbox. Once a pass has run, the Store knows the oldest
// minute it holds, and a pass with nothing before it returns at once.
func (s *Store) DeleteCandlesBefore(before int64) (int, error) {
	s.lowMu.Lock()
	if s.lowKnown && s.low >= before {
		s.lowMu.Unlock()
		return 0, nil
	}
	// Writes during the scan lower s.low; the scan's own minimum is merged into it below.
	s.low, s.lowKnown = math.MaxInt64, false
	s.lowMu.Unlock()
	held, err := s.undeliveredCandles()
	if err != nil {
		return 0, err
	}
	var keys [][]byte
	low := int64(math.MaxInt64) // oldest minute that stays
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixCandle
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); {
			k := it.Item().Key()
			if len(k) != candleKeySize {
				return fmt.Errorf("%w: candle key of %d bytes", ErrCorrupt, len(k))
			}
			if m := int64(binary.BigEndian.Uint64(k[candleKeySize-8:])); m >= before {
				low = min(low, m)
				// The rest of this incarnation is younger: on to the next one.
				next := append([]byte(nil), k[:candleKeySize-8]...)
				inc := binary.BigEndian.Uint64(next[len(prefixCandle)+feed.ISINLen:])
				if inc == ^uint64(0) {
					it.Seek(append(next, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
					continue
				}
				binary.BigEndian.PutUint64(next[len(prefixCandle)+feed.ISINLen:], inc+1)
				it.Seek(next)
				continue
			}
			if !held[string(k)] {
				keys = append(keys, it.Item().KeyCopy(nil))
			} else {
				low = min(low, int64(binary.BigEndian.Uint64(k[candleKeySize-8:])))
			}
			it.Next()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: scan candles for retention: %w", err)
	}
	n, err := s.deleteKeys(keys, "delete candles")
	if err == nil {
		s.lowMu.Lock()
		s.low, s.lowKnown = min(s.low, low), true
		s.lowMu.Unlock()
	}
	return n, err
}

// deleteKeys deletes keys (in writes of at most maxEntriesPerWrite) and returns how many;
// what names the operation in errors.
func (s *Store) deleteKeys(keys [][]byte, what string) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	w := s.newBatchWriter()
	defer w.cancel()
	for _, k := range keys {
		if err := w.delete(k); err != nil {
			return 0, fmt.Errorf("store: %s: %w", what, err)
		}
	}
	if err := w.flush(); err != nil {
		return 0, fmt.Errorf("store: %s: %w", what, err)
	}
	return len(keys), nil
}

// undeliveredCandles returns the candle keys of the outbox items some registered consumer
// has not delivered (tags above the lowest watermark, up to Applied()).
func (s *Store) undeliveredCandles() (map[string]bool, error) {
	applied, err := s.Applied()
	if err != nil {
		return nil, err
	}
	cs, err := s.Consumers()
	if err != nil {
		return nil, err
	}
	low := applied
	for _, wm := range cs {
		low = min(low, wm)
	}
	held := map[string]bool{}
	err = s.ScanOutbox(low+1, applied, func(it *OutboxItem) (bool, error) {
		if it.Kind == OutboxClosed || it.Kind == OutboxLate {
			held[string(candleKey(aggregate.Key{ISIN: it.Candle.ISIN, Incarnation: it.Candle.Incarnation, Minute: it.Candle.Minute}))] = true
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return held, nil
}
