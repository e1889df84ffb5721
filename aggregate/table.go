package aggregate

import "github.com/quotesdev/quotes/feed"

// isinTable maps ISINs to active incarnations. It replaces a Go map on the per-quote path,
// where hashing and comparing a [12]byte key generically, and a larger table, cost more
// than all the rest of Apply at 50,000 instruments. A valid ISIN (12 × [A-Z0-9], 36^12 <
// 2^63) packs into one uint64, so a slot is 16 bytes and the table for 50,000 instruments
// stays around 1 MiB: open addressing, linear probing, backward-shift deletion, load ≤ 0.8.
// Anything that is not a valid ISIN (never produced by the feed decoder) goes to a plain
// map instead. Iteration order is never observable: callers sort.
type isinTable struct {
	slots []isinSlot
	shift uint8 // 64 − log2(len(slots))
	n     int   // entries in slots
	other map[feed.ISIN]*incarnation
}

type isinSlot struct {
	key uint64 // packed ISIN + 1; 0: empty
	inc *incarnation
}

// base36 maps a byte to its base-36 digit value ('0'–'9' → 0–9, 'A'–'Z' → 10–35), or to
// 0xff for any other byte.
const base36 = "" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\xff\xff\xff\xff\xff\xff" +
	"\xff\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x20\x21\x22\x23\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"

// packISIN returns the base-36 value of isin plus one, or 0 if isin is not valid.
func packISIN(isin *feed.ISIN) uint64 {
	var v uint64
	var bad byte
	for _, c := range isin {
		d := base36[c]
		bad |= d
		v = v*36 + uint64(d)
	}
	if bad&0x80 != 0 {
		return 0
	}
	return v + 1
}

// home returns the first slot to probe for key k (Fibonacci hashing: the top bits of the
// product depend on every character).
func (t *isinTable) home(k uint64) uint64 { return (k * 0x9e3779b97f4a7c15) >> t.shift }

// get returns the incarnation of isin, or nil.
func (t *isinTable) get(isin *feed.ISIN) *incarnation {
	k := packISIN(isin)
	if k == 0 {
		return t.other[*isin]
	}
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == k {
			return s.inc
		}
		if s.key == 0 {
			return nil
		}
	}
}

// put sets the incarnation of isin (inc != nil).
func (t *isinTable) put(isin *feed.ISIN, inc *incarnation) {
	k := packISIN(isin)
	if k == 0 {
		if t.other == nil {
			t.other = make(map[feed.ISIN]*incarnation)
		}
		t.other[*isin] = inc
		return
	}
	if 5*(t.n+1) > 4*len(t.slots) {
		t.grow()
	}
	t.insert(k, inc)
}

func (t *isinTable) insert(k uint64, inc *incarnation) {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == 0 {
			*s = isinSlot{key: k, inc: inc}
			t.n++
			return
		}
		if s.key == k {
			s.inc = inc
			return
		}
	}
}

// del removes isin, if present.
func (t *isinTable) del(isin *feed.ISIN) {
	k := packISIN(isin)
	if k == 0 {
		delete(t.other, *isin)
		return
	}
	if t.n == 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := t.home(k)
	for ; ; i = (i + 1) & mask {
		if t.slots[i].key == k {
			break
		}
		if t.slots[i].key == 0 {
			return
		}
	}
	// Backward shift: pull later entries of the probe run into the hole unless their home
	// slot lies cyclically in (hole, j].
	for j := (i + 1) & mask; t.slots[j].key != 0; j = (j + 1) & mask {
		home := t.home(t.slots[j].key)
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = isinSlot{}
	t.n--
}

func (t *isinTable) grow() {
	old := t.slots
	size, bits := 64, uint8(6)
	for 5*(t.n+1) > 2*size { // after growing, load ≤ 0.4
		size, bits = size*2, bits+1
	}
	t.slots = make([]isinSlot, size)
	t.shift = 64 - bits
	t.n = 0
	for _, s := range old {
		if s.key != 0 {
			t.insert(s.key, s.inc)
		}
	}
}

// len returns the number of entries.
func (t *isinTable) len() int { return t.n + len(t.other) }

// each calls f for every entry, in no particular order.
func (t *isinTable) each(f func(*incarnation)) {
	for i := range t.slots {
		if t.slots[i].key != 0 {
			f(t.slots[i].inc)
		}
	}
	for _, inc := range t.other {
		f(inc)
	}
}
