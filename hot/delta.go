package hot

import (
	"encoding/binary"
	"math"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// deltaWindow is a window (see window for what it holds and how it prunes) whose points
// are differences from the point before them, 4 bytes each:
//
//	buf[i]: ┌───────────────────────────────┬───────────────────────────────────┐
//	        │ Δts / 1 ms: uint16, bits 0–15 │ Δprice / 10^pe: int16, bits 16–31 │
//	        └───────────────────────────────┴───────────────────────────────────┘
//
// the layout of a snapshot's fixed-form entry, so that a snapshot copies them. The
// windows of 50,000 instruments at a quote a second hold 16 million points: 64 MB in this
// form, 128 MB as compact points. The delta of the oldest stored point means nothing.
//
// The header keeps the entries of three points — the oldest present (front, at lh), the
// last reference found (at, while cur ≥ lh) and the newest (last) — and every read walks
// from one of them, a point or so per quote: reference and prune move forward, insert
// backward as far as the quote is late. The header is two cache lines (Detector.delta,
// once large, is page-aligned), both of which every quote reads: PrefetchGroup touches
// both. A quote whose deltas do not fit (a time that is not a whole millisecond, more than
// 65.5 s after its predecessor, a price more than 32,767 units of 10^pe from its
// neighbours: a jump of the partner's feed) moves the window to the compact form
// (Detector.deltaToCompact); Expire moves it back once its points fit.
type deltaWindow struct {
	// The first cache line: what finding the window and its ring takes.
	buf              []uint32 // ring storage; len(buf) is the capacity
	head, n, lh, cur int32    // as in window
	lastSeq          uint64   // sequence of the last quote observed
	next             int64    // time of the point at lh + 1, math.MaxInt64 if none
	used, hot        bool     // as in window
	// pe: every price stored since the window was last empty is a multiple of 10^pe, the
	// unit of the price deltas (refine makes it finer).
	pe byte
	_  [5]byte
	// The second: the points at lh, cur (when cur ≥ lh) and n − 1.
	front, at, last entry
	_               [16]byte
}

// idx maps a logical index (0 = oldest stored) to a physical one.
func (w *deltaWindow) idx(i int32) int32 {
	j := w.head + i
	if j >= int32(len(w.buf)) {
		j -= int32(len(w.buf))
	}
	return j
}

// after returns the entry at logical index i + 1, given e, the one at i.
func (w *deltaWindow) after(e entry, i int32) entry {
	v := w.buf[w.idx(i+1)]
	return entry{ts: e.ts + int64(uint16(v))*msNanos, price: e.price + int64(int16(v>>16))*pow10[w.pe]}
}

// before returns the entry at logical index i − 1 (i > lh), given e, the one at i.
func (w *deltaWindow) before(e entry, i int32) entry {
	v := w.buf[w.idx(i)]
	return entry{ts: e.ts - int64(uint16(v))*msNanos, price: e.price - int64(int16(v>>16))*pow10[w.pe]}
}

// pack returns the delta of b from a (a.ts ≤ b.ts, both whole milliseconds, both prices
// multiples of 10^pe) and whether it fits the form.
func (w *deltaWindow) pack(a, b entry) (uint32, bool) {
	dt := uint64(b.ts-a.ts) / uint64(msNanos) // the difference of ordered times fits a uint64
	dp := exactDivPow10(b.price-a.price, w.pe, inv5Pow[w.pe])
	return uint32(dt) | uint32(dp)<<16, dt < 1<<16 && dp == int64(int16(dp))
}

// setNext refreshes next after lh or the points around it changed.
func (w *deltaWindow) setNext() {
	if w.lh+1 < w.n {
		w.next = w.after(w.front, w.lh).ts
	} else {
		w.next = math.MaxInt64
	}
}

// admit readies w for a quote at price p: the unit of its deltas becomes fine enough for p
// (refine). It reports false, w unchanged, when a delta would not fit the finer unit.
func (w *deltaWindow) admit(p int64) bool {
	if w.n == 0 {
		w.pe = maxPriceExp
	}
	pe := unitOf(p, w.pe)
	return pe == w.pe || w.refine(pe)
}

// refine rescales the present deltas to the unit 10^pe (pe < w.pe), if every one fits.
// The deltas of pruned points are left as they are: nothing reads them.
func (w *deltaWindow) refine(pe byte) bool {
	m := pow10[w.pe-pe]
	for i := w.lh + 1; i < w.n; i++ {
		if dp := int64(int16(w.buf[w.idx(i)]>>16)) * m; dp != int64(int16(dp)) {
			return false
		}
	}
	for i := w.lh + 1; i < w.n; i++ {
		j := w.idx(i)
		v := w.buf[j]
		w.buf[j] = uint32(uint16(v)) | uint32(int64(int16(v>>16))*m)<<16
	}
	w.pe = pe
	return true
}

// place finds where entry e goes — after every present point with a time ≤ e.ts, so among
// equal times the later-processed quote is the later one — without changing w: pos, the
// delta of e from the point before it (meaningless when pos = lh, e then the oldest) and
// the new delta of the point after it (when pos < n), and whether both fit.
func (w *deltaWindow) place(e entry) (pos int32, dNew, dNext uint32, ok bool) {
	if w.n == 0 {
		return 0, 0, 0, true
	}
	if e.ts >= w.last.ts {
		dNew, ok = w.pack(w.last, e)
		return w.n, dNew, 0, ok
	}
	i, cur := w.n-1, w.last // cur, at i, is after e
	for i > w.lh {
		prev := w.before(cur, i)
		if prev.ts <= e.ts {
			dNew, ok1 := w.pack(prev, e)
			dNext, ok2 := w.pack(e, cur)
			return i, dNew, dNext, ok1 && ok2
		}
		i, cur = i-1, prev
	}
	dNext, ok = w.pack(e, w.front)
	return w.lh, 0, dNext, ok
}

// insert stores e at pos with the deltas place found, shifting the points after it by one.
// The ring must have room (makeRoom).
func (w *deltaWindow) insert(e entry, pos int32, dNew, dNext uint32) {
	for i := w.n; i > pos; i-- {
		w.buf[w.idx(i)] = w.buf[w.idx(i-1)]
	}
	w.buf[w.idx(pos)] = dNew
	if pos < w.n {
		w.buf[w.idx(pos+1)] = dNext
	} else {
		w.last = e
	}
	w.n++
	if pos == w.lh {
		w.front = e
	}
	if pos <= w.cur {
		w.cur++
	}
	if pos <= w.lh+1 {
		w.setNext()
	}
}

// makeRoom makes sure the ring has room for one more point: it drops the pruned points,
// or grows (neededCap, given keep, the span of times the window keeps).
func (w *deltaWindow) makeRoom(keep int64) {
	if w.n == int32(len(w.buf)) {
		w.drop()
		if w.n == int32(len(w.buf)) {
			w.resize(w.neededCap(keep))
		}
	}
}

// prune drops the points before the newest present one at or before horizon, as
// window.prune.
func (w *deltaWindow) prune(horizon int64) {
	if w.next > horizon {
		return
	}
	for w.lh+1 < w.n {
		nx := w.after(w.front, w.lh)
		if nx.ts > horizon {
			break
		}
		w.front = nx
		w.lh++
	}
	w.setNext()
}

// expire is window.expire for a delta window (horizon and keep in ns).
func (w *deltaWindow) expire(horizon, keep int64) {
	w.prune(horizon)
	w.drop()
	w.shrink(keep)
}

// drop physically removes the pruned points.
func (w *deltaWindow) drop() {
	k := w.lh
	if k == 0 {
		return
	}
	for i := int32(0); i < k; i++ {
		w.buf[w.idx(i)] = 0
	}
	w.head = w.idx(k)
	w.n -= k
	w.lh = 0
	w.cur -= k
	if w.cur < -1 {
		w.cur = -1
	}
}

// reference returns the newest present entry with ts ≤ cutoff, walking from the previous
// answer as window.reference does.
func (w *deltaWindow) reference(cutoff int64) (entry, bool) {
	c, e := w.cur, w.at
	if c >= w.n {
		c, e = w.n-1, w.last
	}
	if c < w.lh {
		c = w.lh - 1 // before the front: e means nothing
	}
	for c+1 < w.n {
		nx := w.front
		if c >= w.lh {
			nx = w.after(e, c)
		}
		if nx.ts > cutoff {
			break
		}
		c, e = c+1, nx
	}
	for c >= w.lh && e.ts > cutoff {
		if c == w.lh {
			c = w.lh - 1
			break
		}
		e = w.before(e, c)
		c--
	}
	w.cur, w.at = c, e
	return e, c >= w.lh
}

// resize moves the stored points into fresh storage of capacity c ≥ n.
func (w *deltaWindow) resize(c int32) {
	w.buf, w.head = ringCopy(w.buf, w.head, w.n, c), 0
}

// neededCap is window.neededCap for a delta window (keep in ns).
func (w *deltaWindow) neededCap(keep int64) int32 {
	return neededCap(w.n, w.lh, w.last.ts-w.front.ts, keep)
}

// shrink gives back storage of a window that shrank a lot, as window.shrink.
func (w *deltaWindow) shrink(keep int64) {
	if c, ok := shrunkCap(int32(len(w.buf)), w.n, w.neededCap(keep)); ok {
		w.resize(c)
	}
}

// reset empties w for a new incarnation, keeping its storage unless drop is set.
func (w *deltaWindow) reset(drop bool) {
	buf := w.buf
	if drop {
		buf = nil
	}
	clear(buf)
	*w = deltaWindow{buf: buf}
}

// segments returns the deltas of the present points after the oldest, oldest first, as
// the (up to) two runs of the ring they occupy.
func (w *deltaWindow) segments() [2][]uint32 {
	if w.n-w.lh < 2 {
		return [2][]uint32{}
	}
	start, n := w.idx(w.lh+1), int(w.n-w.lh-1)
	segs := [2][]uint32{w.buf[start:min(int(start)+n, len(w.buf))]}
	segs[1] = w.buf[:n-len(segs[0])]
	return segs
}

// observeDelta applies the quote to delta window w as observe does to the other forms, and
// reports false, having applied nothing, when it does not fit the form.
func (d *Detector) observeDelta(w *deltaWindow, isin feed.ISIN, incarnation uint64, ts int64, seq uint64, p feed.Price) (ev Event, edge, fits bool) {
	if ts%msNanos != 0 || !w.admit(int64(p)) {
		return Event{}, false, false
	}
	w.makeRoom(d.keep)
	e := entry{ts: ts, price: int64(p)}
	pos, dNew, dNext, ok := w.place(e)
	if !ok {
		return Event{}, false, false
	}
	w.lastSeq = seq
	ref, found := w.reference(subSat(ts, d.window))
	hot := found && d.opts.Threshold.exceeded(int64(p), ref.price)
	edge = hot && !w.hot
	w.hot = hot
	w.insert(e, pos, dNew, dNext)
	w.prune(subSat(w.last.ts, d.keep))
	if !edge {
		return Event{}, false, true
	}
	return hotEvent(isin, incarnation, ts, seq, p, ref), true, true
}

// fromDelta copies the present points of src into dst in domain to with price base pbase,
// and the header, as convert does; ok is false (dst unchanged) when a point does not fit.
func fromDelta[T word](dst *window[T], src *deltaWindow, to domain, pbase int64) bool {
	e := src.front
	next := func(i int32) entry { // i = 0, 1, … in order
		if i > 0 {
			e = src.after(e, src.lh+i-1)
		}
		return e
	}
	return fill(dst, src.n-src.lh, next, to, pbase, src.cur-src.lh, src.lastSeq, src.used, src.hot)
}

// toDelta copies the present points of compact window src (domain dm) into dst, and the
// header; ok is false (dst unchanged) when a delta does not fit the form.
func toDelta(dst *deltaWindow, src *window[int32], dm domain) bool {
	n := src.n - src.lh
	if n == 0 {
		return false
	}
	tmp := deltaWindow{pe: src.pe}
	prev := src.entry(dm, src.lh)
	for i := int32(1); i < n; i++ {
		if _, ok := tmp.pack(prev, src.entry(dm, src.lh+i)); !ok {
			return false
		}
		prev = src.entry(dm, src.lh+i)
	}
	buf := dst.buf[:0:0]
	if c := int32(len(src.buf)); int32(cap(dst.buf)) >= c {
		buf = dst.buf[:c]
	} else {
		buf = make([]uint32, c)
	}
	first := src.entry(dm, src.lh)
	prev = first
	for i := int32(1); i < n; i++ {
		e := src.entry(dm, src.lh+i)
		buf[i], _ = tmp.pack(prev, e)
		prev = e
	}
	buf[0] = 0
	clear(buf[n:])
	*dst = deltaWindow{buf: buf, n: n, cur: -1, front: first, last: prev, lastSeq: src.lastSeq, used: src.used, hot: src.hot, pe: src.pe}
	if c := src.cur - src.lh; c >= 0 {
		dst.cur, dst.at = c, src.entry(dm, src.cur)
	}
	dst.setNext()
	return true
}

// writeDeltaWindow appends the delta window of incarnation inc to e: the bytes writeWindow
// writes for the same points, the fixed form's entries copied as they are stored when the
// window's unit is the snapshot's (every present price a multiple of 10^pe and not all of
// 10^(pe+1)), as it nearly always is; else through the wide form.
func writeDeltaWindow(e *encoding.Encbuf, inc uint64, w *deltaWindow) {
	if w.n-w.lh == 0 || w.coarser() {
		var wide window[int64]
		if !fromDelta(&wide, w, domain{}, 0) {
			panic("hot: a delta window does not fit the wide form") // 64-bit values fit
		}
		writeWindow(e, inc, &wide, domain{})
		return
	}
	writeWindowHead(e, inc, w.lastSeq, w.hot)
	e.PutByte(unitsFixed | tsExpMillis<<4 | w.pe)
	e.PutUvarint(uint64(w.n - w.lh))
	e.PutVarint(w.front.ts / msNanos)
	e.PutVarint(exactDivPow10(w.front.price, w.pe, inv5Pow[w.pe]))
	segs := w.segments()
	b := e.B
	for _, seg := range segs {
		for _, v := range seg {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
	}
	e.B = b
}

// coarser reports whether every present price is a multiple of 10^(pe+1) as well (the
// prices that made the unit finer were pruned): the snapshot's unit is then coarser
// than the window's. It stops at the first delta that says no, nearly always the first.
func (w *deltaWindow) coarser() bool {
	if w.pe == maxPriceExp || !multipleOfPow10Exact(w.front.price, w.pe+1) {
		return false
	}
	for _, seg := range w.segments() {
		for _, v := range seg {
			if !multipleOfPow10Exact(int64(int16(v>>16)), 1) {
				return false
			}
		}
	}
	return true
}

// decodeDelta decodes the n entries of a fixed-form window (time unit 1 ms, price unit
// 10^pe) at the front of b into a delta window, and returns the bytes used. ok is false
// when an entry is malformed: the caller then decodes the window the general way, which
// reports the error. The window gets the capacity it will grow to (neededCap, given keep).
func decodeDelta(b []byte, n int, pe byte, seq uint64, hot bool, keep int64) (w deltaWindow, used int, ok bool) {
	first, off, ok := readFirstEntry(b, pe)
	if !ok || n-1 > (len(b)-off)/4 {
		return w, 0, false
	}
	e := first
	for i := 1; i < n; i++ {
		dt, dp := fixedEntry(b[off+4*(i-1):])
		if e.ts > math.MaxInt64-int64(dt)*msNanos {
			return w, 0, false
		}
		e.ts += int64(dt) * msNanos
		e.price += dp * pow10[pe]
		if e.price <= 0 || e.price > int64(feed.MaxPrice) {
			return w, 0, false
		}
	}
	w = deltaWindow{n: int32(n), cur: -1, front: first, last: e, lastSeq: seq, used: true, hot: hot, pe: pe}
	w.buf = make([]uint32, max(w.neededCap(keep), int32(n)))
	for i := 1; i < n; i++ {
		w.buf[i] = binary.LittleEndian.Uint32(b[off+4*(i-1):])
	}
	w.setNext()
	return w, off + 4*(n-1), true
}
