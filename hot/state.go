package hot

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// stateVersion is the first byte of the snapshots AppendState writes; bump it when the
// format changes. RestoreState also reads stateVersion3, stateVersion2 and stateVersion1.
const stateVersion = 4

// Earlier formats, still read: version 3 is version 4 without the fixed form of windows
// (unitsFixed), version 2 is version 3 without the pieces (its windows one after the
// other), version 1 is version 2 without the units byte (every unit 1).
const (
	stateVersion3 = 3
	stateVersion2 = 2
	stateVersion1 = 1
)

// unitsFixed, in the units byte of a window (version 4), marks the fixed form: every entry
// after the first is 4 bytes, the time delta as a little-endian uint16 and the price delta
// as a little-endian int16 (in the window's units). A window takes it exactly when every
// delta fits: a quote a second with 4-decimal prices, the partner's feed, does.
const unitsFixed = 0x80

// maxPriceExp is the largest exponent of a window's price unit (10^6 micro-units, a whole
// unit of price); tsExpMillis is the exponent of the millisecond time unit (10^6 ns).
const (
	maxPriceExp = 6
	tsExpMillis = 6
)

// pow10 holds 10^k for k in 0..6: the units of a snapshot window.
var pow10 = [...]int64{1, 10, 100, 1_000, 10_000, 100_000, 1_000_000}

// flagHot marks a window whose last quote was hot in a snapshot.
const flagHot = 1

// ErrCorruptState is wrapped by every RestoreState error about malformed input. It also
// matches encoding.ErrCorrupt.
var ErrCorruptState = encoding.NewCorruptSentinel("corrupt hot detector state")

// AppendState appends a compact binary snapshot of all state — every window and hot flag,
// the last sequence per incarnation — to b. The output is deterministic (incarnations in
// ascending order). It does not contain the options: a snapshot can be restored into a
// Detector with other options.
//
// Format (version 4): version byte; uvarint window count; the windows in pieces of up to
// statePiece, each piece a uvarint window count (≥ 1) and a uvarint byte size, then its
// windows, which fill exactly that size (so that RestoreState decodes pieces in parallel).
//
//	┌─────────┬───────┬──────────────────────────────────────┬─────────────────┬───
//	│ version │ count │ piece: windows │ size │ window … window │ piece …         │ …
//	│ u8 = 4  │ uvar  │ uvar           │ uvar │ size bytes      │                 │
//	└─────────┴───────┴──────────────────────────────────────┴─────────────────┴───
//
// A window: uvarint incarnation, uvarint last sequence, flags byte (1 = hot), units byte,
// uvarint entry count (≥ 1), then entries oldest first: the first as varint ts/tu and
// varint price/pu, the rest in one of two forms. The units byte is F·128 + 16·te + pe: the
// window's time unit is tu = 10^te ns with te 6 (every entry time a whole millisecond) or
// 0, its price unit pu = 10^pe micro-units with pe in 0..6 the largest dividing every entry
// price. F = 0, the varint form: each entry a uvarint ts delta/tu and a varint price
// delta/pu. F = 1 (unitsFixed, only with te = 6), the fixed form: each entry 4 bytes, the
// ts delta/tu as a little-endian uint16 and the price delta/pu as a little-endian int16 —
// taken exactly when every delta fits, which makes the form a function of the points too.
//
//	fixed entry: ┌───────────────┬─────────────────┐
//	             │ Δts/tu  u16le │ Δprice/pu i16le │
//	             └───────────────┴─────────────────┘
//
// So a quote a second with 4-decimal prices, the partner's feed, takes 4 bytes a point
// (2 of time delta instead of 5, a price delta 100 times smaller), and a snapshot of it is
// written and read without a branch on the size of a value: a checkpoint of 16 million
// points is a fraction of the varint form's cost.
//
// RestoreState also reads versions 3 (without the fixed form), 2 (also without pieces) and
// 1 (also without the units byte: all values in ns and micro-units), written before.
func (d *Detector) AppendState(b []byte) []byte {
	w := appender{b: b}
	_ = d.WriteState(&w) // appender never fails
	return w.b
}

// appender is an io.Writer appending to b.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// statePiece is how many windows make one piece of a snapshot: the unit WriteState's
// workers encode (about 700 KB at the spec load).
const statePiece = 512

// WriteState writes the snapshot of AppendState to out, in pieces of statePiece windows,
// without ever holding it whole: a checkpoint of 50,000 full windows of a quote a second is
// about 67 MB (134 MB in version 1). The pieces are encoded by up to GOMAXPROCS goroutines
// while out takes the finished ones in order, so the bytes are those of one goroutine. The
// detector must not change until WriteState returns.
//
// Encoding is most of a checkpoint's cost (~90 ms of CPU at the spec load) and the pipeline's
// commit stage waits for it, with the stages before it soon blocked too: the other core is
// idle unless it takes part.
func (d *Detector) WriteState(out io.Writer) error {
	return d.writeState(out, runtime.GOMAXPROCS(0))
}

// writeState is WriteState with at most workers encoding goroutines besides the caller's
// writes (1: the caller encodes too, one piece at a time).
func (d *Detector) writeState(out io.Writer, workers int) error {
	keys := d.index.keys(make([]uint64, 0, d.index.len()))
	slices.Sort(keys)
	var e encoding.Encbuf
	e.PutByte(stateVersion)
	e.PutUvarint(uint64(len(keys)))
	if _, err := out.Write(e.Get()); err != nil {
		return fmt.Errorf("write hot state: %w", err)
	}
	pieces := (len(keys) + statePiece - 1) / statePiece
	piece := func(i int, b []byte) []byte {
		e := encoding.Encbuf{B: b[:0]}
		for _, k := range keys[i*statePiece : min((i+1)*statePiece, len(keys))] {
			switch s, _ := d.index.get(k); {
			case s&deltaBit != 0:
				writeDeltaWindow(&e, k, &d.delta[s&^deltaBit])
			case s&wideBit != 0:
				writeWindow(&e, k, &d.wide[s&^wideBit], d.wideDom)
			default:
				writeWindow(&e, k, &d.compact[s], d.cdom)
			}
		}
		return e.B
	}
	h := encoding.Encbuf{B: make([]byte, 0, 2*binary.MaxVarintLen64)} // a piece's header
	write := func(i int, b []byte) error {
		h.Reset()
		h.PutUvarint(uint64(min((i+1)*statePiece, len(keys)) - i*statePiece))
		h.PutUvarint(uint64(len(b)))
		if _, err := out.Write(h.Get()); err != nil {
			return fmt.Errorf("write hot state: %w", err)
		}
		if _, err := out.Write(b); err != nil {
			return fmt.Errorf("write hot state: %w", err)
		}
		return nil
	}
	workers = min(workers, pieces)
	if workers <= 1 {
		var b []byte
		for i := range pieces {
			b = piece(i, b)
			if err := write(i, b); err != nil {
				return err
			}
		}
		return nil
	}
	// Workers claim pieces in order, each only once it holds one of the ahead buffers, so
	// the piece the writer waits for is always done or being encoded: no deadlock, and at
	// most ahead pieces in memory.
	ahead := 2 * workers
	free := make(chan []byte, ahead)
	for range ahead {
		// Each buffer starts at the size of the largest piece of the last snapshot rather
		// than growing to it by doubling (the pieces are about the same size every time).
		free <- make([]byte, 0, d.pieceHint)
	}
	done := make([]chan []byte, pieces)
	for i := range done {
		done[i] = make(chan []byte, 1)
	}
	stop := make(chan struct{})
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				var b []byte
				select {
				case b = <-free:
				case <-stop:
					return
				}
				i := int(next.Add(1) - 1)
				if i >= pieces {
					return
				}
				done[i] <- piece(i, b)
			}
		})
	}
	defer wg.Wait()
	defer close(stop)
	for i := range pieces {
		b := <-done[i]
		if err := write(i, b); err != nil {
			return err
		}
		d.pieceHint = max(d.pieceHint, len(b)+len(b)/8)
		free <- b
	}
	return nil
}

// writeWindowHead appends what every version writes first for the window of incarnation
// inc: the incarnation, the last sequence and the flags.
func writeWindowHead(e *encoding.Encbuf, inc, lastSeq uint64, hot bool) {
	e.PutUvarint(inc)
	e.PutUvarint(lastSeq)
	var flags byte
	if hot {
		flags |= flagHot
	}
	e.PutByte(flags)
}

// writeWindow appends the window of incarnation inc to e.
func writeWindow[T word](e *encoding.Encbuf, inc uint64, w *window[T], dm domain) {
	writeWindowHead(e, inc, w.lastSeq, w.hot)
	if cw, ok := any(w).(*window[int32]); ok && dm.compact {
		// The unit is the largest that divides every present price (the snapshot is a
		// function of the window's points alone). The window's own unit divides every
		// price it stored, and is that one unless a price that needed it was pruned:
		// writeFixedPoints tells, and only then is the window written again. The fixed
		// form when every delta fits in that unit, else the varint form.
		start, pe := len(e.B), cw.pe
		for {
			e.PutByte(unitsFixed | tsExpMillis<<4 | pe)
			e.PutUvarint(uint64(w.n - w.lh))
			fits, coarser := writeFixedPoints(e, cw, dm, pe)
			if coarser && pe < maxPriceExp {
				e.B = e.B[:start]
				_, pe = windowUnits(cw, dm)
				continue
			}
			if !fits {
				e.B = e.B[:start]
				e.PutByte(tsExpMillis<<4 | pe)
				e.PutUvarint(uint64(w.n - w.lh))
				writeCompactPoints(e, cw, dm, pe)
			}
			return
		}
	}
	// The general way (a wide window, or a compact one in a domain of ns): the same bytes
	// as the compact windows' loops for the same points.
	te, pe := windowUnits(w, dm)
	fixed := te == tsExpMillis && fitsFixed(w, dm, pe)
	units := te<<4 | pe
	if fixed {
		units |= unitsFixed
	}
	e.PutByte(units)
	e.PutUvarint(uint64(w.n - w.lh))
	writeEntries(e, w, dm, te, pe, fixed)
}

// writeEntries appends the present entries of w in units of 10^te ns and 10^pe
// micro-units (which divide them), in the fixed form (every delta must fit it) or the
// varint form.
func writeEntries[T word](e *encoding.Encbuf, w *window[T], dm domain, te, pe byte, fixed bool) {
	var prev entry
	for i := w.lh; i < w.n; i++ {
		en := w.entry(dm, i)
		if i == w.lh {
			e.PutVarint(divPow10(en.ts, te))
			e.PutVarint(divPow10(en.price, pe))
		} else {
			// The difference of two times in order fits a uint64, not always an int64; the
			// quotient by 10^6 fits both.
			dt := uint64(en.ts - prev.ts)
			if te != 0 {
				dt /= uint64(msNanos)
			}
			dp := divPow10(en.price-prev.price, pe)
			if fixed {
				e.B = binary.LittleEndian.AppendUint32(e.B, uint32(dt)|uint32(dp)<<16)
			} else {
				e.PutUvarint(dt)
				e.PutVarint(dp)
			}
		}
		prev = en
	}
}

// fitsFixed reports whether every delta of w's present entries, in ms and units of 10^pe
// (which divide them), fits the fixed form: a time delta below 2^16, a price delta in
// [−2^15, 2^15).
func fitsFixed[T word](w *window[T], dm domain, pe byte) bool {
	var prev entry
	for i := w.lh; i < w.n; i++ {
		en := w.entry(dm, i)
		if i > w.lh {
			dp := divPow10(en.price-prev.price, pe)
			if uint64(en.ts-prev.ts)/uint64(msNanos) > math.MaxUint16 || dp != int64(int16(dp)) {
				return false
			}
		}
		prev = en
	}
	return true
}

// writeFirstPoint returns the present points of compact window w (as presentSegments),
// their number, the first and its price in units of 10^pe, which it appends as a window's
// first entry (ms since the epoch, price/10^pe); it appends nothing when n is 0.
func writeFirstPoint(e *encoding.Encbuf, w *window[int32], dm domain, pe byte) (segs [2][]point[int32], n int, first point[int32], p0 int64) {
	segs = w.presentSegments()
	if n = len(segs[0]) + len(segs[1]); n == 0 {
		return segs, 0, first, 0
	}
	first = segs[0][0]
	p0 = divPow10(w.pbase+int64(first.price), pe)
	e.PutVarint(dm.tbase/msNanos + int64(first.key))
	e.PutVarint(p0)
	return segs, n, first, p0
}

// writeFixedPoints appends the entries of compact window w in the fixed form (time unit
// 1 ms, price unit 10^pe; see AppendState) and reports whether every delta fits it: if not,
// the caller drops what it wrote. coarser reports that every price is a multiple of
// 10^(pe+1) too, as writeCompactPoints does. The loop has no branch that depends on a
// value: it stores 4 bytes a point unconditionally and gathers the misfits and the finer
// deltas in two words it tests once at the end.
func writeFixedPoints(e *encoding.Encbuf, w *window[int32], dm domain, pe byte) (fits, coarser bool) {
	segs, n, first, p0 := writeFirstPoint(e, w, dm, pe)
	if n == 0 {
		return true, false
	}
	b := slices.Grow(e.B, (n-1)*4)
	i, prev := len(b), first
	b = b[:i+(n-1)*4]
	inv := inv5Pow[pe]
	var misfit, finer uint64
	if !multipleOfPow10Exact(p0, 1) {
		finer = 1
	}
	for s, seg := range segs {
		if s == 0 {
			seg = seg[1:]
		}
		for _, pt := range seg {
			dt := uint64(int64(pt.key) - int64(prev.key))
			d := exactDivPow10(int64(pt.price)-int64(prev.price), pe, inv)
			prev = pt
			misfit |= dt>>16 | uint64(d+1<<15)>>16
			// d is not a multiple of 10 (see multipleOfPow10Exact): an odd d, or d/2 not a
			// multiple of 5.
			m := d >> 63
			u := uint64((d ^ m) - m)
			finer |= u&1 | b2u((u>>1)*inv5Pow[1] > max5Pow[1])
			binary.LittleEndian.PutUint32(b[i:], uint32(dt)|uint32(d)<<16)
			i += 4
		}
	}
	e.B = b
	return misfit == 0, finer == 0
}

// b2u is 1 for true and 0 for false.
func b2u(b bool) uint64 {
	var u uint64
	if b {
		u = 1
	}
	return u
}

// writeCompactPoints appends the entries of compact window w as writeWindow does (time
// unit 1 ms, price unit 10^pe), straight from its points: a compact key is a time in ms
// since the domain's base (a whole ms), so the first time is base/1 ms + key and a time
// delta is the key delta; a price delta is the delta of the points' prices, a multiple of
// 10^pe (every price is), divided exactly (exactDivPow10). It writes into room reserved
// for the worst case: a snapshot is mostly this loop (16 million points at the spec load).
//
// coarser reports that every price is a multiple of 10^(pe+1) too (the first price and
// every delta, in units of 10^pe, are multiples of 10): the loop tests each delta the way
// multipleOfPow10Exact does, on values it has in registers.
func writeCompactPoints(e *encoding.Encbuf, w *window[int32], dm domain, pe byte) (coarser bool) {
	segs, n, first, p0 := writeFirstPoint(e, w, dm, pe)
	if n == 0 {
		return false
	}
	b := slices.Grow(e.B, (n-1)*2*binary.MaxVarintLen64)
	i, prev := len(b), first
	b = b[:cap(b)]
	inv := inv5Pow[pe]
	finer := !multipleOfPow10Exact(p0, 1) // a value is not a multiple of 10
	for s, seg := range segs {
		if s == 0 {
			seg = seg[1:]
		}
		for _, pt := range seg {
			dt := uint64(int64(pt.key) - int64(prev.key))
			d := exactDivPow10(int64(pt.price)-int64(prev.price), pe, inv)
			finer = finer || !multipleOfPow10Exact(d, 1)
			dp := uint64(d<<1) ^ uint64(d>>63)
			prev = pt
			if dt < 1<<14 && dp < 1<<21 && dt >= 1<<7 {
				// The usual point: a time delta of two bytes, a price delta of one to three.
				c := b[i : i+5]
				c[0], c[1], c[2] = byte(dt)|0x80, byte(dt>>7), byte(dp)
				switch {
				case dp < 1<<7:
					i += 3
				case dp < 1<<14:
					c[2], c[3] = byte(dp)|0x80, byte(dp>>7)
					i += 4
				default:
					c[2], c[3], c[4] = byte(dp)|0x80, byte(dp>>7)|0x80, byte(dp>>14)
					i += 5
				}
				continue
			}
			i = putUvarintLong(b, i, dt)
			i = putUvarintLong(b, i, dp)
		}
	}
	e.B = b[:i]
	return !finer
}

// exactDivPow10 returns x / 10^e for x a multiple of 10^e, e in 0..6, given inv =
// inv5Pow[e]: x / 2^e by an exact arithmetic shift, then / 5^e as a multiplication by the
// inverse of 5^e modulo 2^64 (exact division by an odd number).
func exactDivPow10(x int64, e byte, inv uint64) int64 {
	return int64(uint64(x>>e) * inv)
}

// inv5Pow[e] is the inverse of 5^e modulo 2^64.
var inv5Pow = [...]uint64{
	1,
	0xcccccccccccccccd,
	0x8f5c28f5c28f5c29,
	0x1cac083126e978d5,
	0xd288ce703afb7e91,
	0x5d4e8fb00bcbe61d,
	0x790fb65668c26139,
}

// max5Pow[e] is (2^64 − 1) / 5^e: multiplied by inv5Pow[e], exactly the multiples of 5^e
// give at most this (multipleOfPow10Exact).
var max5Pow = [...]uint64{
	0xffffffffffffffff,
	0x3333333333333333,
	0xa3d70a3d70a3d70,
	0x20c49ba5e353f7c,
	0x68db8bac710cb2,
	0x14f8b588e368f0,
	0x431bde82d7b63,
}

// putUvarintLong writes x as a uvarint at b[i:], which has room for it, and returns the
// index after it.
func putUvarintLong(b []byte, i int, x uint64) int { return i + binary.PutUvarint(b[i:], x) }

// presentSegments returns the present points of w, oldest first, as the (up to) two runs
// of the ring they occupy.
func (w *window[T]) presentSegments() [2][]point[T] {
	start, n := w.idx(w.lh), int(w.n-w.lh)
	segs := [2][]point[T]{w.buf[start:min(int(start)+n, len(w.buf))]}
	segs[1] = w.buf[:n-len(segs[0])]
	return segs
}

// multipleOfPow10Exact reports whether 10^e divides x, e in 0..6, the way exactDivPow10
// divides: |x| is a multiple of 10^e exactly when its low e bits are zero and |x|/2^e times
// the inverse of 5^e modulo 2^64 is at most (2^64 − 1)/5^e (the multiples of an odd d are
// the values that multiplication maps into [0, (2^64 − 1)/d], max5Pow). One
// multiplication, no division: Observe tests every quote's price, a snapshot every delta.
func multipleOfPow10Exact(x int64, e byte) bool {
	m := x >> 63
	u := uint64((x ^ m) - m) // |x|
	return u&(uint64(1)<<e-1) == 0 && (u>>e)*inv5Pow[e] <= max5Pow[e]
}

// unitOf returns the largest k ≤ pe such that 10^k divides p.
func unitOf(p int64, pe byte) byte {
	for !multipleOfPow10Exact(p, pe) {
		pe--
	}
	return pe
}

// windowUnits returns the exponents of the units of w's present entries: te is
// tsExpMillis when every entry time is a whole millisecond, else 0; pe is the largest k ≤
// maxPriceExp such that 10^k divides every entry price. The differences of the entries are
// then multiples of the units too.
func windowUnits[T word](w *window[T], dm domain) (te, pe byte) {
	// A compact window's times are whole milliseconds (see domain).
	te, pe = tsExpMillis, maxPriceExp
	checkTS := !dm.compact
	for i := w.lh; i < w.n; i++ {
		en := w.entry(dm, i)
		if checkTS && en.ts%msNanos != 0 { // the exact remainder: 0 for negative multiples too
			te, checkTS = 0, false
		}
		pe = unitOf(en.price, pe)
		if !checkTS && pe == 0 {
			break
		}
	}
	return te, pe
}

// divPow10 returns x / 10^e, e in 0..6, by a constant divisor (a multiplication, not a
// division instruction: WriteState divides every value of a snapshot).
func divPow10(x int64, e byte) int64 {
	switch e {
	case 1:
		return x / 10
	case 2:
		return x / 100
	case 3:
		return x / 1_000
	case 4:
		return x / 10_000
	case 5:
		return x / 100_000
	case 6:
		return x / 1_000_000
	}
	return x
}

// decodeUnits returns the time and price units of a version-2 units byte, and false when
// an exponent is out of range.
func decodeUnits(u byte) (tu, pu int64, ok bool) {
	te, pe := u>>4, u&0x0f
	if te != 0 && te != tsExpMillis || pe > maxPriceExp {
		return 0, 0, false
	}
	return pow10[te], pow10[pe], true
}

// mulChecked returns a × unit and whether it did not overflow int64; unit > 0.
func mulChecked(a, unit int64) (int64, bool) {
	if a > math.MaxInt64/unit || a < math.MinInt64/unit {
		return 0, false
	}
	return a * unit, true
}

// RestoreState replaces all state of d with the snapshot b written by AppendState. After
// it, Observe continues exactly as the snapshotted detector would have. On error d is
// unchanged.
func (d *Detector) RestoreState(b []byte) error {
	newest, ok := newestTime(b)
	return d.restoreState(b, newest, ok)
}

// RestoreStateNear is RestoreState with the time base of the compact windows taken from
// t, a time at or shortly after the snapshot's newest quote (the watermark of the
// checkpoint the snapshot came with), instead of from a pass over the snapshot that finds
// that quote (40 % of a restore). The base decides only which windows are compact, never
// a result: a window whose points do not fit it is restored in the wide form.
func (d *Detector) RestoreStateNear(b []byte, t int64) error {
	if t == math.MinInt64 {
		return d.RestoreState(b) // no time known
	}
	return d.restoreState(b, t, true)
}

// restoreState restores b with the compact time base near newest, if baseKnown.
func (d *Detector) restoreState(b []byte, newest int64, baseKnown bool) error {
	return d.restoreStateWorkers(b, newest, baseKnown, runtime.GOMAXPROCS(0))
}

// restoreStateWorkers is restoreState decoding the pieces of a version-3 snapshot on up to
// workers goroutines; the result, and the error for a bad snapshot, do not depend on it.
func (d *Detector) restoreStateWorkers(b []byte, newest int64, baseKnown bool, workers int) error {
	if len(b) == 0 {
		return fmt.Errorf("restore hot state: empty snapshot: %w", ErrCorruptState)
	}
	r := encoding.NewDecbuf(b)
	version := r.Byte()
	if version < stateVersion1 || version > stateVersion {
		return fmt.Errorf("restore hot state: unknown version %d: %w", version, ErrCorruptState)
	}
	// Every window takes at least 4 bytes: reject absurd counts before allocating.
	count := r.Count(4)
	if err := r.Err(); err != nil {
		return fmt.Errorf("restore hot state: bad window count: %w: %w", ErrCorruptState, err)
	}
	// The compact windows' time base: the newest time in the snapshot (RestoreState's
	// first pass) or near it (RestoreStateNear's caller), so that the recent points,
	// which are most of them, fit.
	nd := New(d.opts)
	nd.noDelta = d.noDelta
	if baseKnown {
		nd.setBase(newest)
	}
	var pieces []statePieceRef
	if version >= stateVersion3 {
		var err error
		if pieces, err = readPieces(&r, count); err != nil {
			return err
		}
	} else {
		// One piece: the windows one after the other, up to the end.
		pieces = []statePieceRef{{b: r.Get(), windows: count}}
		r.Bytes(r.Len())
	}
	decoded := make([][]decodedWindow, len(pieces))
	errs := make([]error, len(pieces))
	decodeOne := func(i int) {
		decoded[i], errs[i] = decodeWindows(pieces[i], version, nd.cdom, nd.baseSet, !nd.noDelta, d.keep)
	}
	if workers = min(workers, len(pieces)); workers <= 1 {
		for i := range pieces {
			if decodeOne(i); errs[i] != nil {
				break
			}
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < len(pieces); i = int(next.Add(1) - 1) {
					decodeOne(i)
				}
			})
		}
		wg.Wait()
	}
	for i := range pieces {
		if errs[i] != nil {
			return errs[i]
		}
		for j := range decoded[i] {
			w := &decoded[i][j]
			if _, dup := nd.index.get(w.inc); dup {
				return fmt.Errorf("restore hot state: incarnation %d twice: %w", w.inc, ErrCorruptState)
			}
			switch w.form {
			case formDelta:
				s := nd.allocDelta(w.inc)
				nd.delta[s] = w.d
				nd.index.put(w.inc, s|deltaBit)
			case formCompact:
				s := nd.allocCompact(w.inc)
				nd.compact[s] = w.c
				nd.index.put(w.inc, s)
			default:
				s := nd.allocWide(w.inc)
				nd.wide[s] = w.w
				nd.index.put(w.inc, s|wideBit)
			}
		}
	}
	*d = *nd
	return nil
}

// statePieceRef is a piece of a snapshot: its bytes, which hold exactly windows windows.
type statePieceRef struct {
	b       []byte
	windows int
}

// readPieces splits the rest of a version-3 snapshot, after its window count, into its
// pieces, checking their headers: every piece has at least one window, the windows add up
// to count, the sizes to what is left.
func readPieces(r *encoding.Decbuf, count int) ([]statePieceRef, error) {
	pieces := make([]statePieceRef, 0, (count+statePiece-1)/statePiece)
	for left := count; left > 0; {
		n := r.Uvarint()
		size := r.Uvarint()
		if err := r.Err(); err != nil {
			return nil, fmt.Errorf("restore hot state: truncated piece header: %w: %w", ErrCorruptState, err)
		}
		if size > uint64(r.Len()) {
			return nil, fmt.Errorf("restore hot state: truncated: a piece of %d bytes, %d left: %w", size, r.Len(), ErrCorruptState)
		}
		// Every window takes at least 4 bytes.
		if n == 0 || n > uint64(left) || n > size/4 {
			return nil, fmt.Errorf("restore hot state: bad piece of %d windows in %d bytes (%d windows and %d bytes left): %w", n, size, left, r.Len(), ErrCorruptState)
		}
		pieces = append(pieces, statePieceRef{b: r.Bytes(int(size)), windows: int(n)})
		left -= int(n)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("restore hot state: %d trailing bytes: %w", r.Len(), ErrCorruptState)
	}
	return pieces, nil
}

// decodedWindow is a window of a snapshot, decoded: delta (d), compact (c) or wide (w).
type decodedWindow struct {
	inc  uint64
	form windowForm
	d    deltaWindow
	c    window[int32]
	w    window[int64]
}

// windowForm is the form of a decodedWindow.
type windowForm byte

const (
	formWide windowForm = iota
	formCompact
	formDelta
)

// decodeWindows decodes the windows of piece p of a snapshot of the given version into
// delta windows (when deltas is set and a window is in the fixed form), windows of the
// compact domain cdom (its base set if baseSet) or wide ones. keep is the span windows
// keep (window + lateness, in ns): a window still filling gets the capacity it will grow
// to (window.neededCap).
func decodeWindows(p statePieceRef, version byte, cdom domain, baseSet, deltas bool, keep int64) ([]decodedWindow, error) {
	r := encoding.NewDecbuf(p.b)
	out := make([]decodedWindow, 0, p.windows)
	var es []entry
	var scratch []point[int32]
	for range p.windows {
		inc := r.Uvarint()
		seq := r.Uvarint()
		flags := r.Byte()
		units := byte(0) // version 1: every unit 1
		if version != stateVersion1 {
			units = r.Byte()
		}
		plain, fixed := splitUnits(version, units)
		n := r.Uvarint()
		if err := r.Err(); err != nil {
			return nil, fmt.Errorf("restore hot state: truncated: %w: %w", ErrCorruptState, err)
		}
		if flags&^flagHot != 0 {
			return nil, fmt.Errorf("restore hot state: incarnation %d: bad flags %#x: %w", inc, flags, ErrCorruptState)
		}
		hot := flags&flagHot != 0
		tu, pu, ok := decodeUnits(plain)
		if !ok || fixed && tu != msNanos {
			return nil, fmt.Errorf("restore hot state: incarnation %d: bad units %#x: %w", inc, units, ErrCorruptState)
		}
		// Every entry takes at least 2 bytes.
		if n == 0 || n > uint64(r.Len())/2 || n > math.MaxInt32/2 {
			return nil, fmt.Errorf("restore hot state: incarnation %d: bad entry count: %w", inc, ErrCorruptState)
		}
		if fixed && deltas {
			// The partner's feed: the entries as they are, into a delta window.
			if w, used, ok := decodeDelta(r.Get(), int(n), units&0x0f, seq, hot, keep); ok {
				r.Bytes(used)
				out = append(out, decodedWindow{inc: inc, form: formDelta, d: w})
				continue
			}
		}
		if tu == msNanos && baseSet {
			// Straight into a compact window, if it fits.
			if cap(scratch) < int(n) {
				scratch = make([]point[int32], n)
			}
			if w, used, ok := decodeCompact(r.Get(), cdom, scratch[:n], units&0x0f, fixed, seq, hot, keep/msNanos); ok {
				r.Bytes(used)
				out = append(out, decodedWindow{inc: inc, form: formCompact, c: w})
				continue
			}
		}
		es = es[:0]
		var prev entry
		for i := range int(n) {
			// The first entry's values are absolute, the others' are differences from the
			// previous entry (dt ≥ 0); all are in units of tu and pu.
			var t, p int64
			var dt uint64
			if i == 0 {
				t, p = r.Varint(), r.Varint()
			} else {
				dt, p = readDelta(&r, fixed)
			}
			if err := r.Err(); err != nil {
				return nil, fmt.Errorf("restore hot state: truncated: %w: %w", ErrCorruptState, err)
			}
			if i > 0 {
				if dt > uint64(math.MaxInt64/tu) || prev.ts > math.MaxInt64-int64(dt)*tu {
					return nil, fmt.Errorf("restore hot state: incarnation %d: ts %d + %d × %d ns overflows: %w", inc, prev.ts, dt, tu, ErrCorruptState)
				}
				t = prev.ts + int64(dt)*tu
			} else {
				v, ok := mulChecked(t, tu)
				if !ok {
					return nil, fmt.Errorf("restore hot state: incarnation %d: ts %d × %d ns overflows: %w", inc, t, tu, ErrCorruptState)
				}
				t = v
			}
			v, ok := mulChecked(p, pu)
			if !ok {
				what := "price"
				if i > 0 {
					what = "price delta"
				}
				return nil, fmt.Errorf("restore hot state: incarnation %d: %s %d × %d overflows: %w", inc, what, p, pu, ErrCorruptState)
			}
			p = v
			if i > 0 {
				// prev.price is in (0, MaxPrice]: the sum can only overflow past MaxInt64,
				// to a negative price, rejected below.
				p += prev.price
			}
			e := entry{ts: t, price: p}
			if e.price <= 0 || e.price > int64(feed.MaxPrice) {
				return nil, fmt.Errorf("restore hot state: incarnation %d: bad price %d: %w", inc, e.price, ErrCorruptState)
			}
			es = append(es, e)
			prev = e
		}
		out = append(out, restoredWindow(cdom, baseSet, inc, seq, hot, es))
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("restore hot state: %d trailing bytes: %w", r.Len(), ErrCorruptState)
	}
	return out, nil
}

// splitUnits returns a window's units byte of a snapshot of the given version without the
// form's bit, and whether the window is in the fixed form (version 4 on).
func splitUnits(version, units byte) (plain byte, fixed bool) {
	if version >= stateVersion && units&unitsFixed != 0 {
		return units &^ unitsFixed, true
	}
	return units, false
}

// readDelta reads an entry after a window's first: its time and price deltas, in the
// window's units, in the fixed form or the varint form. Errors are left in r.
func readDelta(r *encoding.Decbuf, fixed bool) (dt uint64, dp int64) {
	if !fixed {
		return r.Uvarint(), r.Varint()
	}
	if b := r.Bytes(4); r.Err() == nil {
		return fixedEntry(b)
	}
	return 0, 0
}

// fixedEntry decodes an entry of the fixed form: the time and price deltas.
func fixedEntry(b []byte) (dt uint64, dp int64) {
	v := binary.LittleEndian.Uint32(b)
	return uint64(uint16(v)), int64(int16(v >> 16))
}

// decodeCompact decodes the len(scratch) entries of a window (versions 2 to 4; fixed: in
// the fixed form) with millisecond times at the front of b into a compact window of domain
// dm (its base set) with price unit 10^pe, and returns the bytes used. The points are
// decoded into scratch first and then copied into a buffer sized for the window's
// growth, given keepMs (window.neededCap): one still filling, as every window is in the
// first minutes of a feed, would otherwise be copied into a bigger one on its next
// quotes, every window of them during the recovery that follows a restart. ok is false when an entry is malformed or does not
// fit a compact window: the caller then decodes the window the general way, which reports
// the error or makes the window wide. It gives what the general way gives, without the
// intermediate entries: a key is the previous one plus the time delta (both in ms).
func decodeCompact(b []byte, dm domain, scratch []point[int32], pe byte, fixed bool, seq uint64, hot bool, keepMs int64) (w window[int32], used int, ok bool) {
	n := len(scratch)
	pu := pow10[pe]
	first, off, ok := readFirstEntry(b, pe)
	if !ok {
		return w, 0, false
	}
	key, ok := dm.pointKey(first.ts)
	if !ok {
		return w, 0, false
	}
	price := first.price
	pbase, k := price, int64(key)
	buf := scratch
	if fixed && n-1 > (len(b)-off)/4 {
		return w, 0, false
	}
	for i := 1; i < n; i++ {
		// |dp| < 2^40 (the fixed form's < 2^15) and pu ≤ 10^6: the product and the sums
		// below cannot overflow before the check of each entry; dt ≥ 0 keeps the keys in
		// order.
		var dt uint64
		var dp int64
		if fixed {
			dt, dp = fixedEntry(b[off:])
			off += 4
		} else {
			var k1, k2 int
			if dt, k1 = binary.Uvarint(b[off:]); k1 <= 0 || dt > math.MaxInt32 {
				return w, 0, false
			}
			off += k1
			if dp, k2 = binary.Varint(b[off:]); k2 <= 0 || dp >= 1<<40 || dp <= -1<<40 {
				return w, 0, false
			}
			off += k2
		}
		k += int64(dt)
		price += dp * pu
		rel := price - pbase
		if k > math.MaxInt32 || price <= 0 || price > int64(feed.MaxPrice) || rel != int64(int32(rel)) {
			return w, 0, false
		}
		buf[i] = point[int32]{key: int32(k), price: int32(rel)}
	}
	// The newest time, tbase + k ms, must not overflow (the general way checks every time).
	// |k| < 2^31, so k ms fits.
	if _, ok := subChecked(dm.tbase, -k*msNanos); !ok {
		return w, 0, false
	}
	buf[0] = point[int32]{key: key}
	w = window[int32]{buf: buf, n: int32(n), cur: -1, lastSeq: seq, pbase: pbase, used: true, hot: hot, pe: pe}
	w.buf = make([]point[int32], w.neededCap(keepMs))
	copy(w.buf, buf)
	w.setNext()
	return w, off, true
}

// readFirstEntry reads the first entry of a window in units of 1 ms and 10^pe at the
// front of b (two varints), and returns it and the bytes used; ok is false when it is
// malformed, its time overflows or its price is not in (0, feed.MaxPrice].
func readFirstEntry(b []byte, pe byte) (e entry, used int, ok bool) {
	t, k1 := binary.Varint(b)
	if k1 <= 0 {
		return e, 0, false
	}
	p, k2 := binary.Varint(b[k1:])
	if k2 <= 0 {
		return e, 0, false
	}
	ts, ok1 := mulChecked(t, msNanos)
	price, ok2 := mulChecked(p, pow10[pe])
	if !ok1 || !ok2 || price <= 0 || price > int64(feed.MaxPrice) {
		return e, 0, false
	}
	return entry{ts: ts, price: price}, k1 + k2, true
}

// restoredWindow returns the window of incarnation inc holding es (oldest first), compact
// (of domain cdom) when it fits.
func restoredWindow(cdom domain, baseSet bool, inc, seq uint64, hot bool, es []entry) decodedWindow {
	fits := baseSet
	for _, e := range es {
		_, ok := cdom.pointKey(e.ts)
		if dp := e.price - es[0].price; !ok || dp != int64(int32(dp)) {
			fits = false
			break
		}
	}
	if fits {
		return decodedWindow{inc: inc, form: formCompact, c: restored[int32](cdom, es[0].price, seq, hot, es)}
	}
	return decodedWindow{inc: inc, form: formWide, w: restored[int64](domain{}, 0, seq, hot, es)}
}

// restored returns a window holding es in domain dm with price base pbase; every entry
// must fit.
func restored[T word](dm domain, pbase int64, seq uint64, hot bool, es []entry) window[T] {
	w := window[T]{buf: make([]point[T], grownCap(int32(len(es)))), n: int32(len(es)), cur: -1, lastSeq: seq, pbase: pbase, used: true, hot: hot}
	for i, e := range es {
		k := e.ts
		if dm.compact {
			ck, _ := dm.pointKey(e.ts)
			k = int64(ck)
		}
		w.buf[i] = point[T]{key: T(k), price: T(e.price - pbase)}
	}
	w.setNext()
	if dm.compact {
		_, w.pe = windowUnits(&w, dm) // only compact windows keep a unit
	}
	return w
}

// newestTime returns the largest entry time in the snapshot b (version 1 to 4), reading
// it without checks (RestoreState checks); ok is false when there is none.
func newestTime(b []byte) (int64, bool) {
	r := encoding.NewDecbuf(b)
	version := r.Byte()
	count := r.Uvarint()
	newest, ok := int64(math.MinInt64), false
	inPiece := uint64(0) // windows left in the current piece (version 3)
	for c := uint64(0); c < count && r.Err() == nil; c++ {
		if version >= stateVersion3 && inPiece == 0 {
			inPiece = r.Uvarint()
			r.Uvarint() // its size
			if inPiece == 0 {
				break
			}
		}
		inPiece--
		r.Uvarint()
		r.Uvarint()
		r.Byte()
		tu, fixed := int64(1), false
		if version != stateVersion1 {
			var units byte
			units, fixed = splitUnits(version, r.Byte())
			u, _, valid := decodeUnits(units)
			if !valid {
				break
			}
			tu = u
		}
		n := r.Uvarint()
		var ts int64
		for i := uint64(0); i < n && r.Err() == nil; i++ {
			if i == 0 {
				ts = r.Varint() * tu
				r.Varint()
			} else {
				dt, _ := readDelta(&r, fixed)
				ts += int64(dt) * tu
			}
		}
		if n > 0 && r.Err() == nil {
			newest, ok = max(newest, ts), true
		}
	}
	return newest, ok
}
