package hot

import (
	"slices"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// The detector as it was before pruning became lazy (windows in a map, the oldest entries
// dropped on every Observe): the reference TestLazyPruneMatchesEager compares against.

// eagerWindow is the history of one incarnation: a ring buffer of entries sorted by (ts,
// processing order), holding every quote newer than (newest ts − eagerWindow − lateness) plus the
// newest one at or before that horizon (the oldest possible reference).
type eagerWindow struct {
	buf     []entry // ring storage; len(buf) is the capacity
	head    int     // physical index of the oldest entry
	n       int     // number of entries
	cur     int     // logical index of the last reference found, −1 when before the front
	lastSeq uint64  // sequence of the last quote observed
	hot     bool    // the last quote observed was hot
}

// idx maps a logical index (0 = oldest) to a physical one.
func (w *eagerWindow) idx(i int) int {
	j := w.head + i
	if j >= len(w.buf) {
		j -= len(w.buf)
	}
	return j
}

// at returns the entry at logical index i.
func (w *eagerWindow) at(i int) entry { return w.buf[w.idx(i)] }

// resize moves the entries into fresh storage of capacity c ≥ n.
func (w *eagerWindow) resize(c int) {
	nb := make([]entry, c)
	if w.n > 0 {
		end := w.head + w.n
		if end <= len(w.buf) {
			copy(nb, w.buf[w.head:end])
		} else {
			k := copy(nb, w.buf[w.head:])
			copy(nb[k:], w.buf[:end-len(w.buf)])
		}
	}
	w.buf, w.head = nb, 0
}

// insert places e after every entry with ts ≤ e.ts (so among equal ts the later-processed
// quote is the later one), shifting the entries after it by one: the cost is proportional to
// the displacement, O(1) for quotes in time order.
func (w *eagerWindow) insert(e entry) {
	if w.n == len(w.buf) {
		// Grow by 25 %: windows settle at a stable size, so the slack stays small.
		w.resize(w.n + w.n/4 + 8)
	}
	pos := w.n
	for pos > 0 && w.at(pos-1).ts > e.ts {
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
}

// prune drops the entries before the newest one at or before horizon; they can no longer
// be the reference of a quote with ts ≥ horizon + eagerWindow. Cost proportional to the entries
// dropped.
func (w *eagerWindow) prune(horizon int64) {
	k := 0
	for k+1 < w.n && w.at(k+1).ts <= horizon {
		k++
	}
	if k == 0 {
		return
	}
	for i := 0; i < k; i++ {
		w.buf[w.idx(i)] = entry{}
	}
	w.head = w.idx(k)
	w.n -= k
	w.cur -= k
	if w.cur < -1 {
		w.cur = -1
	}
}

// reference returns the newest entry with ts ≤ cutoff. It starts from the previous answer,
// so for quotes in time order it moves forward a step or so: O(1) amortised.
func (w *eagerWindow) reference(cutoff int64) (entry, bool) {
	c := w.cur
	if c >= w.n {
		c = w.n - 1
	}
	for c+1 < w.n && w.at(c+1).ts <= cutoff {
		c++
	}
	for c >= 0 && w.at(c).ts > cutoff {
		c--
	}
	w.cur = c
	if c < 0 {
		return entry{}, false
	}
	return w.at(c), true
}

// Detector finds hot instruments over all incarnations. It is not safe for concurrent use:
// one pipeline goroutine drives it, in WAL order.
type eagerDetector struct {
	opts    Options
	window  int64 // opts.Window in nanoseconds
	keep    int64 // eagerWindow + lateness in nanoseconds
	windows map[uint64]*eagerWindow
	free    []*eagerWindow
}

// New returns an empty Detector; unset fields of opts take their defaults.
func newEager(opts Options) *eagerDetector {
	opts = opts.withDefaults()
	return &eagerDetector{
		opts:    opts,
		window:  int64(opts.Window),
		keep:    addSat(int64(opts.Window), int64(opts.Lateness)),
		windows: make(map[uint64]*eagerWindow),
	}
}

// Options returns the options in effect (defaults filled in).
func (d *eagerDetector) Options() Options { return d.opts }

// Observe applies one aggregated quote of an incarnation, in processing (WAL) order, and
// returns an Event when the quote is a rising edge: it is hot and the previous quote of the
// incarnation was not hot or had no reference.
//
// The reference is the newest earlier-processed quote of the incarnation with ts ≤ ts −
// eagerWindow, "newest" ordering by (ts, sequence). Sequences of one incarnation must increase
// with processing order (they do: they are WAL sequences, and quotes held back for an ADD
// are processed in arrival order right after it); so ties of ts are broken by processing
// order and no sequence is stored per quote. A quote whose seq is not above the last one
// observed for the incarnation was already applied (e.g. the WAL re-applied over a
// checkpoint) and is ignored, as is a price outside (0, feed.MaxPrice].
//
// Quotes may arrive out of time order: each is inserted at its place, at a cost proportional
// to its displacement. See Options.Lateness for quotes that are very late.
func (d *eagerDetector) Observe(isin feed.ISIN, incarnation uint64, ts int64, seq uint64, p feed.Price) (Event, bool) {
	if p <= 0 || p > feed.MaxPrice {
		return Event{}, false
	}
	w := d.windows[incarnation]
	if w == nil {
		w = d.newEagerWindow()
		d.windows[incarnation] = w
	} else if seq <= w.lastSeq {
		return Event{}, false
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
func (d *eagerDetector) Forget(incarnation uint64) {
	w := d.windows[incarnation]
	if w == nil {
		return
	}
	delete(d.windows, incarnation)
	if len(d.free) < 256 {
		d.free = append(d.free, w)
	}
}

// Hot reports whether the last quote observed for the incarnation was hot.
func (d *eagerDetector) Hot(incarnation uint64) bool {
	w := d.windows[incarnation]
	return w != nil && w.hot
}

// Len returns the number of incarnations tracked.
func (d *eagerDetector) Len() int { return len(d.windows) }

// Expire drops history that no quote with ts ≥ watermark − lateness can need: in every
// eagerWindow, the entries before the newest one at or before watermark − eagerWindow − lateness.
// It also gives back storage of windows that shrank a lot. It costs O(incarnations); call it
// now and then (e.g. once a minute of event time) with the pipeline's watermark, to bound
// the memory of instruments that stopped quoting. Results of later Observe calls within the
// lateness are unaffected.
func (d *eagerDetector) Expire(watermark int64) {
	horizon := subSat(watermark, d.keep)
	for _, w := range d.windows {
		w.prune(horizon)
		if len(w.buf) > 32 && w.n < len(w.buf)/4 {
			w.resize(2*w.n + 8)
		}
	}
}

// newEagerWindow returns an empty eagerWindow, reusing a forgotten one when possible.
func (d *eagerDetector) newEagerWindow() *eagerWindow {
	if k := len(d.free); k > 0 {
		w := d.free[k-1]
		d.free[k-1] = nil
		d.free = d.free[:k-1]
		clear(w.buf)
		*w = eagerWindow{buf: w.buf, cur: -1}
		return w
	}
	return &eagerWindow{buf: make([]entry, 8), cur: -1}
}

// AppendState is the snapshot (format version 4) as the eager detector writes it: the
// units are found by a check of every entry per candidate, independently of writeWindow,
// and the windows go in pieces of statePiece.
func (d *eagerDetector) AppendState(b []byte) []byte {
	keys := make([]uint64, 0, len(d.windows))
	for k := range d.windows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := encoding.Encbuf{B: b}
	out.PutByte(stateVersion)
	out.PutUvarint(uint64(len(keys)))
	var e encoding.Encbuf
	for i, k := range keys {
		if i%statePiece == 0 && i > 0 {
			out.PutUvarint(statePiece)
			out.PutUvarintBytes(e.Get())
			e.Reset()
		}
		w := d.windows[k]
		e.PutUvarint(k)
		e.PutUvarint(w.lastSeq)
		var flags byte
		if w.hot {
			flags |= flagHot
		}
		e.PutByte(flags)
		all := func(f func(entry) bool) bool {
			for i := 0; i < w.n; i++ {
				if !f(w.at(i)) {
					return false
				}
			}
			return true
		}
		te, tu := 0, int64(1)
		if all(func(en entry) bool { return en.ts%1_000_000 == 0 }) {
			te, tu = 6, 1_000_000
		}
		pe, pu := 6, int64(1_000_000)
		for !all(func(en entry) bool { return en.price%pu == 0 }) {
			pe, pu = pe-1, pu/10
		}
		// The fixed form: ms times and every delta within a uint16 (time) and an int16
		// (price).
		fixed := te == 6
		for i := 1; i < w.n; i++ {
			dt, dp := (w.at(i).ts-w.at(i-1).ts)/tu, (w.at(i).price-w.at(i-1).price)/pu
			if dt > 65535 || dp < -32768 || dp > 32767 {
				fixed = false
			}
		}
		units := byte(te<<4 | pe)
		if fixed {
			units |= 0x80
		}
		e.PutByte(units)
		e.PutUvarint(uint64(w.n))
		var prev entry
		for i := 0; i < w.n; i++ {
			en := w.at(i)
			switch {
			case i == 0:
				e.PutVarint(en.ts / tu)
				e.PutVarint(en.price / pu)
			case fixed:
				dt, dp := (en.ts-prev.ts)/tu, (en.price-prev.price)/pu
				e.PutBytes([]byte{byte(dt), byte(dt >> 8), byte(dp), byte(dp >> 8)})
			default:
				e.PutUvarint(uint64(en.ts-prev.ts) / uint64(tu))
				e.PutVarint((en.price - prev.price) / pu)
			}
			prev = en
		}
	}
	if len(keys) > 0 {
		out.PutUvarint(uint64((len(keys)-1)%statePiece + 1))
		out.PutUvarintBytes(e.Get())
	}
	return out.Get()
}
