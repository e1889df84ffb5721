package hot

import (
	"math"

	"github.com/quotesdev/quotes/feed"
)

// maxFree bounds the number of forgotten windows whose storage is kept for reuse.
const maxFree = 256

// entry is one observed quote in a window: 16 bytes, no pointers.
type entry struct {
	ts    int64
	price int64
}

// window is the history of one incarnation: a ring buffer of entries sorted by (ts,
// processing order), holding every quote newer than (newest ts − window − lateness) plus the
// newest one at or before that horizon (the oldest possible reference).
//
// Pruning is logical: lh is the index of the oldest entry still present, and the ts of the
// entry after it is kept in the header (next), so deciding whether a prune drops anything
// touches neither end of the ring. The entries before lh are removed physically only when
// the ring is full and by Expire. Every read ignores them, so the results are exactly those
// of dropping them at once. 64 bytes: one cache line per window header.
type window struct {
	buf     []entry // ring storage; len(buf) is the capacity
	head    int32   // physical index of the oldest stored entry
	n       int32   // number of entries stored
	lh      int32   // logical index of the oldest present entry; [0, lh) are pruned
	cur     int32   // logical index of the last reference found, lh − 1 when before the front
	next    int64   // ts of the entry at lh + 1, math.MaxInt64 if none
	lastSeq uint64  // sequence of the last quote observed
	used    bool    // the slot holds an incarnation
	hot     bool    // the last quote observed was hot
}

// idx maps a logical index (0 = oldest stored) to a physical one.
func (w *window) idx(i int32) int32 {
	j := w.head + i
	if j >= int32(len(w.buf)) {
		j -= int32(len(w.buf))
	}
	return j
}

// at returns the entry at logical index i.
func (w *window) at(i int32) entry { return w.buf[w.idx(i)] }

// resize moves the stored entries into fresh storage of capacity c ≥ n.
func (w *window) resize(c int32) {
	nb := make([]entry, c)
	if w.n > 0 {
		end := w.head + w.n
		if end <= int32(len(w.buf)) {
			copy(nb, w.buf[w.head:end])
		} else {
			k := copy(nb, w.buf[w.head:])
			copy(nb[k:], w.buf[:end-int32(len(w.buf))])
		}
	}
	w.buf, w.head = nb, 0
}

// setNext refreshes next after lh or the entries around it changed.
func (w *window) setNext() {
	if w.lh+1 < w.n {
		w.next = w.at(w.lh + 1).ts
	} else {
		w.next = math.MaxInt64
	}
}

// insert places e after every present entry with ts ≤ e.ts (so among equal ts the
// later-processed quote is the later one), shifting the entries after it by one: the cost is
// proportional to the displacement, O(1) for quotes in time order.
func (w *window) insert(e entry) {
	if w.n == int32(len(w.buf)) {
		w.drop()
		if w.n == int32(len(w.buf)) {
			// Grow by 25 %: windows settle at a stable size, so the slack stays small.
			w.resize(w.n + w.n/4 + 8)
		}
	}
	pos := w.n
	for pos > w.lh && w.at(pos-1).ts > e.ts {
		pos--
	}
	for i := w.n; i > pos; i-- {
		w.buf[w.idx(i)] = w.buf[w.idx(i-1)]
	}
	w.buf[w.idx(pos)] = e
	w.n++
	if pos <= w.cur {
		w.cur++
	}
	if pos <= w.lh+1 {
		w.setNext()
	}
}

// prune drops the entries before the newest present one at or before horizon; they can no
// longer be the reference of a quote with ts ≥ horizon + window. Cost proportional to the
// entries dropped; nothing but the header is read when none is.
func (w *window) prune(horizon int64) {
	if w.next > horizon {
		return
	}
	for w.lh+1 < w.n && w.at(w.lh+1).ts <= horizon {
		w.lh++
	}
	w.setNext()
}

// drop physically removes the pruned entries.
func (w *window) drop() {
	k := w.lh
	if k == 0 {
		return
	}
	for i := int32(0); i < k; i++ {
		w.buf[w.idx(i)] = entry{}
	}
	w.head = w.idx(k)
	w.n -= k
	w.lh = 0
	w.cur -= k
	if w.cur < -1 {
		w.cur = -1
	}
}

// reference returns the newest present entry with ts ≤ cutoff. It starts from the previous
// answer, so for quotes in time order it moves forward a step or so: O(1) amortised.
func (w *window) reference(cutoff int64) (entry, bool) {
	c := w.cur
	if c >= w.n {
		c = w.n - 1
	}
	if c < w.lh-1 {
		c = w.lh - 1
	}
	for c+1 < w.n && w.at(c+1).ts <= cutoff {
		c++
	}
	for c >= w.lh && w.at(c).ts > cutoff {
		c--
	}
	w.cur = c
	if c < w.lh {
		return entry{}, false
	}
	return w.at(c), true
}

// Detector finds hot instruments over all incarnations. It is not safe for concurrent use:
// one pipeline goroutine drives it, in WAL order.
//
// The windows live in one slice (no pointer per incarnation to chase), found through an
// open-addressing table from incarnation to slot; forgotten slots are reused.
type Detector struct {
	opts    Options
	window  int64 // opts.Window in nanoseconds
	keep    int64 // window + lateness in nanoseconds
	windows []window
	index   slotTable
	free    []int32 // forgotten slots
}

// New returns an empty Detector; unset fields of opts take their defaults.
func New(opts Options) *Detector {
	opts = opts.withDefaults()
	return &Detector{
		opts:   opts,
		window: int64(opts.Window),
		keep:   addSat(int64(opts.Window), int64(opts.Lateness)),
	}
}

// Options returns the options in effect (defaults filled in).
func (d *Detector) Options() Options { return d.opts }

// Observe applies one aggregated quote of an incarnation, in processing (WAL) order, and
// returns an Event when the quote is a rising edge: it is hot and the previous quote of the
// incarnation was not hot or had no reference.
//
// The reference is the newest earlier-processed quote of the incarnation with ts ≤ ts −
// window, "newest" ordering by (ts, sequence). Sequences of one incarnation must increase
// with processing order (they do: they are WAL sequences, and quotes held back for an ADD
// are processed in arrival order right after it); so ties of ts are broken by processing
// order and no sequence is stored per quote. A quote whose seq is not above the last one
// observed for the incarnation was already applied (e.g. the WAL re-applied over a
// checkpoint) and is ignored, as is a price outside (0, feed.MaxPrice].
//
// Quotes may arrive out of time order: each is inserted at its place, at a cost proportional
// to its displacement. See Options.Lateness for quotes that are very late.
func (d *Detector) Observe(isin feed.ISIN, incarnation uint64, ts int64, seq uint64, p feed.Price) (Event, bool) {
	if p <= 0 || p > feed.MaxPrice {
		return Event{}, false
	}
	var w *window
	if s, ok := d.index.get(incarnation); ok {
		w = &d.windows[s]
		if seq <= w.lastSeq {
			return Event{}, false
		}
	} else {
		w = d.newWindow(incarnation)
	}
	w.lastSeq = seq

	ref, ok := w.reference(subSat(ts, d.window))
	hot := ok && d.opts.Threshold.exceeded(int64(p), ref.price)
	edge := hot && !w.hot
	w.hot = hot

	w.insert(entry{ts: ts, price: int64(p)})
	w.prune(subSat(w.at(w.n-1).ts, d.keep))

	if !edge {
		return Event{}, false
	}
	return Event{
		ID:             seq,
		ISIN:           isin,
		Incarnation:    incarnation,
		TS:             ts,
		Price:          p,
		ReferencePrice: feed.Price(ref.price),
		ReferenceTS:    ref.ts,
		ChangePercent:  Change(p, feed.Price(ref.price)),
	}, true
}

// Forget frees the state of a deleted incarnation. A later incarnation of the same ISIN has
// its own id and starts fresh.
func (d *Detector) Forget(incarnation uint64) {
	s, ok := d.index.get(incarnation)
	if !ok {
		return
	}
	d.index.del(incarnation)
	w := &d.windows[s]
	buf := w.buf
	if len(d.free) >= maxFree {
		buf = nil
	}
	clear(buf)
	*w = window{buf: buf}
	d.free = append(d.free, s)
}

// Hot reports whether the last quote observed for the incarnation was hot.
func (d *Detector) Hot(incarnation uint64) bool {
	s, ok := d.index.get(incarnation)
	return ok && d.windows[s].hot
}

// Len returns the number of incarnations tracked.
func (d *Detector) Len() int { return d.index.n }

// Expire drops history that no quote with ts ≥ watermark − lateness can need: in every
// window, the entries before the newest one at or before watermark − window − lateness.
// It also gives back storage of windows that shrank a lot. It costs O(incarnations); call it
// now and then (e.g. once a minute of event time) with the pipeline's watermark, to bound
// the memory of instruments that stopped quoting. Results of later Observe calls within the
// lateness are unaffected.
func (d *Detector) Expire(watermark int64) {
	horizon := subSat(watermark, d.keep)
	for i := range d.windows {
		w := &d.windows[i]
		if !w.used {
			continue
		}
		w.prune(horizon)
		w.drop()
		if len(w.buf) > 32 && w.n < int32(len(w.buf))/4 {
			w.resize(2*w.n + 8)
		}
	}
}

// newWindow returns an empty window for incarnation, in a forgotten slot when possible.
func (d *Detector) newWindow(incarnation uint64) *window {
	var s int32
	if k := len(d.free); k > 0 {
		s = d.free[k-1]
		d.free = d.free[:k-1]
	} else {
		s = int32(len(d.windows))
		d.windows = append(d.windows, window{})
	}
	d.index.put(incarnation, s)
	w := &d.windows[s]
	if w.buf == nil {
		w.buf = make([]entry, 8)
	}
	*w = window{buf: w.buf, cur: -1, next: math.MaxInt64, used: true}
	return w
}

// subSat returns a − b (b ≥ 0), saturating at math.MinInt64.
func subSat(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

// addSat returns a + b (a, b ≥ 0), saturating at math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// slotTable maps incarnations to window slots: open addressing with linear probing and
// backward-shift deletion, load ≤ 0.8. A Go map of pointers cost a hash, a probe and a
// pointer chase to a scattered window per quote; this table is 16 bytes a slot and the
// windows are contiguous.
type slotTable struct {
	slots []slotEntry
	shift uint8 // 64 − log2(len(slots))
	n     int
}

type slotEntry struct {
	key  uint64
	slot int32 // window slot + 1; 0: empty
}

func (t *slotTable) home(k uint64) uint64 { return (k * 0x9e3779b97f4a7c15) >> t.shift }

// get returns the slot of key.
func (t *slotTable) get(key uint64) (int32, bool) {
	if t.n == 0 {
		return 0, false
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(key); ; i = (i + 1) & mask {
		e := &t.slots[i]
		if e.slot == 0 {
			return 0, false
		}
		if e.key == key {
			return e.slot - 1, true
		}
	}
}

// put sets the slot of key.
func (t *slotTable) put(key uint64, slot int32) {
	if 5*(t.n+1) > 4*len(t.slots) {
		t.grow()
	}
	t.insert(key, slot+1)
}

func (t *slotTable) insert(key uint64, v int32) {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(key); ; i = (i + 1) & mask {
		e := &t.slots[i]
		if e.slot == 0 {
			*e = slotEntry{key: key, slot: v}
			t.n++
			return
		}
		if e.key == key {
			e.slot = v
			return
		}
	}
}

// del removes key, if present.
func (t *slotTable) del(key uint64) {
	if t.n == 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := t.home(key)
	for ; ; i = (i + 1) & mask {
		if t.slots[i].slot == 0 {
			return
		}
		if t.slots[i].key == key {
			break
		}
	}
	// Backward shift: pull later entries of the probe run into the hole unless their home
	// slot lies cyclically in (hole, j].
	for j := (i + 1) & mask; t.slots[j].slot != 0; j = (j + 1) & mask {
		home := t.home(t.slots[j].key)
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = slotEntry{}
	t.n--
}

func (t *slotTable) grow() {
	old := t.slots
	size, bits := 64, uint8(6)
	for 5*(t.n+1) > 2*size { // after growing, load ≤ 0.4
		size, bits = size*2, bits+1
	}
	t.slots = make([]slotEntry, size)
	t.shift = 64 - bits
	t.n = 0
	for _, e := range old {
		if e.slot != 0 {
			t.insert(e.key, e.slot)
		}
	}
}

// PrefetchGroup reads, without changing anything, the memory Observe will touch for the
// quotes of the incarnations in incs: their index slots, window headers, newest entries and
// the entries after their reference cursors, in three passes over the group, so that the
// cache misses of a pass are independent of each other and overlap instead of queueing one
// after the other (the windows of 50,000 instruments are far larger than the caches). slots
// is scratch space of len(incs). The result means nothing; callers accumulate it so that
// the reads are not optimised away.
func (d *Detector) PrefetchGroup(incs []uint64, slots []int32) int64 {
	for k, inc := range incs {
		s, ok := d.index.get(inc)
		if !ok {
			s = -1
		}
		slots[k] = s
	}
	var sink int64
	for _, s := range slots[:len(incs)] {
		if s >= 0 {
			sink += int64(d.windows[s].n)
		}
	}
	for _, s := range slots[:len(incs)] {
		if s < 0 {
			continue
		}
		w := &d.windows[s]
		if w.n == 0 {
			continue
		}
		c := max(w.cur+1, w.lh)
		if c >= w.n {
			c = w.n - 1
		}
		sink += w.buf[w.idx(w.n-1)].ts ^ w.buf[w.idx(c)].ts
	}
	return sink
}
