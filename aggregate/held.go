package aggregate

import (
	"math"

	"github.com/quotesdev/quotes/feed"
)

// heldQuote is a quote that arrived while its ISIN was not active.
type heldQuote struct {
	ts    int64
	seq   uint64
	price feed.Price
}

// heldRef is an expiry-heap entry; it is stale once its quote was released or dropped.
type heldRef struct {
	ts   int64
	seq  uint64
	isin feed.ISIN
}

// heldQuotes holds quotes of inactive ISINs: per ISIN in sequence order, plus a min-heap
// by (ts, seq) to drop them when their grace runs out.
type heldQuotes struct {
	byISIN map[feed.ISIN][]heldQuote
	heap   []heldRef
	n      int // quotes held (not counting stale heap entries)
}

func (h *heldQuotes) push(isin feed.ISIN, q heldQuote) {
	h.byISIN[isin] = append(h.byISIN[isin], q)
	h.n++
	h.heap = append(h.heap, heldRef{ts: q.ts, seq: q.seq, isin: isin})
	h.up(len(h.heap) - 1)
}

// take removes and returns every quote held for isin, in sequence order.
func (h *heldQuotes) take(isin feed.ISIN) []heldQuote {
	qs := h.byISIN[isin]
	if len(qs) > 0 {
		delete(h.byISIN, isin)
		h.n -= len(qs)
	}
	return qs
}

// dropAll removes every held quote and returns how many there were.
func (h *heldQuotes) dropAll() int {
	n := h.n
	clear(h.byISIN)
	clear(h.heap)
	h.heap = h.heap[:0]
	h.n = 0
	return n
}

// expire removes the held quotes with ts < limit and returns how many.
func (h *heldQuotes) expire(limit int64) int {
	dropped := 0
	for len(h.heap) > 0 && h.heap[0].ts < limit {
		r := h.pop()
		qs := h.byISIN[r.isin]
		for i := range qs {
			if qs[i].seq == r.seq {
				if len(qs) == 1 {
					delete(h.byISIN, r.isin)
				} else {
					h.byISIN[r.isin] = append(qs[:i], qs[i+1:]...)
				}
				h.n--
				dropped++
				break
			}
		}
	}
	return dropped
}

func refLess(x, y *heldRef) bool { return before(x.ts, x.seq, y.ts, y.seq) }

func (h *heldQuotes) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !refLess(&h.heap[i], &h.heap[p]) {
			return
		}
		h.heap[i], h.heap[p] = h.heap[p], h.heap[i]
		i = p
	}
}

func (h *heldQuotes) pop() heldRef {
	r := h.heap[0]
	n := len(h.heap) - 1
	h.heap[0] = h.heap[n]
	h.heap = h.heap[:n]
	i := 0
	for {
		l, m := 2*i+1, i
		if l < n && refLess(&h.heap[l], &h.heap[m]) {
			m = l
		}
		if l+1 < n && refLess(&h.heap[l+1], &h.heap[m]) {
			m = l + 1
		}
		if m == i {
			return r
		}
		h.heap[i], h.heap[m] = h.heap[m], h.heap[i]
		i = m
	}
}

// hold holds back a quote of an inactive ISIN, or drops it at once if its grace has
// already run out.
func (a *Aggregator) hold(isin feed.ISIN, q heldQuote) {
	a.stats.HeldQuotes++
	if a.expired(q.ts) {
		a.stats.DroppedExpired++
		return
	}
	a.held.push(isin, q)
}

// expire drops the held quotes whose grace ran out at the current watermark.
func (a *Aggregator) expire() {
	if len(a.held.heap) == 0 || !a.hasWM || a.watermark < math.MinInt64+a.grace {
		return
	}
	a.stats.DroppedExpired += uint64(a.held.expire(a.watermark - a.grace))
}
