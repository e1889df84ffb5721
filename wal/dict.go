package wal

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// The ISIN dictionary of format-2 blocks: a record names its instrument by a small id
// instead of 12 bytes. Ids are dense, assigned by the writer in order of first use, and each
// new id is stored under d/ + be32(id) → ISIN in the same Badger transaction as the first
// block that uses it, so a block on disk never refers to an id that is not. Entries are
// never removed (retention keeps them; they cost ~20 bytes per distinct ISIN ever seen), and
// at most maxDictSize ISINs get an id: beyond, records carry the ISIN itself.
const (
	keyPrefixDict = "d/"
	maxDictSize   = 1 << 22
)

// dictKey returns "d/" + be32(id).
func dictKey(id uint32) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, len(keyPrefixDict)+4)}
	e.PutString(keyPrefixDict)
	e.PutBE32(id)
	return e.Get()
}

// dict is the log's ISIN dictionary. ids is the writer's (and Open's) only; names is read by
// every decoder through an atomic snapshot: the writer appends, then publishes, before the
// blocks using the new ids become visible (Log.publish), so a reader that can see a block
// can see its ids.
type dict struct {
	ids   feed.ISINMap[uint32]
	names atomic.Pointer[[]feed.ISIN]
	// fresh are the ids assigned for the group being written, staged with its blocks.
	fresh []uint32
}

func newDict() *dict {
	d := &dict{}
	d.names.Store(&[]feed.ISIN{})
	return d
}

// snapshot returns the names known now; index = id.
func (d *dict) snapshot() []feed.ISIN { return *d.names.Load() }

// id returns the id of isin, assigning the next one (recorded in fresh) if it has none; ok
// is false when the dictionary is full.
func (d *dict) id(isin *feed.ISIN) (uint32, bool) {
	if id, ok := d.ids.Get(isin); ok {
		return id, true
	}
	names := d.snapshot()
	if len(names) >= maxDictSize {
		return 0, false
	}
	id := uint32(len(names))
	names = append(names, *isin)
	d.names.Store(&names)
	d.ids.Put(isin, id)
	d.fresh = append(d.fresh, id)
	return id, true
}

// dictPrefetch is how many records' ids dict.lookup finds ahead of encoding them.
const dictPrefetch = 32

// noID marks a record whose ISIN had no id when dict.lookup looked (ids are < maxDictSize).
const noID = ^uint32(0)

// lookup finds the ids of the first dictPrefetch of msgs' ISINs, for the encoder: packed
// once, their table slots touched in one tight loop (feed.ISINMap.TouchPacked) so that the
// cache misses (a 1 MiB table at 50,000 instruments, one miss a record, 7 % of a replay's
// CPU when taken one at a time) overlap, then looked up. ids[i] is msgs[i]'s id, or noID
// when its ISIN has none yet (the encoder assigns it: dict.id) or is not a valid one. The
// result means nothing; the caller keeps it so the loads are not optimised away.
func (d *dict) lookup(msgs []feed.Message, ids *[dictPrefetch]uint32) uint64 {
	var keys [dictPrefetch]uint64
	n := min(len(msgs), dictPrefetch)
	for i := range n {
		keys[i] = feed.PackISIN(&msgs[i].ISIN)
	}
	sink := d.ids.TouchPacked(keys[:n])
	for i, k := range keys[:n] {
		ids[i] = noID
		if k != 0 {
			if id, ok := d.ids.GetPacked(k); ok {
				ids[i] = id
			}
		}
	}
	return sink
}

// maxStagedIDs is how many new ids stage adds to a group's transaction at most: more
// (the first group of a new log holds every instrument's) would not fit Badger's cap on a
// transaction (15 % of wal.Options.MemTableSize, ~40 bytes an id), so they are written
// ahead of it (persist).
const maxStagedIDs = 1024

// stage adds the ids assigned since the last stage to txn, when they are few; else it
// writes them to db first, in write batches of their own, makes them durable with sync,
// and stages nothing. An id written without the blocks using it (a crash, or a failed
// transaction, in between) is harmless: ids stay dense, and the ISIN keeps its id when it
// comes again.
func (d *dict) stage(db *badger.DB, txn *badger.Txn, sync func() error) error {
	if len(d.fresh) > maxStagedIDs {
		if err := d.persist(db); err != nil {
			return err
		}
		if err := sync(); err != nil {
			return fmt.Errorf("wal: sync new ISIN ids: %w", err)
		}
		return nil
	}
	names := d.snapshot()
	for _, id := range d.fresh {
		isin := names[id]
		if err := txn.Set(dictKey(id), isin[:]); err != nil {
			return fmt.Errorf("wal: stage ISIN id %d: %w", id, err)
		}
	}
	d.fresh = d.fresh[:0]
	return nil
}

// persist writes the ids assigned since the last stage to db, in order (Badger applies
// a write batch's transactions in order, so a crash leaves a dense prefix of them).
func (d *dict) persist(db *badger.DB) error {
	names := d.snapshot()
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for _, id := range d.fresh {
		isin := names[id]
		if err := wb.Set(dictKey(id), isin[:]); err != nil {
			return fmt.Errorf("wal: write ISIN id %d: %w", id, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("wal: write %d new ISIN ids: %w", len(d.fresh), err)
	}
	d.fresh = d.fresh[:0]
	return nil
}

// load reads every stored entry. Ids must be dense from 0: a missing or malformed one is
// corruption (blocks referring to it could not be decoded). With repair, the entries from
// the first bad one on are deleted instead (blocks that use them then fail verification and
// are dropped by the repair that follows) and the rest is kept.
func (d *dict) load(db *badger.DB, repair bool, logWarn func(msg string, args ...any)) error {
	var names []feed.ISIN
	var bad [][]byte
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefixDict), PrefetchValues: true, PrefetchSize: 1000})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if bad != nil {
				bad = append(bad, item.KeyCopy(nil))
				continue
			}
			dk := encoding.NewDecbuf(item.Key()[len(keyPrefixDict):])
			id := dk.BE32()
			if dk.Done() != nil || id != uint32(len(names)) {
				if repair {
					bad = append(bad, item.KeyCopy(nil))
					continue
				}
				return &CorruptionError{Key: item.KeyCopy(nil), Err: fmt.Errorf("ISIN dictionary: expected id %d (open with Repair)", len(names))}
			}
			err := item.Value(func(v []byte) error {
				if len(v) != feed.ISINLen {
					return errors.New("ISIN dictionary: value is not 12 bytes")
				}
				var isin feed.ISIN
				copy(isin[:], v)
				names = append(names, isin)
				return nil
			})
			if err != nil {
				if repair {
					bad = append(bad, item.KeyCopy(nil))
					continue
				}
				return &CorruptionError{Key: item.KeyCopy(nil), Err: fmt.Errorf("%w (open with Repair)", err)}
			}
		}
		return nil
	})
	if err != nil {
		var ce *CorruptionError
		if errors.As(err, &ce) {
			return err
		}
		return fmt.Errorf("wal: load ISIN dictionary: %w", err)
	}
	if len(bad) > 0 {
		wb := db.NewWriteBatch()
		for _, k := range bad {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return fmt.Errorf("wal: repair ISIN dictionary: %w", err)
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("wal: repair ISIN dictionary: %w", err)
		}
		logWarn("wal: repaired corrupt ISIN dictionary", "idsKept", len(names), "entriesDropped", len(bad))
	}
	d.ids = feed.ISINMap[uint32]{}
	for i := range names {
		d.ids.Put(&names[i], uint32(i))
	}
	d.names.Store(&names)
	return nil
}
