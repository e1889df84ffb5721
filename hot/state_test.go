package hot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// appendStateV1 appends the snapshot of d in format version 1, as the code before version
// 2 wrote it: no units byte, times in ns and prices in micro-units.
func appendStateV1(d *Detector, b []byte) []byte {
	keys := d.index.keys(nil)
	slices.Sort(keys)
	e := encoding.Encbuf{B: b}
	e.PutByte(stateVersion1)
	e.PutUvarint(uint64(len(keys)))
	for _, k := range keys {
		switch s, _ := d.index.get(k); {
		case s&deltaBit != 0:
			appendWindowV1(&e, k, wideCopy(deltaAt(d, s)), domain{})
		case s&wideBit != 0:
			appendWindowV1(&e, k, &d.wide[s&^wideBit], d.wideDom)
		default:
			appendWindowV1(&e, k, &d.compact[s], d.cdom)
		}
	}
	return e.Get()
}

// deltaAt returns the delta window of slot s (as the index stores it).
func deltaAt(d *Detector, s int32) *deltaWindow { return &d.delta[s&^deltaBit] }

// wideCopy returns the points of delta window w as a wide window, which the writers of
// the formats of before the delta form take.
func wideCopy(w *deltaWindow) *window[int64] {
	var c window[int64]
	if !fromDelta(&c, w, domain{}, 0) {
		panic("a delta window does not fit the wide form")
	}
	return &c
}

func appendWindowV1[T word](e *encoding.Encbuf, inc uint64, w *window[T], dm domain) {
	writeWindowHead(e, inc, w.lastSeq, w.hot)
	e.PutUvarint(uint64(w.n - w.lh))
	var prev entry
	for i := w.lh; i < w.n; i++ {
		en := w.entry(dm, i)
		if i == w.lh {
			e.PutVarint(en.ts)
			e.PutVarint(en.price)
		} else {
			e.PutUvarint(uint64(en.ts - prev.ts))
			e.PutVarint(en.price - prev.price)
		}
		prev = en
	}
}

// appendStateV3 appends the snapshot of d in format version 3, as the code before version
// 4 wrote it: every window in the varint form, in pieces of statePiece windows.
func appendStateV3(d *Detector, b []byte) []byte {
	keys := d.index.keys(nil)
	slices.Sort(keys)
	e := encoding.Encbuf{B: b}
	e.PutByte(stateVersion3)
	e.PutUvarint(uint64(len(keys)))
	var piece encoding.Encbuf
	for i, k := range keys {
		switch s, _ := d.index.get(k); {
		case s&deltaBit != 0:
			appendWindowV3(&piece, k, wideCopy(deltaAt(d, s)), domain{})
		case s&wideBit != 0:
			appendWindowV3(&piece, k, &d.wide[s&^wideBit], d.wideDom)
		default:
			appendWindowV3(&piece, k, &d.compact[s], d.cdom)
		}
		if (i+1)%statePiece == 0 || i == len(keys)-1 {
			e.PutUvarint(uint64(i%statePiece + 1))
			e.PutUvarintBytes(piece.Get())
			piece.Reset()
		}
	}
	return e.Get()
}

func appendWindowV3[T word](e *encoding.Encbuf, inc uint64, w *window[T], dm domain) {
	writeWindowHead(e, inc, w.lastSeq, w.hot)
	te, pe := windowUnits(w, dm)
	e.PutByte(te<<4 | pe)
	e.PutUvarint(uint64(w.n - w.lh))
	writeEntries(e, w, dm, te, pe, false)
}

// snapshotUnits returns the number of windows of a version-4 snapshot by units byte
// (without unitsFixed; under the key unitsFixed, the number in the fixed form), and checks
// that each window's units are the largest its entries allow, that it is in the fixed form
// exactly when its times are in ms and every delta fits, and that its pieces are as long
// as their headers say.
func snapshotUnits(t *testing.T, b []byte) map[byte]int {
	t.Helper()
	r := encoding.NewDecbuf(b)
	if v := r.Byte(); v != stateVersion {
		t.Fatalf("snapshot version %d, want %d", v, stateVersion)
	}
	out := map[byte]int{}
	count := r.Uvarint()
	var inPiece uint64     // windows left in the piece
	pieceEnd := r.Offset() // offset where the piece must end
	for range count {
		if inPiece == 0 {
			if r.Offset() != pieceEnd {
				t.Fatalf("a piece ends at %d, its header said %d", r.Offset(), pieceEnd)
			}
			inPiece = r.Uvarint()
			size := r.Uvarint()
			pieceEnd = r.Offset() + int(size)
			if inPiece == 0 || inPiece > statePiece {
				t.Fatalf("piece of %d windows", inPiece)
			}
		}
		inPiece--
		r.Uvarint()
		r.Uvarint()
		r.Byte()
		u := r.Byte()
		fixed := u&unitsFixed != 0
		u &^= unitsFixed
		tu, pu, ok := decodeUnits(u)
		if !ok {
			t.Fatalf("bad units %#x", u)
		}
		out[u]++
		if fixed {
			out[unitsFixed]++
		}
		// Whether every time is a whole ms, every price (in units) a multiple of 10, and
		// every delta would fit the fixed form.
		ms, tens, fits := true, true, tu == msNanos
		var ts, p int64
		for i := range r.Uvarint() {
			var dt, dp int64
			switch {
			case i == 0:
				ts, p = r.Varint(), r.Varint()
			case fixed:
				b := r.Bytes(4)
				dt, dp = int64(binary.LittleEndian.Uint16(b)), int64(int16(binary.LittleEndian.Uint16(b[2:])))
			default:
				dt, dp = int64(r.Uvarint()), r.Varint()
			}
			ts, p = ts+dt, p+dp
			fits = fits && dt <= math.MaxUint16 && dp == int64(int16(dp))
			ms = ms && (tu != 1 || ts%1_000_000 == 0)
			tens = tens && p%10 == 0
		}
		if fixed != fits {
			t.Errorf("units %#x: fixed form %v, but the deltas fit it: %v", u, fixed, fits)
		}
		if tu == 1 && ms {
			t.Errorf("units %#x: every time is a whole ms, yet the time unit is 1 ns", u)
		}
		if pu < 1_000_000 && tens {
			t.Errorf("units %#x: every price is a multiple of %d", u, 10*pu)
		}
	}
	if inPiece != 0 || r.Offset() != pieceEnd {
		t.Fatalf("the last piece: %d windows missing, ends at %d, its header said %d", inPiece, r.Offset(), pieceEnd)
	}
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
	return out
}

// quantized returns s with the price of every quote rounded down to a multiple of its
// incarnation's unit (10^0, 10^2, 10^4 or 10^6 micro-units), except about one in 150 that
// keeps all its digits, and the naive detector's answers for the new prices. Its
// snapshots' windows have all price units, and units that change as quotes with more
// digits come and go.
func quantized(s stream, seed uint64) stream {
	rng := rand.New(rand.NewPCG(seed, 4))
	nv := newNaive(s.opts.Threshold, s.opts.Window)
	out := stream{opts: s.opts, ops: slices.Clone(s.ops)}
	for i := range out.ops {
		o := &out.ops[i]
		switch o.kind {
		case 'f':
			nv.forget(o.inc)
		case 'q':
			if rng.IntN(150) != 0 {
				u := pow10[2*(o.inc%4)]
				o.price = feed.Price(max(int64(o.price)/u*u, u))
			}
			if ev, ok := nv.observe(o.isin, o.inc, o.ts, o.seq, int64(o.price)); ok {
				out.events = append(out.events, ev)
			}
		}
	}
	out.hot = nv.hot
	return out
}

// TestStateV1Golden: a snapshot of the previous format, version 1, restores to the state
// of the detector that wrote it, which then continues exactly as if uninterrupted.
// testdata/state-v1.golden was written by AppendState of the code before format version 2
// (hot/state.go of b52b778; committed in f76b8aa), of a detector after the first half of
// genStream(100, 12, 3000): mixed ms and ns times, compact and wide windows, hot and not.
// Never regenerate it: the code writes version 2 now.
func TestStateV1Golden(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "state-v1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if golden[0] != stateVersion1 {
		t.Fatalf("golden of version %d, want 1", golden[0])
	}
	s := genStream(100, 12, 3000)
	k := len(s.ops) / 2
	a := New(s.opts)
	got := run(a, s.ops[:k])
	if !bytes.Equal(appendStateV1(a, nil), golden) {
		t.Fatal("the golden is not the version-1 snapshot of genStream(100, 12, 3000) after half its ops: did genStream change?")
	}
	want := a.AppendState(nil)
	tg, okg := newestTime(golden)
	if tw, okw := newestTime(want); !okg || tg != tw || !okw {
		t.Fatalf("newestTime of the golden %d %v, of version 2 %d %v", tg, okg, tw, okw)
	}
	b := New(s.opts)
	b.Observe(testISIN, 1<<60, t0, 1, 1) // state that the restore must replace
	if err := b.RestoreState(golden); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.AppendState(nil), want) {
		t.Fatal("the golden restores to another state than the detector that wrote it")
	}
	got = append(got, run(b, s.ops[k:])...)
	compareEvents(t, got, s.events)
	full := New(s.opts)
	run(full, s.ops)
	if !bytes.Equal(b.AppendState(nil), full.AppendState(nil)) {
		t.Fatal("final state differs from the uninterrupted run")
	}
	t.Logf("%d windows: %d bytes in version 1, %d in version 2", a.Len(), len(golden), len(want))
}

// TestSnapshotSize: the snapshot of the spec load (here 400 instruments of 330 points, see
// BenchmarkSnapshotSize for 50,000) takes under 5 bytes a point, at least 40 % less than
// version 1, and restores.
func TestSnapshotSize(t *testing.T) {
	d := specWindows(400, 330)
	v2, v1 := d.AppendState(nil), appendStateV1(d, nil)
	points := storedPoints(d)
	t.Logf("%d points: version 2 %d bytes (%.2f B/point), version 1 %d bytes (%.2f B/point)",
		points, len(v2), float64(len(v2))/float64(points), len(v1), float64(len(v1))/float64(points))
	if units := snapshotUnits(t, v2); units[tsExpMillis<<4|2] == 0 { // 4 decimals: multiples of 100 micro-units
		t.Errorf("no window in ms and 4-decimal prices: %v", units)
	}
	if len(v2) > 5*points || len(v2) > len(v1)*6/10 {
		t.Errorf("snapshot of %d bytes: not much smaller than version 1 (%d)", len(v2), len(v1))
	}
	r := New(DefaultOptions())
	if err := r.RestoreState(v2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.AppendState(nil), v2) {
		t.Fatal("restored state differs")
	}
}

// TestDecodeCompact: the fast path of RestoreState decodes every window of the partner's
// feed (ms times, 4-decimal prices) and gives the window the general decoding gives.
func TestDecodeCompact(t *testing.T) {
	snap := specWindows(500, 40).AppendState(nil)
	newest, _ := newestTime(snap)
	dm := domain{compact: true, tbase: newest - newest%msNanos}
	keepMs := New(DefaultOptions()).keep / msNanos
	r := encoding.NewDecbuf(snap)
	r.Byte()
	count := r.Uvarint()
	if count > statePiece {
		t.Fatalf("%d windows: more than one piece", count)
	}
	if n, size := r.Uvarint(), r.Uvarint(); n != count || size != uint64(r.Len()) {
		t.Fatalf("piece of %d windows in %d bytes, want all %d windows in the %d bytes left", n, size, count, r.Len())
	}
	for range count {
		inc, seq, flags, units, n := r.Uvarint(), r.Uvarint(), r.Byte(), r.Byte(), int(r.Uvarint())
		if units&unitsFixed == 0 {
			t.Fatalf("incarnation %d: units %#x, want the fixed form", inc, units)
		}
		units &^= unitsFixed
		tu, pu, ok := decodeUnits(units)
		if !ok || tu != msNanos {
			t.Fatalf("incarnation %d: units %#x, want ms times", inc, units)
		}
		got, used, ok := decodeCompact(r.Get(), dm, make([]point[int32], n), units&0x0f, true, seq, flags&flagHot != 0, keepMs)
		if !ok {
			t.Fatalf("incarnation %d: not decoded by the fast path", inc)
		}
		// The general way, written out: absolute first entry, then 4-byte deltas.
		start := r.Offset()
		es := make([]entry, n)
		for i := range es {
			var e entry
			if i == 0 {
				e = entry{ts: r.Varint() * tu, price: r.Varint() * pu}
			} else {
				b := r.Bytes(4)
				dt, dp := binary.LittleEndian.Uint16(b), int16(binary.LittleEndian.Uint16(b[2:]))
				e = entry{ts: es[i-1].ts + int64(dt)*tu, price: es[i-1].price + int64(dp)*pu}
			}
			es[i] = e
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		if r.Offset()-start != used {
			t.Fatalf("incarnation %d: fast path used %d bytes, the window has %d", inc, used, r.Offset()-start)
		}
		want := restored[int32](dm, es[0].price, seq, flags&flagHot != 0, es)
		if !slices.Equal(got.buf[:got.n], want.buf[:want.n]) || got.n != want.n || got.next != want.next || got.pbase != want.pbase ||
			got.lastSeq != want.lastSeq || got.hot != want.hot || got.cur != want.cur {
			t.Fatalf("incarnation %d: fast path window %+v, want %+v", inc, got, want)
		}
	}
}

// TestRestoredFillingWindowsGrowOnce: a window restored while still filling (its points
// span less than the window + lateness, as in the first minutes of a feed) gets room for
// the rest at once, so the quotes re-applied after a restart do not copy it again; in the
// delta form and in the compact one.
func TestRestoredFillingWindowsGrowOnce(t *testing.T) {
	const instruments, points, more = 300, 40, 200
	snap := specWindows(instruments, points).AppendState(nil)
	for _, noDelta := range []bool{false, true} {
		d := New(DefaultOptions())
		d.noDelta = noDelta
		if err := d.RestoreState(snap); err != nil {
			t.Fatal(err)
		}
		// window returns the number of points of incarnation i's window, its storage and
		// its newest price.
		window := func(i int) (int32, any, int64) {
			s, ok := d.index.get(uint64(i) + 1)
			switch {
			case !ok:
				t.Fatalf("incarnation %d not restored", i+1)
			case s&deltaBit != 0 && !noDelta:
				w := &d.delta[s&^deltaBit]
				return w.n, &w.buf[0], w.last.price
			case s&(deltaBit|wideBit) == 0 && noDelta:
				w := &d.compact[s]
				return w.n, &w.buf[0], w.entry(d.cdom, w.n-1).price
			}
			t.Fatalf("incarnation %d: slot %#x, not of the expected form (noDelta %v)", i+1, s, noDelta)
			return 0, nil, 0
		}
		bufs := make([]any, instruments)
		prices := make([]feed.Price, instruments)
		for i := range instruments {
			n, buf, price := window(i)
			prices[i] = feed.Price(price)
			if n != points {
				t.Fatalf("incarnation %d: %d points restored, want %d", i+1, n, points)
			}
			bufs[i] = buf
		}
		var isin feed.ISIN
		seq := uint64(instruments * points)
		for k := points; k < points+more; k++ {
			for i := range instruments {
				seq++
				d.Observe(isin, uint64(i)+1, t0+int64(k)*int64(time.Second), seq, prices[i])
			}
		}
		for i := range instruments {
			if n, buf, _ := window(i); n != points+more || buf != bufs[i] {
				t.Fatalf("noDelta %v, incarnation %d: %d points (want %d), buffer replaced: %v", noDelta, i+1, n, points+more, buf != bufs[i])
			}
		}
	}
}

// TestWriteCompactPoints: the compact windows' fast path of WriteState writes what the
// general path writes for the same entries (here: the window converted to the wide form).
func TestWriteCompactPoints(t *testing.T) {
	d := specCompactWindows(300, 40)
	// Some windows with pruned points and a wrapped ring.
	for i := range 300 {
		inc := uint64(i) + 1
		s, _ := d.index.get(inc)
		w := &d.compact[s]
		if i%3 == 0 {
			w.lh = min(w.n-1, int32(i%7))
		}
		if i%5 == 0 && w.n >= 3 {
			// The same points on a ring that wraps: the oldest three at its end.
			pts := make([]point[int32], w.n)
			for j := range pts {
				pts[j] = w.at(int32(j))
			}
			clear(w.buf)
			w.head = int32(len(w.buf)) - 3
			for j, pt := range pts {
				w.buf[w.idx(int32(j))] = pt
			}
		}
	}
	// And windows whose deltas take every length the fast path writes, and longer: time
	// deltas of 0, 1–127, 128–16383 and ≥ 16384 ms; price deltas (in the window's unit)
	// of zig-zag varints of one to four bytes, and 0.
	dts := []int64{1000, 0, 1, 127, 128, 1000, 16383, 16384, 200_000, 1000}
	levels := []int64{0, 30, -34, 30, -4000, 4100, -4200, 1 << 19, -1 << 19, 1 << 19, 1 << 19}
	for k, unit := range []int64{1, 100, 1000} {
		inc := uint64(1000 + k)
		ts := t0
		for j := range 4 * len(levels) {
			ts += dts[j%len(dts)] * msNanos
			price := 3_000_000_000 + levels[j%len(levels)]*unit
			d.Observe(testISIN, inc, ts, uint64(j+1), feed.Price(price))
		}
	}
	// Windows whose finer prices were pruned: the window's own unit (1, 10 or 10^5) is
	// finer than its present points need (10^6), so the snapshot must find the coarser one.
	for k, odd := range []int64{1, 10, 100_000} {
		inc := uint64(2000 + k)
		for j := range 50 {
			price := int64(5_000_000_000) + int64(j%3)*1_000_000
			if j < 4 {
				price += odd
			}
			d.Observe(testISIN, inc, t0+int64(j)*int64(time.Second), uint64(j+1), feed.Price(price))
		}
		s, _ := d.index.get(inc)
		w := &d.compact[s]
		w.lh = 4
		w.setNext()
		if _, exact := windowUnits(w, d.cdom); w.pe >= exact {
			t.Fatalf("incarnation %d: unit 10^%d, want one finer than the present points' 10^%d", inc, w.pe, exact)
		}
	}
	for _, inc := range d.index.keys(nil) {
		s, _ := d.index.get(inc)
		if s&wideBit != 0 {
			t.Fatalf("incarnation %d: wide window", inc)
		}
		cw := &d.compact[s]
		var wide window[int64]
		if !convert(&wide, cw, d.cdom, d.wideDom, 0) {
			t.Fatalf("incarnation %d: does not convert", inc)
		}
		var fast, general encoding.Encbuf
		writeWindow(&fast, inc, cw, d.cdom)
		writeWindow(&general, inc, &wide, d.wideDom)
		if !bytes.Equal(fast.Get(), general.Get()) {
			t.Fatalf("incarnation %d: fast path wrote\n%x\nthe general path\n%x", inc, fast.Get(), general.Get())
		}
	}
}

// piecesDetector returns a detector of 3000 incarnations, more than five pieces of a
// snapshot: every third with nanosecond times (a wide window), the others compact, some
// hot.
func piecesDetector() *Detector {
	d := New(DefaultOptions())
	rng := rand.New(rand.NewPCG(17, 17))
	for q := range 60_000 {
		i := q % 3000
		ts := t0 + int64(q/3000)*int64(time.Second) + int64(i)*int64(time.Millisecond)
		if i%3 == 0 {
			ts += 1 + rng.Int64N(999_999)
		}
		p := feed.Price(100_000_000 + rng.Int64N(30_000_000))
		d.Observe(testISIN, uint64(i+1), ts, uint64(q+1), p)
	}
	return d
}

// stripPieces returns the version-3 snapshot b as version 2: the same windows without the
// piece headers.
func stripPieces(t *testing.T, b []byte) []byte {
	t.Helper()
	r := encoding.NewDecbuf(b)
	if r.Byte() != stateVersion {
		t.Fatal("not version 3")
	}
	count := r.Uvarint()
	e := encoding.Encbuf{}
	e.PutByte(stateVersion2)
	e.PutUvarint(count)
	for left := count; left > 0; {
		n, size := r.Uvarint(), r.Uvarint()
		e.PutBytes(r.Bytes(int(size)))
		left -= n
	}
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
	return e.Get()
}

// TestRestorePieces: a snapshot of several pieces, compact and wide windows, restores to
// the same state whether its pieces are decoded by 1, 2, 3 or 8 goroutines, and so does
// the same snapshot in version 2 (no pieces); a damaged snapshot fails with the same
// error for any number of goroutines.
func TestRestorePieces(t *testing.T) {
	d := piecesDetector()
	snap := d.AppendState(nil)
	if len(d.wide) == 0 || len(d.compact) == 0 {
		t.Fatalf("%d compact and %d wide windows: want both", len(d.compact), len(d.wide))
	}
	if n := d.Len(); n < 5*statePiece {
		t.Fatalf("%d windows: too few for pieces", n)
	}
	newest, _ := newestTime(snap)
	for _, workers := range []int{1, 2, 3, 8} {
		r := New(DefaultOptions())
		if err := r.restoreStateWorkers(snap, newest, true, workers); err != nil {
			t.Fatalf("%d workers: %v", workers, err)
		}
		if !bytes.Equal(r.AppendState(nil), snap) || len(r.wide) != len(d.wide) {
			t.Fatalf("%d workers: restored state differs (%d wide windows, want %d)", workers, len(r.wide), len(d.wide))
		}
	}
	r := New(DefaultOptions())
	if err := r.RestoreState(stripPieces(t, snap)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.AppendState(nil), snap) {
		t.Fatal("the version-2 snapshot restores to another state")
	}
	rng := rand.New(rand.NewPCG(3, 3))
	failed := 0
	for range 300 {
		bad := slices.Clone(snap)
		bad[rng.IntN(len(bad))] ^= byte(1 + rng.IntN(255))
		var errs [2]error
		for k, workers := range []int{1, 8} {
			errs[k] = New(DefaultOptions()).restoreStateWorkers(bad, newest, true, workers)
		}
		if fmt.Sprint(errs[0]) != fmt.Sprint(errs[1]) {
			t.Fatalf("damaged snapshot: 1 worker: %v; 8 workers: %v", errs[0], errs[1])
		}
		if errs[0] != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no damaged snapshot failed: the test tests nothing")
	}
}

// TestExactDivPow10: the inverses of 5^e, exact division of multiples of 10^e, and the
// divisibility test of multipleOfPow10Exact built on them.
// multipleOfPow10 reports whether 10^e divides x, e in 0..6, by division (divPow10
// truncates toward zero, so the product gives x back exactly when the remainder is 0): the
// oracle of multipleOfPow10Exact.
func multipleOfPow10(x int64, e byte) bool { return divPow10(x, e)*pow10[e] == x }

func TestExactDivPow10(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for e := byte(0); e <= maxPriceExp; e++ {
		p := pow10[e]
		var five uint64 = 1
		for range e {
			five *= 5
		}
		if five*inv5Pow[e] != 1 {
			t.Fatalf("inv5Pow[%d] is not the inverse of 5^%d", e, e)
		}
		if max5Pow[e] != math.MaxUint64/five {
			t.Fatalf("max5Pow[%d] is not (2^64 − 1)/5^%d", e, e)
		}
		for range 100000 {
			q := rng.Int64N(math.MaxInt64/p) * (1 - 2*rng.Int64N(2))
			if got := exactDivPow10(q*p, e, inv5Pow[e]); got != q {
				t.Fatalf("exactDivPow10(%d, %d) = %d, want %d", q*p, e, got, q)
			}
			// multipleOfPow10Exact agrees with multipleOfPow10 on multiples, their
			// neighbours and any value, of either sign.
			for _, x := range []int64{q * p, q*p + 1, q*p - 1, q*p + p/2, rng.Int64N(1 << 40), -rng.Int64N(1 << 40)} {
				if got, want := multipleOfPow10Exact(x, e), multipleOfPow10(x, e); got != want {
					t.Fatalf("10^%d divides %d: multipleOfPow10Exact says %v", e, x, got)
				}
			}
		}
	}
}
