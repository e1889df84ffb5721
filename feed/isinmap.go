package feed

import (
	"iter"

	"github.com/quotesdev/quotes/internal/intmap"
)

// ISINMap maps ISINs to values of type V, for the tables looked up once per record (the
// WAL's ISIN dictionary, the aggregator's active incarnations). A Go map hashing and
// comparing [12]byte keys generically cost more there than the rest of the work; a valid
// ISIN packs into one uint64 (PackISIN), so the table is an intmap.Map of 16-byte slots
// (about 1 MiB for 50,000 instruments). Anything that is not a valid ISIN (never produced
// by the decoder) goes to a plain map instead. The zero ISINMap is empty and ready to use;
// it is not safe for concurrent use.
type ISINMap[V any] struct {
	m     intmap.Map[V]
	other map[ISIN]V
}

// Get returns the value of isin and whether it is present.
func (t *ISINMap[V]) Get(isin *ISIN) (V, bool) {
	k := PackISIN(isin)
	if k == 0 {
		v, ok := t.other[*isin]
		return v, ok
	}
	return t.m.Get(k)
}

// Put sets the value of isin.
func (t *ISINMap[V]) Put(isin *ISIN, v V) {
	k := PackISIN(isin)
	if k == 0 {
		if t.other == nil {
			t.other = make(map[ISIN]V)
		}
		t.other[*isin] = v
		return
	}
	t.m.Put(k, v)
}

// Delete removes isin, if present.
func (t *ISINMap[V]) Delete(isin *ISIN) {
	k := PackISIN(isin)
	if k == 0 {
		delete(t.other, *isin)
		return
	}
	t.m.Delete(k)
}

// Len returns the number of entries.
func (t *ISINMap[V]) Len() int { return t.m.Len() + len(t.other) }

// Values yields every value, in no particular order.
func (t *ISINMap[V]) Values() iter.Seq[V] {
	return func(yield func(V) bool) {
		for _, v := range t.m.All() {
			if !yield(v) {
				return
			}
		}
		for _, v := range t.other {
			if !yield(v) {
				return
			}
		}
	}
}

// GetPacked is Get for an ISIN already packed (PackISIN, not 0), for a prefetch pass
// that packed a group's ISINs once for TouchPacked and its look-ups.
func (t *ISINMap[V]) GetPacked(k uint64) (V, bool) { return t.m.Get(k) }

// TouchPacked brings the table slots of packed ISINs into the cache (intmap.Map.Touch).
// The result means nothing; callers accumulate it so the reads are not optimised away.
func (t *ISINMap[V]) TouchPacked(keys []uint64) uint64 { return t.m.Touch(keys) }
