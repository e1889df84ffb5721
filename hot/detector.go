package hot

import (
	"math"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/intmap"
)

// maxFree bounds the number of forgotten windows whose storage is kept for reuse.
const maxFree = 256

// wideBit and deltaBit mark the index's slots of wide and delta windows.
const (
	wideBit  = 1 << 30
	deltaBit = 1 << 29
)

// Time-base moves of compact windows (see Expire): when the watermark is rebaseAfter past
// the base, the base moves to rebaseKeep before the watermark.
const (
	rebaseAfter = 12 * 24 * 3600 * int64(1e9)
	rebaseKeep  = 24 * 3600 * int64(1e9)
)

// Detector finds hot instruments over all incarnations. It is not safe for concurrent use:
// one pipeline goroutine drives it, in WAL order.
//
// The windows live in three slices, one per form (no pointer per incarnation to chase),
// found through an open-addressing table from incarnation to slot; forgotten slots are
// reused. A window starts in the delta form (4-byte points, each a difference from the
// point before it: deltaWindow), which holds the partner's feed but for the few minutes
// after a price jump; a quote that does not fit it moves its window to the compact form
// (8-byte points: milliseconds since the detector's time base, price relative to the
// window's first price), and one that does not fit that either (a time that is not a
// whole millisecond, a price more than ±2,147 units from the base) to the wide form
// (16-byte points). Expire moves windows back, one form a minute, once their points fit.
// The form changes nothing but memory: the results are exactly those of one form.
type Detector struct {
	opts    Options
	window  int64 // opts.Window in nanoseconds
	keep    int64 // window + lateness in nanoseconds
	delta   []deltaWindow
	compact []window[int32]
	wide    []window[int64]
	// cdom is the domain of compact windows; its base is set by the first quote.
	cdom    domain
	baseSet bool
	wideDom domain
	// index maps an incarnation to its slot: delta[s &^ deltaBit] when s has deltaBit,
	// wide[s &^ wideBit] when s has wideBit, else compact[s].
	index slotTable
	// deltaInc, compactInc and wideInc are the incarnation of each slot (meaningless when
	// unused).
	deltaInc   []uint64
	compactInc []uint64
	wideInc    []uint64
	freeD      []int32 // forgotten delta slots
	freeC      []int32 // forgotten compact slots
	freeW      []int32 // forgotten wide slots
	// noDelta (tests) starts windows compact and never moves them to the delta form: the
	// detector as it was before that form, which the tests of the others rely on.
	noDelta bool
	// byRef is a cache of the index by feed.Message.Ref: byRef[ref] is the slot + 1 the
	// quotes of that ref last went to (0: none), used when that slot still holds the
	// incarnation (holds), so a quote finds its window with two array reads instead of
	// hashing; not part of a snapshot.
	byRef   []int32
	missing []uint64 // PrefetchGroup's scratch
	// pieceHint is the capacity writeState gives its piece buffers: the largest piece of
	// the last snapshot, and an eighth more.
	pieceHint int
	// widened, narrowed, rebased, deltaOut and deltaIn count form changes (tests).
	widened, narrowed, rebased, deltaOut, deltaIn int
}

// New returns an empty Detector; unset fields of opts take their defaults.
func New(opts Options) *Detector {
	opts = opts.withDefaults()
	return &Detector{
		opts:   opts,
		window: int64(opts.Window),
		keep:   addSat(int64(opts.Window), int64(opts.Lateness)),
		cdom:   domain{compact: true},
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
	return d.ObserveRef(0, isin, incarnation, ts, seq, p)
}

// ObserveRef is Observe with the quote's feed.Message.Ref (0: none), a hint that finds
// the incarnation's window without hashing from the second quote of that ref on. Refs
// change no result, wrong ones included.
func (d *Detector) ObserveRef(ref uint32, isin feed.ISIN, incarnation uint64, ts int64, seq uint64, p feed.Price) (Event, bool) {
	if p <= 0 || p > feed.MaxPrice {
		return Event{}, false
	}
	s, ok := d.slot(ref, incarnation)
	if !ok {
		if d.noDelta {
			s = d.newCompact(incarnation, ts)
		} else {
			s = d.newDelta(incarnation)
		}
		d.listRef(ref, s)
	}
	if s&deltaBit != 0 {
		w := &d.delta[s&^deltaBit]
		if seq <= w.lastSeq {
			return Event{}, false
		}
		if ev, edge, fits := d.observeDelta(w, isin, incarnation, ts, seq, p); fits {
			return ev, edge
		}
		s = d.deltaToCompact(s, ts)
		d.listRef(ref, s)
	}
	if s&wideBit == 0 {
		w := &d.compact[s]
		if seq <= w.lastSeq {
			return Event{}, false
		}
		if w.n == 0 {
			w.pbase, w.pe = int64(p), maxPriceExp
		}
		k, fits := d.cdom.pointKey(ts)
		if dp := int64(p) - w.pbase; fits && dp == int64(int32(dp)) {
			w.pe = unitOf(int64(p), w.pe)
			return observe(d, w, d.cdom, isin, incarnation, ts, int64(k), seq, p)
		}
		s = d.widen(s)
		d.listRef(ref, s)
	}
	w := &d.wide[s&^wideBit]
	if seq <= w.lastSeq {
		return Event{}, false
	}
	return observe(d, w, d.wideDom, isin, incarnation, ts, ts, seq, p)
}

// observe applies the quote (time ts, key k in dm) to w.
func observe[T word](d *Detector, w *window[T], dm domain, isin feed.ISIN, incarnation uint64, ts, k int64, seq uint64, p feed.Price) (Event, bool) {
	w.lastSeq = seq
	i, ok := w.reference(dm.key(subSat(ts, d.window)))
	var ref entry
	if ok {
		ref = w.entry(dm, i)
	}
	hot := ok && d.opts.Threshold.exceeded(int64(p), ref.price)
	edge := hot && !w.hot
	w.hot = hot

	keep := d.keep
	if dm.compact {
		keep /= msNanos
	}
	w.insert(point[T]{key: T(k), price: T(int64(p) - w.pbase)}, keep)
	w.prune(dm.key(subSat(dm.time(w.key(w.n-1)), d.keep)))

	if !edge {
		return Event{}, false
	}
	return hotEvent(isin, incarnation, ts, seq, p, ref), true
}

// hotEvent is the Event of a hot quote (the sequence seq, at ts and price p) against its
// reference ref.
func hotEvent(isin feed.ISIN, incarnation uint64, ts int64, seq uint64, p feed.Price, ref entry) Event {
	return Event{
		ID:             seq,
		ISIN:           isin,
		Incarnation:    incarnation,
		TS:             ts,
		Price:          p,
		ReferencePrice: feed.Price(ref.price),
		ReferenceTS:    ref.ts,
		ChangePercent:  Change(p, feed.Price(ref.price)),
	}
}

// slot returns the slot of incarnation: the one byRef lists for ref if it holds the
// incarnation, else the index's (then listed under ref).
func (d *Detector) slot(ref uint32, incarnation uint64) (int32, bool) {
	if ref < uint32(len(d.byRef)) {
		if s := d.byRef[ref] - 1; s >= 0 && d.holds(s, incarnation) {
			return s, true
		}
	}
	s, ok := d.index.get(incarnation)
	if ok {
		d.listRef(ref, s)
	}
	return s, ok
}

// holds reports whether slot s (as the index stores it) holds incarnation's window.
func (d *Detector) holds(s int32, incarnation uint64) bool {
	switch {
	case s&deltaBit != 0:
		return d.deltaInc[s&^deltaBit] == incarnation && d.delta[s&^deltaBit].used
	case s&wideBit != 0:
		return d.wideInc[s&^wideBit] == incarnation && d.wide[s&^wideBit].used
	}
	return d.compactInc[s] == incarnation && d.compact[s].used
}

// listRef lists slot s under ref (when ref is one: 0 < ref < feed.MaxDenseRef, which
// bounds byRef to 4 MiB; the windows of larger refs are found by hashing).
func (d *Detector) listRef(ref uint32, s int32) {
	if ref == 0 || ref >= feed.MaxDenseRef {
		return
	}
	if n := int(ref) + 1; n > len(d.byRef) {
		d.byRef = append(d.byRef, make([]int32, n-len(d.byRef))...)
	}
	d.byRef[ref] = s + 1
}

// Forget frees the state of a deleted incarnation. A later incarnation of the same ISIN has
// its own id and starts fresh.
func (d *Detector) Forget(incarnation uint64) {
	s, ok := d.index.get(incarnation)
	if !ok {
		return
	}
	d.index.del(incarnation)
	switch {
	case s&deltaBit != 0:
		d.delta[s&^deltaBit].reset(len(d.freeD) >= maxFree)
		d.freeD = append(d.freeD, s&^deltaBit)
	case s&wideBit != 0:
		d.wide[s&^wideBit].reset(len(d.freeW) >= maxFree)
		d.freeW = append(d.freeW, s&^wideBit)
	default:
		d.compact[s].reset(len(d.freeC) >= maxFree)
		d.freeC = append(d.freeC, s)
	}
}

// Hot reports whether the last quote observed for the incarnation was hot.
func (d *Detector) Hot(incarnation uint64) bool {
	s, ok := d.index.get(incarnation)
	switch {
	case !ok:
		return false
	case s&deltaBit != 0:
		return d.delta[s&^deltaBit].hot
	case s&wideBit != 0:
		return d.wide[s&^wideBit].hot
	}
	return d.compact[s].hot
}

// Len returns the number of incarnations tracked.
func (d *Detector) Len() int { return d.index.len() }

// Expire drops history that no quote with ts ≥ watermark − lateness can need: in every
// window, the entries before the newest one at or before watermark − window − lateness.
// It also gives back storage of windows that shrank a lot, moves wide windows that fit the
// compact form again back to it, and compact ones that fit the delta form to that, and
// moves the compact windows' time base forward when the
// watermark is far past it. It costs O(incarnations); call it now and then (e.g. once a
// minute of event time) with the pipeline's watermark, to bound the memory of instruments
// that stopped quoting. Results of later Observe calls within the lateness are unaffected.
func (d *Detector) Expire(watermark int64) {
	horizon := subSat(watermark, d.keep)
	for i := range d.delta {
		if w := &d.delta[i]; w.used {
			w.expire(horizon, d.keep)
		}
	}
	ch := d.cdom.key(horizon)
	for i := range d.compact {
		if w := &d.compact[i]; w.used {
			w.expire(ch, d.keep/msNanos)
			if !d.noDelta {
				d.compactToDelta(int32(i))
			}
		}
	}
	for i := range d.wide {
		if w := &d.wide[i]; w.used {
			w.expire(horizon, d.keep)
			d.narrow(int32(i))
		}
	}
	if d.baseSet && watermark-d.cdom.tbase > rebaseAfter && watermark > math.MinInt64+rebaseKeep {
		d.rebase(d.cdom.time(d.cdom.key(watermark - rebaseKeep)))
	}
}

// newDelta returns the slot of an empty delta window for incarnation, as the index stores
// it.
func (d *Detector) newDelta(incarnation uint64) int32 {
	s := d.allocDelta(incarnation)
	w := &d.delta[s]
	if w.buf == nil {
		w.buf = make([]uint32, 8)
	}
	*w = deltaWindow{buf: w.buf, cur: -1, next: math.MaxInt64, used: true}
	d.index.put(incarnation, s|deltaBit)
	return s | deltaBit
}

// allocDelta returns a free delta slot (a forgotten one when possible) for incarnation.
func (d *Detector) allocDelta(incarnation uint64) int32 {
	return allocSlot(&d.delta, &d.deltaInc, &d.freeD, incarnation)
}

// allocSlot returns a slot of ws for incarnation, recorded in incs: a forgotten one from
// free when there is one, else a new one.
func allocSlot[W any](ws *[]W, incs *[]uint64, free *[]int32, incarnation uint64) int32 {
	if k := len(*free); k > 0 {
		s := (*free)[k-1]
		*free = (*free)[:k-1]
		(*incs)[s] = incarnation
		return s
	}
	var w W
	*ws = append(*ws, w)
	*incs = append(*incs, incarnation)
	return int32(len(*ws) - 1)
}

// deltaToCompact moves the delta window in slot s (as the index stores it) to a compact
// slot, or a wide one if its points do not fit the compact form, and returns that slot as
// the index stores it. ts, the time of the quote that did not fit, sets the compact
// windows' time base if none is set yet.
func (d *Detector) deltaToCompact(s int32, ts int64) int32 {
	ds := s &^ deltaBit
	inc, src := d.deltaInc[ds], &d.delta[ds]
	d.setBase(ts)
	ns := d.allocCompact(inc)
	if !fromDelta(&d.compact[ns], src, d.cdom, src.front.price) {
		d.freeC = append(d.freeC, ns)
		ns = d.allocWide(inc)
		if !fromDelta(&d.wide[ns], src, d.wideDom, 0) {
			panic("hot: a delta window does not fit the wide form") // 64-bit values fit
		}
		ns |= wideBit
	}
	src.reset(len(d.freeD) >= maxFree)
	d.freeD = append(d.freeD, ds)
	d.index.put(inc, ns)
	d.deltaOut++
	return ns
}

// compactToDelta moves the compact window in slot s to a delta slot if its points fit.
func (d *Detector) compactToDelta(s int32) {
	inc := d.compactInc[s]
	ds := d.allocDelta(inc)
	if !toDelta(&d.delta[ds], &d.compact[s], d.cdom) {
		d.freeD = append(d.freeD, ds)
		return
	}
	d.compact[s].reset(len(d.freeC) >= maxFree)
	d.freeC = append(d.freeC, s)
	d.index.put(inc, ds|deltaBit)
	d.deltaIn++
}

// setBase sets the compact windows' time base to the whole millisecond at or before ts,
// unless it is set.
func (d *Detector) setBase(ts int64) {
	if !d.baseSet {
		d.cdom.tbase, d.baseSet = d.cdom.key(ts)*msNanos, true
	}
}

// newCompact returns the slot of an empty compact window for incarnation; ts, the time of
// its first quote, sets the compact windows' time base if none is set yet.
func (d *Detector) newCompact(incarnation uint64, ts int64) int32 {
	d.setBase(ts)
	s := d.allocCompact(incarnation)
	w := &d.compact[s]
	if w.buf == nil {
		w.buf = make([]point[int32], 8)
	}
	*w = window[int32]{buf: w.buf, cur: -1, next: maxKey[int32](), used: true}
	d.index.put(incarnation, s)
	return s
}

// allocCompact returns a free compact slot (a forgotten one when possible) for incarnation.
func (d *Detector) allocCompact(incarnation uint64) int32 {
	return allocSlot(&d.compact, &d.compactInc, &d.freeC, incarnation)
}

// allocWide returns a free wide slot for incarnation.
func (d *Detector) allocWide(incarnation uint64) int32 {
	return allocSlot(&d.wide, &d.wideInc, &d.freeW, incarnation)
}

// widen moves the compact window in slot s to a wide slot and returns that slot as the
// index stores it.
func (d *Detector) widen(s int32) int32 {
	inc := d.compactInc[s]
	ws := d.allocWide(inc)
	if !convert(&d.wide[ws], &d.compact[s], d.cdom, d.wideDom, 0) {
		panic("hot: a compact window does not fit the wide form") // 32-bit values fit 64 bits
	}
	d.compact[s].reset(len(d.freeC) >= maxFree)
	d.freeC = append(d.freeC, s)
	d.index.put(inc, ws|wideBit)
	d.widened++
	return ws | wideBit
}

// narrow moves the wide window in slot ws back to a compact slot if all its points fit.
func (d *Detector) narrow(ws int32) {
	w := &d.wide[ws]
	if !d.baseSet || w.n == 0 || w.lh != 0 {
		return
	}
	pbase := w.at(0).price
	for i := int32(0); i < w.n; i++ {
		p := w.at(i)
		_, ok := d.cdom.pointKey(p.key)
		if dp := p.price - pbase; !ok || dp != int64(int32(dp)) {
			return
		}
	}
	inc := d.wideInc[ws]
	s := d.allocCompact(inc)
	if !convert(&d.compact[s], w, d.wideDom, d.cdom, pbase) {
		panic("hot: a wide window that fits the compact form did not convert")
	}
	w.reset(len(d.freeW) >= maxFree)
	d.freeW = append(d.freeW, ws)
	d.index.put(inc, s)
	d.narrowed++
}

// rebase moves the time base of compact windows to base (a whole millisecond after the
// current one); windows with a point that would fall outside the key range go wide.
func (d *Detector) rebase(base int64) {
	shift := (base - d.cdom.tbase) / msNanos
	if shift <= 0 {
		return
	}
	for i := range d.compact {
		w := &d.compact[i]
		if !w.used {
			continue
		}
		if w.n > 0 && w.key(0)-shift < math.MinInt32 {
			d.widen(int32(i))
			continue
		}
		for j := int32(0); j < w.n; j++ {
			w.buf[w.idx(j)].key -= int32(shift)
		}
		w.setNext()
	}
	d.cdom.tbase = base
	d.rebased++
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

// slotTable maps incarnations to window slots. A Go map of pointers cost a hash, a probe
// and a pointer chase to a scattered window per quote; an intmap.Map is 16 bytes a slot and
// the windows are contiguous. Incarnation 0, the key intmap reserves (WAL sequences start at
// 1, but Observe and RestoreState take any id), is kept beside it.
type slotTable struct {
	m        intmap.Map[int32]
	zeroSlot int32 // window slot of incarnation 0, if hasZero
	hasZero  bool
}

// get returns the slot of key.
func (t *slotTable) get(key uint64) (int32, bool) {
	if key == 0 {
		return t.zeroSlot, t.hasZero
	}
	return t.m.Get(key)
}

// put sets the slot of key.
func (t *slotTable) put(key uint64, slot int32) {
	if key == 0 {
		t.zeroSlot, t.hasZero = slot, true
		return
	}
	t.m.Put(key, slot)
}

// del removes key, if present.
func (t *slotTable) del(key uint64) {
	if key == 0 {
		t.zeroSlot, t.hasZero = 0, false
		return
	}
	t.m.Delete(key)
}

// len returns the number of entries.
func (t *slotTable) len() int {
	if t.hasZero {
		return t.m.Len() + 1
	}
	return t.m.Len()
}

// keys appends every key to b, in no particular order.
func (t *slotTable) keys(b []uint64) []uint64 {
	if t.hasZero {
		b = append(b, 0)
	}
	for k := range t.m.All() {
		b = append(b, k)
	}
	return b
}

// PrefetchGroup reads, without changing anything, the memory Observe will touch for the
// quotes of the incarnations in incs (with the refs of ObserveRef): their slots (listed
// under the ref, or in the index), window headers, newest entries and the entries after
// their reference cursors, in passes over the group, so that the cache misses of a pass are
// independent of each other and overlap instead of queueing one after the other (the
// windows of 50,000 instruments are far larger than the caches). slots is scratch space of
// len(incs). The result means nothing; callers accumulate it so that the reads are not
// optimised away.
func (d *Detector) PrefetchGroup(refs []uint32, incs []uint64, slots []int32) int64 {
	missing := d.missing[:0]
	for k, inc := range incs {
		s := int32(noSlot)
		if r := refs[k]; r < uint32(len(d.byRef)) {
			s = d.byRef[r] - 1
		}
		if s == noSlot {
			missing = append(missing, inc)
		}
		slots[k] = s
	}
	var sink int64
	if len(missing) > 0 {
		// Their index slots first, all at once (intmap.Map.Touch), then the look-ups.
		sink = int64(d.index.m.Touch(missing))
		for k, s := range slots[:len(incs)] {
			if s == noSlot {
				if s, ok := d.index.get(incs[k]); ok {
					slots[k] = s
				}
			}
		}
	}
	d.missing = missing[:0]
	for _, s := range slots[:len(incs)] {
		switch {
		case s == noSlot:
		case s&deltaBit != 0:
			w := &d.delta[s&^deltaBit]
			sink += int64(w.n) + w.last.ts + int64(d.deltaInc[s&^deltaBit])
		case s&wideBit == 0:
			sink += int64(d.compact[s].n) + int64(d.compactInc[s])
		default:
			sink += int64(d.wide[s&^wideBit].n) + int64(d.wideInc[s&^wideBit])
		}
	}
	for _, s := range slots[:len(incs)] {
		switch {
		case s == noSlot:
		case s&deltaBit != 0:
			sink += prefetchDeltas(&d.delta[s&^deltaBit])
		case s&wideBit == 0:
			sink += prefetchPoints(&d.compact[s])
		default:
			sink += prefetchPoints(&d.wide[s&^wideBit])
		}
	}
	return sink
}

// noSlot marks an incarnation without a window in PrefetchGroup's slots.
const noSlot = -1

// prefetchPoints reads the newest point of w, the one after its reference cursor, and the
// second present one (what prune reads when the window moves on: with a quote a second,
// every quote drops its oldest point).
func prefetchPoints[T word](w *window[T]) int64 {
	if w.n == 0 {
		return 0
	}
	c := max(w.cur+1, w.lh)
	if c >= w.n {
		c = w.n - 1
	}
	o := min(w.lh+2, w.n-1)
	return int64(w.buf[w.idx(w.n-1)].key ^ w.buf[w.idx(c)].key ^ w.buf[w.idx(o)].key)
}

// prefetchDeltas reads the slot a quote in time order is stored in, the delta after w's
// reference cursor and the second present one (what reference and prune read).
func prefetchDeltas(w *deltaWindow) int64 {
	if w.n == 0 {
		return 0
	}
	c := max(w.cur+1, w.lh)
	if c >= w.n {
		c = w.n - 1
	}
	o := min(w.lh+2, w.n-1)
	return int64(w.buf[w.idx(min(w.n, int32(len(w.buf))-1))] ^ w.buf[w.idx(c)] ^ w.buf[w.idx(o)])
}
