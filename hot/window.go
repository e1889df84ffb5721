package hot

import (
	"math"
	"unsafe"
)

// entry is one observed quote: its time (Unix ns) and price (micro-units).
type entry struct {
	ts    int64
	price int64
}

// word is the integer type of a stored point: int32 in compact windows, int64 in wide ones.
type word interface{ ~int32 | ~int64 }

// point is an entry as a window stores it: its time as a key of the window's domain and its
// price relative to the window's price base. A compact window's points are 8 bytes (the
// windows of 50,000 instruments at one quote a second hold 16 million of them), a wide
// window's 16.
type point[T word] struct {
	key   T
	price T
}

// msNanos is the time unit of compact windows.
const msNanos = int64(1e6)

// domain converts times to a window's keys and back. Wide windows' keys are the times
// themselves; compact windows' are whole milliseconds since the detector's time base, so a
// compact window holds only quotes whose time is a whole millisecond (the partner's feed
// has millisecond timestamps) within ±24 days of the base. The conversion keeps order and
// comparisons: for a point of time t and any time c, t ≤ c exactly when key(t) ≤ key(c)
// (keys of times that are not points round down).
type domain struct {
	compact bool
	tbase   int64 // a whole millisecond
}

// key returns the key of time t: floor((t − tbase) / 1 ms) in a compact domain.
func (dm domain) key(t int64) int64 {
	if !dm.compact {
		return t
	}
	d, ok := subChecked(t, dm.tbase)
	if !ok {
		if t < dm.tbase {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	q := d / msNanos
	if d%msNanos < 0 {
		q--
	}
	return q
}

// time returns the time of key k (a point's key).
func (dm domain) time(k int64) int64 {
	if !dm.compact {
		return k
	}
	return dm.tbase + k*msNanos
}

// pointKey returns the compact key of t, and whether t can be a compact point: a whole
// millisecond within the int32 range of keys.
func (dm domain) pointKey(t int64) (int32, bool) {
	d, ok := subChecked(t, dm.tbase)
	if !ok || d%msNanos != 0 {
		return 0, false
	}
	k := d / msNanos
	if k != int64(int32(k)) {
		return 0, false
	}
	return int32(k), true
}

// subChecked returns a − b and whether it did not overflow.
func subChecked(a, b int64) (int64, bool) {
	d := a - b
	return d, (d < a) == (b > 0)
}

// window is the history of one incarnation: a ring buffer of points sorted by (time,
// processing order), holding every quote newer than (newest time − window − lateness) plus
// the newest one at or before that horizon (the oldest possible reference). Keys and
// cutoffs passed to its methods are of its domain.
//
// Pruning is logical: lh is the index of the oldest point still present, and the key of the
// point after it is kept in the header (next), so deciding whether a prune drops anything
// touches neither end of the ring. The points before lh are removed physically only when
// the ring is full and by Expire. Every read ignores them, so the results are exactly those
// of dropping them at once.
//
// A compact window's header is 64 bytes, one cache line (Detector.compact, once large, is
// page-aligned): each quote reads every field of it.
type window[T word] struct {
	buf  []point[T] // ring storage; len(buf) is the capacity
	head int32      // physical index of the oldest stored point
	n    int32      // number of points stored
	lh   int32      // logical index of the oldest present point; [0, lh) are pruned
	cur  int32      // logical index of the last reference found, lh − 1 when before the front
	next T          // key of the point at lh + 1, maxKey[T]() if none
	used bool       // the slot holds an incarnation
	hot  bool       // the last quote observed was hot
	// pe (compact windows): every price stored since the window was last empty is a
	// multiple of 10^pe, the price unit of its snapshot (maybe finer than the present
	// points need, once a finer price was pruned). Observe keeps it, so that a snapshot
	// does not read every point once more to find it.
	pe      byte
	lastSeq uint64 // sequence of the last quote observed
	pbase   int64  // a point's price is pbase + point.price
}

// maxKey is the largest key of T, the next of a window without a point after lh.
func maxKey[T word]() T { return T(^uint64(0) >> (65 - 8*unsafe.Sizeof(T(0)))) }

// idx maps a logical index (0 = oldest stored) to a physical one.
func (w *window[T]) idx(i int32) int32 {
	j := w.head + i
	if j >= int32(len(w.buf)) {
		j -= int32(len(w.buf))
	}
	return j
}

// at returns the point at logical index i.
func (w *window[T]) at(i int32) point[T] { return w.buf[w.idx(i)] }

// key returns the key of the point at logical index i.
func (w *window[T]) key(i int32) int64 { return int64(w.buf[w.idx(i)].key) }

// entry decodes the point at logical index i.
func (w *window[T]) entry(dm domain, i int32) entry {
	p := w.at(i)
	return entry{ts: dm.time(int64(p.key)), price: w.pbase + int64(p.price)}
}

// resize moves the stored points into fresh storage of capacity c ≥ n.
func (w *window[T]) resize(c int32) {
	w.buf, w.head = ringCopy(w.buf, w.head, w.n, c), 0
}

// ringCopy returns fresh storage of capacity c ≥ n holding, in order from index 0, the n
// elements of the ring buf that start at index head.
func ringCopy[P any](buf []P, head, n, c int32) []P {
	nb := make([]P, c)
	if n > 0 {
		end := head + n
		if end <= int32(len(buf)) {
			copy(nb, buf[head:end])
		} else {
			k := copy(nb, buf[head:])
			copy(nb[k:], buf[:end-int32(len(buf))])
		}
	}
	return nb
}

// grownCap is the capacity a full window of n points grows to when it has no better
// estimate (neededCap): 1/16 more (+8), as windows settle at a stable size, so the slack
// stays small. A restored window gets it at once: with the capacity of its points alone,
// every window would grow with its next quote.
func grownCap(n int32) int32 { return n + n/16 + 8 }

// setNext refreshes next after lh or the points around it changed.
func (w *window[T]) setNext() {
	if w.lh+1 < w.n {
		w.next = w.buf[w.idx(w.lh+1)].key
	} else {
		w.next = maxKey[T]()
	}
}

// neededCap is the capacity a full window of n points should grow to, given keep, the span
// of keys it keeps (window + lateness in its domain's unit): when its points span less
// than that, the window is still filling (a new instrument, the first minutes of a
// replay) and will hold about n × keep / span points, so it gets that (+3 %, at most 8×
// at once) in one step, instead of dozens of small steps that each copy it and leave
// garbage (two thirds of a replay's allocations). A full window (its rate went up, or
// varies around the estimate) or one without a span yet grows by grownCap.
func (w *window[T]) neededCap(keep int64) int32 {
	if w.n < 8 {
		return grownCap(w.n)
	}
	return neededCap(w.n, w.lh, w.key(w.n-1)-w.key(w.lh), keep)
}

// neededCap is the capacity of window.neededCap for a full window of n points, lh of them
// pruned, whose present points span span (in the unit of keep).
func neededCap(n, lh int32, span, keep int64) int32 {
	c := grownCap(n)
	if n < 8 || span <= 0 || span >= keep {
		return c
	}
	// The present points span span with n−lh−1 gaps: at that rate, keep takes
	// (n−lh−1) × keep / span gaps, one point more, and some margin for an irregular rate.
	est := float64(n-lh-1)*float64(keep)/float64(span) + 1
	est += est/32 + 4 + float64(lh)
	est = min(est, 8*float64(n))
	if est > float64(c) && est < math.MaxInt32 {
		c = int32(est)
	}
	return c
}

// insert places p after every present point with key ≤ p.key (so among equal times the
// later-processed quote is the later one), shifting the points after it by one: the cost is
// proportional to the displacement, O(1) for quotes in time order. keep is the span of
// keys the window keeps (neededCap).
func (w *window[T]) insert(p point[T], keep int64) {
	if w.n == int32(len(w.buf)) {
		w.drop()
		if w.n == int32(len(w.buf)) {
			w.resize(w.neededCap(keep))
		}
	}
	pos := w.n
	for pos > w.lh && w.at(pos-1).key > p.key {
		pos--
	}
	for i := w.n; i > pos; i-- {
		w.buf[w.idx(i)] = w.buf[w.idx(i-1)]
	}
	w.buf[w.idx(pos)] = p
	w.n++
	if pos <= w.cur {
		w.cur++
	}
	if pos <= w.lh+1 {
		w.setNext()
	}
}

// prune drops the points before the newest present one at or before horizon; they can no
// longer be the reference of a quote at or after horizon + window. Cost proportional to the
// points dropped; nothing but the header is read when none is.
func (w *window[T]) prune(horizon int64) {
	if int64(w.next) > horizon {
		return
	}
	for w.lh+1 < w.n && w.key(w.lh+1) <= horizon {
		w.lh++
	}
	w.setNext()
}

// expire is what Detector.Expire does to a window: prune before horizon, remove the pruned
// points and give back storage (shrink, given keep), all in the window's key unit.
func (w *window[T]) expire(horizon, keep int64) {
	w.prune(horizon)
	w.drop()
	w.shrink(keep)
}

// drop physically removes the pruned points.
func (w *window[T]) drop() {
	k := w.lh
	if k == 0 {
		return
	}
	for i := int32(0); i < k; i++ {
		w.buf[w.idx(i)] = point[T]{}
	}
	w.head = w.idx(k)
	w.n -= k
	w.lh = 0
	w.cur -= k
	if w.cur < -1 {
		w.cur = -1
	}
}

// reference returns the logical index of the newest present point with key ≤ cutoff. It
// starts from the previous answer, so for quotes in time order it moves forward a step or
// so: O(1) amortised.
func (w *window[T]) reference(cutoff int64) (int32, bool) {
	c := w.cur
	if c >= w.n {
		c = w.n - 1
	}
	if c < w.lh-1 {
		c = w.lh - 1
	}
	for c+1 < w.n && w.key(c+1) <= cutoff {
		c++
	}
	for c >= w.lh && w.key(c) > cutoff {
		c--
	}
	w.cur = c
	return c, c >= w.lh
}

// shrink gives back storage of a window that shrank a lot (after drop). keep is the span
// of keys the window keeps (neededCap): a window still filling keeps the room neededCap
// gave it for its whole span. (Shrinking those too made every window of a new ingest
// shrink at its first minute close — a quarter full at 2 quotes a second — and grow back
// within seconds: at 100,000 instruments ~700 MB allocated at once, and a heavy live
// ingest fell behind while the collector caught up.)
func (w *window[T]) shrink(keep int64) {
	if c, ok := shrunkCap(int32(len(w.buf)), w.n, w.neededCap(keep)); ok {
		w.resize(c)
	}
}

// shrunkCap returns the capacity a window of capacity c holding n points shrinks to, and
// whether it shrinks: one a quarter full or less gives back half or more, keeping needed
// (its neededCap).
func shrunkCap(c, n, needed int32) (int32, bool) {
	if c > 32 && n < c/4 {
		if s := max(2*n+8, needed); s <= c/2 {
			return s, true
		}
	}
	return 0, false
}

// reset empties w for a new incarnation, keeping its storage unless drop is set.
func (w *window[T]) reset(drop bool) {
	buf := w.buf
	if drop {
		buf = nil
	}
	clear(buf)
	*w = window[T]{buf: buf}
}

// convert copies the present points of src, from domain from, into dst in domain to with
// price base pbase, and the header; ok is false (dst unchanged) when a point does not fit
// dst's domain or word. src's pruned points are dropped on the way.
func convert[S, D word](dst *window[D], src *window[S], from, to domain, pbase int64) bool {
	entry := func(i int32) entry { return src.entry(from, src.lh+i) }
	return fill(dst, src.n-src.lh, entry, to, pbase, src.cur-src.lh, src.lastSeq, src.used, src.hot)
}

// fill makes dst hold the n entries entry(0), entry(1), … (asked for in that order) in
// domain to with price base pbase, its reference cursor at cur (−1 or less: before the
// front) and the given header fields; ok is false (dst unchanged) when an entry does not
// fit dst's domain or word.
func fill[D word](dst *window[D], n int32, entry func(i int32) entry, to domain, pbase int64, cur int32, lastSeq uint64, used, hot bool) bool {
	buf := dst.buf[:0:0]
	if int32(cap(dst.buf)) >= max(n, 8) {
		buf = dst.buf[:cap(dst.buf)]
	} else {
		buf = make([]point[D], max(n, 8))
	}
	for i := int32(0); i < n; i++ {
		e := entry(i)
		k := e.ts
		if to.compact {
			ck, ok := to.pointKey(e.ts)
			if !ok {
				return false
			}
			k = int64(ck)
		}
		p := e.price - pbase
		if int64(D(k)) != k || int64(D(p)) != p {
			return false
		}
		buf[i] = point[D]{key: D(k), price: D(p)}
	}
	clear(buf[n:])
	*dst = window[D]{buf: buf, n: n, cur: max(cur, -1), lastSeq: lastSeq, pbase: pbase, used: used, hot: hot}
	dst.setNext()
	if to.compact {
		_, dst.pe = windowUnits(dst, to) // only compact windows keep a unit
	}
	return true
}
