package wal

import (
	"context"

	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/internal/encoding"
)

// WatermarkKey returns the Badger key of consumer name's watermark ("m/" + name), so another
// package can write its watermark with EncodeWatermark inside its own transaction, atomically
// with its data.
func WatermarkKey(name string) []byte { return append([]byte(keyPrefixWatermark), name...) }

// EncodeWatermark returns the stored form of a watermark (big-endian uint64).
func EncodeWatermark(seq uint64) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, 8)}
	e.PutBE64(seq)
	return e.Get()
}

// DecodeWatermark parses a value written by EncodeWatermark. Its error matches
// encoding.ErrCorrupt.
func DecodeWatermark(v []byte) (uint64, error) {
	d := encoding.NewDecbuf(v)
	seq := d.BE64()
	if err := d.Done(); err != nil {
		return 0, fmt.Errorf("wal: watermark value has %d bytes, want 8: %w", len(v), err)
	}
	return seq, nil
}

// positionKey returns "p/" + source.
func positionKey(source string) []byte { return append([]byte(keyPrefixPosition), source...) }

// SetWatermark records seq as consumer name's watermark: by convention the last sequence the
// consumer has fully processed (so it needs seq+1 onwards). It is as durable as an append in
// the log's sync mode.
func (l *Log) SetWatermark(name string, seq uint64) error {
	if err := l.acquire(); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	err := l.db.Update(func(txn *badger.Txn) error {
		return txn.Set(WatermarkKey(name), EncodeWatermark(seq))
	})
	if err == nil {
		err = l.persist()
	}
	if err != nil {
		return fmt.Errorf("wal: set watermark %q: %w", name, err)
	}
	return nil
}

// Watermark returns consumer name's watermark, 0 if it has none.
func (l *Log) Watermark(name string) (uint64, error) {
	v, ok, err := l.get(WatermarkKey(name))
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("wal: watermark %q: %w", name, err)
		}
		return 0, err
	}
	seq, err := DecodeWatermark(v)
	if err != nil {
		return 0, fmt.Errorf("wal: watermark %q: %w", name, err)
	}
	return seq, nil
}

// Watermarks returns every consumer's watermark.
func (l *Log) Watermarks() (map[string]uint64, error) {
	if err := l.acquire(); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	out := map[string]uint64{}
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefixWatermark), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			name := string(it.Item().Key()[len(keyPrefixWatermark):])
			err := it.Item().Value(func(v []byte) error {
				seq, err := DecodeWatermark(v)
				out[name] = seq
				return err
			})
			if err != nil {
				return fmt.Errorf("%q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wal: list watermarks: %w", err)
	}
	return out, nil
}

// SourcePosition returns the position last recorded for source by AppendFrom.
func (l *Log) SourcePosition(source string) (pos []byte, ok bool, err error) {
	pos, ok, err = l.get(positionKey(source))
	if err != nil {
		err = fmt.Errorf("wal: position of %q: %w", source, err)
	}
	return pos, ok, err
}

func (l *Log) get(key []byte) ([]byte, bool, error) {
	if err := l.acquire(); err != nil {
		return nil, false, err
	}
	defer l.mu.RUnlock()
	var v []byte
	err := l.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// truncateChunk is how many block keys Truncate deletes per Badger batch.
const truncateChunk = 4096

// Truncate deletes the blocks that lie entirely below before, then runs Badger value-log GC
// until it finds nothing more to reclaim. It never deletes a record with Seq >= before, and
// never the block holding LastSeq (which keeps the sequence recoverable), so FirstSeq()
// afterwards is the first sequence of the block holding min(before, LastSeq()).
//
// Disk space comes back in value-log files (Options.ValueLogFileSize), once Badger's
// compaction has seen the deletions: retention lags by about a memtable flush.
func (l *Log) Truncate(before uint64) error {
	if err := l.acquire(); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	l.truncMu.Lock()
	defer l.truncMu.Unlock()
	before = min(before, l.LastSeq())
	deleted := false
	for {
		first := l.FirstSeq()
		if before <= first {
			break
		}
		var keys [][]byte
		newFirst := first
		err := l.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefixBlock), PrefetchValues: false})
			defer it.Close()
			var prev []byte
			for it.Seek(blockKey(first)); it.Valid() && len(keys) < truncateChunk; it.Next() {
				seq, ok := parseBlockKey(it.Item().Key())
				if !ok {
					return &CorruptionError{Key: it.Item().KeyCopy(nil), Err: errors.New("malformed block key")}
				}
				if prev != nil {
					if seq > before {
						break
					}
					keys = append(keys, prev) // prev's block ends at seq-1 < before
					newFirst = seq
				}
				prev = it.Item().KeyCopy(nil)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("wal: truncate before %d: %w", before, err)
		}
		if len(keys) == 0 {
			break
		}
		// Publish the new start first, so a reader that finds a block gone knows why.
		l.firstSeq.Store(newFirst)
		wb := l.db.NewWriteBatch()
		for _, k := range keys {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return fmt.Errorf("wal: truncate before %d: delete block: %w", before, err)
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("wal: truncate before %d: delete blocks: %w", before, err)
		}
		// Durable before the next, later blocks' deletes: a power loss must not leave
		// these behind, with a gap after them.
		if err := l.persist(); err != nil {
			return fmt.Errorf("wal: truncate before %d: %w", before, err)
		}
		deleted = true
	}
	if deleted {
		l.gcLocked()
	}
	return nil
}

// gcLocked runs value-log GC until Badger finds no file worth rewriting.
func (l *Log) gcLocked() {
	if l.opts.InMemory {
		return
	}
	for i := 0; i < 64; i++ {
		err := l.db.RunValueLogGC(l.opts.GCDiscardRatio)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			l.opts.Logger.Warn("wal: value-log GC failed", "err", err)
		}
		return
	}
}

// Retain runs retention until ctx is done or the log is closed: every `every` (on the
// injected clock) it calls Truncate(keep()). keep returns the first sequence any consumer
// still needs, typically the minimum over consumers of watermark+1, lowered further for data
// kept on purpose (e.g. the hot window: SeqAtTime(now-window)). Errors are logged and
// retention goes on; Retain returns ctx.Err() or ErrClosed.
func (l *Log) Retain(ctx context.Context, keep func() uint64, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("wal: retain: interval %v must be positive", every)
	}
	t := l.opts.Clock.Ticker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.closing:
			return ErrClosed
		case <-t.C:
			if err := l.Truncate(keep()); err != nil {
				if errors.Is(err, ErrClosed) {
					return err
				}
				l.opts.Logger.Error("wal: retention", "err", err)
			}
		}
	}
}

// repair verifies every block in order and deletes the first corrupt or missing one and
// everything after it, logging what was dropped.
func (l *Log) repair() error {
	var expect uint64 // next expected first seq; 0 until the first block
	var bad []byte
	var badErr error
	var drop [][]byte
	var blocks int
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefixBlock), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if bad != nil {
				drop = append(drop, item.KeyCopy(nil))
				continue
			}
			key := item.KeyCopy(nil)
			first, ok := parseBlockKey(key)
			if !ok {
				bad, badErr = key, errors.New("malformed block key")
				drop = append(drop, key)
				continue
			}
			if expect != 0 && first != expect {
				bad, badErr = key, fmt.Errorf("%w: expected a block at seq %d, next one starts at %d", errGap, expect, first)
				drop = append(drop, key)
				continue
			}
			err := item.Value(func(v []byte) error {
				_, h, err := decodeBlock(v, first, nil, l.dict.snapshot())
				if err == nil {
					expect = h.lastSeq() + 1
				}
				return err
			})
			if err != nil {
				bad, badErr = key, err
				drop = append(drop, key)
				continue
			}
			blocks++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("wal: repair: scan: %w", err)
	}
	if bad == nil {
		return nil
	}
	badSeq, _ := parseBlockKey(bad)
	wb := l.db.NewWriteBatch()
	for _, k := range drop {
		if err := wb.Delete(k); err != nil {
			wb.Cancel()
			return fmt.Errorf("wal: repair: delete: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("wal: repair: delete: %w", err)
	}
	kept := uint64(0)
	if expect > 0 {
		kept = expect - 1
	}
	l.opts.Logger.Warn("wal: repaired corrupt log",
		"corruptBlockSeq", badSeq, "cause", badErr.Error(), "blocksKept", blocks,
		"keptUpToSeq", kept, "blocksDropped", len(drop))
	return nil
}
