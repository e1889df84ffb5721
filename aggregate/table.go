package aggregate

import (
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/intmap"
)

// isinTable maps ISINs to active incarnations. It replaces a Go map on the per-quote path,
// where hashing and comparing a [12]byte key generically, and a larger table, cost more
// than all the rest of Apply at 50,000 instruments. A valid ISIN packs into one uint64
// (feed.PackISIN), so the table is an intmap.Map of 16-byte slots, around 1 MiB for
// 50,000 instruments. Anything that is not a valid ISIN (never produced by the feed
// decoder) goes to a plain map instead. Iteration order is never observable: callers sort.
type isinTable struct {
	m     intmap.Map[*incarnation]
	other map[feed.ISIN]*incarnation
}

// get returns the incarnation of isin, or nil.
func (t *isinTable) get(isin *feed.ISIN) *incarnation {
	k := feed.PackISIN(isin)
	if k == 0 {
		return t.other[*isin]
	}
	inc, _ := t.m.Get(k)
	return inc
}

// put sets the incarnation of isin (inc != nil).
func (t *isinTable) put(isin *feed.ISIN, inc *incarnation) {
	k := feed.PackISIN(isin)
	if k == 0 {
		if t.other == nil {
			t.other = make(map[feed.ISIN]*incarnation)
		}
		t.other[*isin] = inc
		return
	}
	t.m.Put(k, inc)
}

// del removes isin, if present.
func (t *isinTable) del(isin *feed.ISIN) {
	k := feed.PackISIN(isin)
	if k == 0 {
		delete(t.other, *isin)
		return
	}
	t.m.Delete(k)
}

// len returns the number of entries.
func (t *isinTable) len() int { return t.m.Len() + len(t.other) }

// each calls f for every entry, in no particular order.
func (t *isinTable) each(f func(*incarnation)) {
	for _, inc := range t.m.All() {
		f(inc)
	}
	for _, inc := range t.other {
		f(inc)
	}
}
