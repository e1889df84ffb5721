// Package intmap is a hash map from non-zero uint64 keys to values, for the tables looked up
// once per record (the aggregator's ISIN table, the hot detector's window index, the WAL's
// ISIN dictionary): a look-up hashes with one multiplication, no byte-array hashing or
// comparison, and usually touches one cache line.
//
// A Map is one slice of (key, value) slots: open addressing, linear probing, Fibonacci
// hashing (the top bits of key × 2^64/φ, so every bit of the key counts), backward-shift
// deletion (no tombstones: a probe ends at the first empty slot), load ≤ 0.8, grown to
// ≤ 0.4. With a uint64 key and a value of up to 8 bytes a slot is 16 bytes, so 50,000
// entries take 2 MiB at most.
//
// Key 0 is reserved: it marks an empty slot. Get and Delete of 0 find nothing; Put of 0
// panics. Callers whose keys can be 0 map them to another key or keep that entry aside.
//
// A Map is not safe for concurrent use.
package intmap

import "iter"

// Map maps non-zero uint64 keys to values of type V. The zero Map is empty and ready to use.
// Copying a Map copies a reference to its slots: use only one of the copies afterwards.
type Map[V any] struct {
	slots []slot[V]
	mask  uint64 // len(slots) − 1
	shift uint8  // 64 − log2(len(slots))
	n     int    // entries
}

type slot[V any] struct {
	key uint64 // 0: empty
	val V
}

// minSize (2^minBits) is the number of slots of a Map's first allocation.
const (
	minSize = 64
	minBits = 6
)

// home returns the first slot to probe for k.
func (m *Map[V]) home(k uint64) uint64 { return (k * fib) >> (m.shift & 63) }

// fib is 2^64/φ, odd: Fibonacci hashing.
const fib = 0x9e3779b97f4a7c15

// Get returns the value of k and whether k is present. Get(0) reports absent. It reads only
// the slots of k's probe run (usually one) and is kept small enough to be inlined, even
// inside a caller's small wrapper: cheap enough to call ahead of time only to bring those
// slots into the cache (a prefetch pass over a group of keys).
func (m *Map[V]) Get(k uint64) (v V, ok bool) {
	// i < len(m.slots) holds but for the zero Map (shift 0, no slots), and spares the
	// bounds check.
	for i := (k * fib) >> (m.shift & 63); i < uint64(len(m.slots)); i = (i + 1) & m.mask {
		s := &m.slots[i]
		if s.key == 0 { // also ends Get(0)
			break
		}
		if s.key == k {
			return s.val, true
		}
	}
	return
}

// Touch reads the home slot of each key and nothing else, to bring those slots into the
// cache ahead of the Gets that will need them. The reads are independent of each other and
// the loop is a few instructions a key, so the processor keeps many of their cache misses in
// flight at once, where a pass of Gets (a probe loop each, with its branches) overlaps only
// a few. The result means nothing; callers accumulate it so the reads are not optimised away.
func (m *Map[V]) Touch(keys []uint64) uint64 {
	var sink uint64
	for _, k := range keys {
		if i := m.home(k); i < uint64(len(m.slots)) {
			sink += m.slots[i].key
		}
	}
	return sink
}

// Put sets the value of k, adding k if absent. It panics if k is 0.
func (m *Map[V]) Put(k uint64, v V) {
	if k == 0 {
		panic("intmap: Put of the reserved key 0")
	}
	if 5*(m.n+1) > 4*len(m.slots) {
		m.grow()
	}
	m.insert(k, v)
}

// insert sets k to v; there is room for one more entry.
func (m *Map[V]) insert(k uint64, v V) {
	for i := m.home(k); ; i = (i + 1) & m.mask {
		s := &m.slots[i]
		if s.key == 0 {
			*s = slot[V]{key: k, val: v}
			m.n++
			return
		}
		if s.key == k {
			s.val = v
			return
		}
	}
}

// Delete removes k, if present. Delete(0) does nothing.
func (m *Map[V]) Delete(k uint64) {
	if m.n == 0 || k == 0 {
		return
	}
	mask := m.mask
	i := m.home(k)
	for ; ; i = (i + 1) & mask {
		if m.slots[i].key == k {
			break
		}
		if m.slots[i].key == 0 {
			return
		}
	}
	// Backward shift: pull later entries of the probe run into the hole unless their home
	// lies cyclically in (hole, j], where they would no longer be found.
	for j := (i + 1) & mask; m.slots[j].key != 0; j = (j + 1) & mask {
		home := m.home(m.slots[j].key)
		if (j-home)&mask >= (j-i)&mask {
			m.slots[i] = m.slots[j]
			i = j
		}
	}
	m.slots[i] = slot[V]{} // drops the value for the garbage collector too
	m.n--
}

// grow reallocates the slots so that one more entry leaves the load ≤ 0.4.
func (m *Map[V]) grow() {
	old := m.slots
	size, bits := minSize, uint8(minBits)
	for 5*(m.n+1) > 2*size {
		size, bits = size*2, bits+1
	}
	m.slots = make([]slot[V], size)
	m.mask, m.shift = uint64(size-1), 64-bits
	m.n = 0
	for i := range old {
		if old[i].key != 0 {
			m.insert(old[i].key, old[i].val)
		}
	}
}

// Len returns the number of entries.
func (m *Map[V]) Len() int { return m.n }

// All returns an iterator over the entries, in no particular order (slot order: it depends
// on the keys and on the history of the Map). The Map must not be changed while iterating.
func (m *Map[V]) All() iter.Seq2[uint64, V] {
	return func(yield func(uint64, V) bool) {
		for i := range m.slots {
			if s := &m.slots[i]; s.key != 0 && !yield(s.key, s.val) {
				return
			}
		}
	}
}
