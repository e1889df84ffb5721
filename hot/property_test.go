package hot

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// naive is the reference implementation of SPEC §4.5: it keeps every quote forever, scans
// them all for the reference and decides with math/big.
type naive struct {
	thr    *big.Rat
	window int64
	hist   map[uint64][]naiveQuote
	hot    map[uint64]bool
	last   map[uint64]uint64
}

type naiveQuote struct {
	ts    int64
	seq   uint64
	price int64
}

func newNaive(th Threshold, window time.Duration) *naive {
	return &naive{
		thr:    new(big.Rat).SetFrac(new(big.Int).SetUint64(th.num), new(big.Int).SetUint64(th.den)),
		window: int64(window),
		hist:   map[uint64][]naiveQuote{},
		hot:    map[uint64]bool{},
		last:   map[uint64]uint64{},
	}
}

// ref returns the quote with the largest (ts, seq) among those with ts ≤ ts − window.
func (n *naive) ref(inc uint64, ts int64) (naiveQuote, bool) {
	var best naiveQuote
	found := false
	for _, q := range n.hist[inc] {
		if q.ts > ts-n.window {
			continue
		}
		if !found || q.ts > best.ts || q.ts == best.ts && q.seq > best.seq {
			best, found = q, true
		}
	}
	return best, found
}

// naiveChange formats (p − r)/r × 100 rounded half to even to 6 decimals, trailing zeros cut.
func naiveChange(p, r int64) string {
	num := new(big.Int).Mul(big.NewInt(p-r), big.NewInt(100_000_000))
	neg := num.Sign() < 0
	num.Abs(num)
	den := big.NewInt(r)
	q, m := new(big.Int).QuoRem(num, den, new(big.Int))
	m2 := new(big.Int).Lsh(m, 1)
	if c := m2.Cmp(den); c > 0 || c == 0 && q.Bit(0) == 1 {
		q.Add(q, big.NewInt(1))
	}
	s := q.String()
	for len(s) < 7 {
		s = "0" + s
	}
	s = s[:len(s)-6] + "." + s[len(s)-6:]
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if neg && s != "0" {
		s = "-" + s
	}
	return s
}

type naiveEvent struct {
	ev     Event // ChangePercent left zero
	change string
}

func (n *naive) observe(isin feed.ISIN, inc uint64, ts int64, seq uint64, p int64) (naiveEvent, bool) {
	if last, ok := n.last[inc]; ok && seq <= last {
		return naiveEvent{}, false
	}
	n.last[inc] = seq
	r, ok := n.ref(inc, ts)
	hot := false
	if ok {
		d := new(big.Rat).SetFrac(big.NewInt(p-r.price), big.NewInt(r.price))
		d.Abs(d).Mul(d, big.NewRat(100, 1))
		hot = d.Cmp(n.thr) > 0
	}
	edge := hot && !n.hot[inc]
	n.hot[inc] = hot
	n.hist[inc] = append(n.hist[inc], naiveQuote{ts: ts, seq: seq, price: p})
	if !edge {
		return naiveEvent{}, false
	}
	return naiveEvent{
		ev: Event{ID: seq, ISIN: isin, Incarnation: inc, TS: ts, Price: feed.Price(p),
			ReferencePrice: feed.Price(r.price), ReferenceTS: r.ts},
		change: naiveChange(p, r.price),
	}, true
}

func (n *naive) forget(inc uint64) {
	delete(n.hist, inc)
	delete(n.hot, inc)
	delete(n.last, inc)
}

// op is one step of a generated stream.
type op struct {
	kind  byte // 'q' quote, 'f' forget, 'e' expire
	isin  feed.ISIN
	inc   uint64
	ts    int64
	seq   uint64
	price feed.Price
}

// streamForm is the kind of quote times a stream has.
type streamForm int

const (
	formMillis streamForm = iota // whole milliseconds
	formMixed                    // mostly whole milliseconds
	formNanos                    // any nanosecond
)

// stream is a generated input with the naive implementation's answers.
type stream struct {
	opts   Options
	ops    []op
	events []naiveEvent
	hot    map[uint64]bool // final hot flags by incarnation
}

// genStream generates a random stream over nInst instruments and runs it through the naive
// detector. Quotes lag the clock by less than the lateness, Expire is called with the clock:
// the conditions under which the Detector must be exact.
func genStream(seed uint64, nInst, nOps int) stream {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	thresholds := []string{"10", "10", "7.5", "0.5", "33.333333", "150"}
	th, err := ParseThreshold(thresholds[rng.IntN(len(thresholds))])
	if err != nil {
		panic(err)
	}
	windows := []time.Duration{20 * time.Second, 30 * time.Second, time.Minute}
	opts := Options{Threshold: th, Window: windows[rng.IntN(len(windows))], Lateness: 10 * time.Second}
	nv := newNaive(th, opts.Window)

	type inst struct {
		isin  feed.ISIN
		inc   uint64
		price int64
	}
	randPrice := func() int64 {
		switch rng.IntN(10) {
		case 0:
			return 1 + rng.Int64N(100) // tiny
		case 1:
			return int64(feed.MaxPrice) - rng.Int64N(1_000_000_000) // huge
		default:
			return (100 + rng.Int64N(1900)) * feed.PriceScale / 100 * 100 // 4 decimals
		}
	}
	clamp := func(p int64) int64 { return min(max(p, 1), int64(feed.MaxPrice)) }
	var seq uint64
	insts := make([]inst, nInst)
	for i := range insts {
		seq++
		for j := range insts[i].isin {
			insts[i].isin[j] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rng.IntN(36)]
		}
		insts[i].inc = seq
		insts[i].price = randPrice()
	}
	s := stream{opts: opts}
	clock := t0
	coarse := seed%2 == 0
	form := streamForm(seed % 3)
	days := seed%4 == 3
	for len(s.ops) < nOps {
		seq++
		switch {
		case rng.IntN(10) == 0: // equal ts
		case coarse: // ts − window often hits an earlier ts exactly
			clock += rng.Int64N(4) * int64(100*time.Millisecond)
		default:
			clock += rng.Int64N(int64(300 * time.Millisecond))
		}
		in := &insts[rng.IntN(nInst)]
		switch x := rng.IntN(1000); {
		case x < 3: // delete; the ISIN is reused by a new incarnation
			s.ops = append(s.ops, op{kind: 'f', inc: in.inc})
			nv.forget(in.inc)
			in.inc = seq
			in.price = randPrice()
			continue
		case x < 5:
			s.ops = append(s.ops, op{kind: 'e', ts: clock})
			continue
		}
		if days && rng.IntN(1500) == 0 { // a long pause: compact windows' time base moves
			clock += int64(13*24*time.Hour) + rng.Int64N(int64(time.Hour))
			s.ops = append(s.ops, op{kind: 'e', ts: clock})
		}
		ts := clock
		switch rng.IntN(40) {
		case 0:
			ts -= rng.Int64N(int64(opts.Lateness)) // late, but within the lateness
		case 1:
			ts -= rng.Int64N(10) * int64(100*time.Millisecond) // late by whole steps
		}
		switch form {
		case formMillis: // the partner's feed: every window compact unless prices jump far
			ts -= ts % int64(time.Millisecond)
		case formMixed: // now and then a time that is not a whole millisecond
			ts -= ts % int64(time.Millisecond)
			if rng.IntN(300) == 0 {
				ts += 1 + rng.Int64N(int64(time.Millisecond)-1)
			}
		}
		p := in.price
		r, hasRef := nv.ref(in.inc, ts)
		switch x := rng.IntN(100); {
		case x < 8 && hasRef: // on the threshold, or one micro-unit either side
			delta := new(big.Int).Mul(big.NewInt(r.price), new(big.Int).SetUint64(th.num))
			delta.Quo(delta, new(big.Int).Mul(big.NewInt(100), new(big.Int).SetUint64(th.den)))
			dv := delta.Int64()
			if rng.IntN(2) == 0 {
				dv = -dv
			}
			p = r.price + dv + rng.Int64N(3) - 1
		case x < 20: // jump
			f := 5 + rng.Int64N(40)
			if rng.IntN(2) == 0 {
				f = -min(f, 90)
			}
			p += p / 100 * f
		default: // small walk
			p += p / 1000 * (rng.Int64N(11) - 5)
		}
		p = clamp(p)
		in.price = p
		o := op{kind: 'q', isin: in.isin, inc: in.inc, ts: ts, seq: seq, price: feed.Price(p)}
		s.ops = append(s.ops, o)
		if ev, ok := nv.observe(o.isin, o.inc, o.ts, o.seq, p); ok {
			s.events = append(s.events, ev)
		}
	}
	s.hot = nv.hot
	return s
}

// run applies ops to d and returns the events.
func run(d *Detector, ops []op) []Event { return runRefs(d, ops, refsNone) }

// refMode is how runRefs gives quotes a feed.Message.Ref.
type refMode int

const (
	refsNone  refMode = iota // no refs: Observe
	refsWAL                  // one per ISIN, as the WAL's dictionary gives them
	refsWrong                // a few shared by every ISIN: every hint can be wrong
)

// runRefs is run with ObserveRef and the refs of mode, and each quote prefetched by
// PrefetchGroup in groups of 8 operations, as the pipeline does.
func runRefs(d *Detector, ops []op, mode refMode) []Event {
	var out []Event
	refOf := map[feed.ISIN]uint32{}
	refs := make([]uint32, len(ops))
	for i, o := range ops {
		switch mode {
		case refsWAL:
			if refOf[o.isin] == 0 {
				refOf[o.isin] = uint32(len(refOf)) + 1
			}
			refs[i] = refOf[o.isin]
		case refsWrong:
			refs[i] = uint32(o.seq*0x9E3779B9>>7) % 4
		}
	}
	var gRefs []uint32
	var gIncs []uint64
	for i, o := range ops {
		if mode != refsNone && i%8 == 0 {
			gRefs, gIncs = gRefs[:0], gIncs[:0]
			for j := i; j < min(i+8, len(ops)); j++ {
				if ops[j].kind == 'q' {
					gRefs, gIncs = append(gRefs, refs[j]), append(gIncs, ops[j].inc)
				}
			}
			d.PrefetchGroup(gRefs, gIncs, make([]int32, len(gIncs)))
		}
		switch o.kind {
		case 'q':
			if ev, ok := d.ObserveRef(refs[i], o.isin, o.inc, o.ts, o.seq, o.price); ok {
				out = append(out, ev)
			}
		case 'f':
			d.Forget(o.inc)
		case 'e':
			d.Expire(o.ts)
		}
	}
	return out
}

func compareEvents(t *testing.T, got []Event, want []naiveEvent) {
	t.Helper()
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			t.Fatalf("event %d missing: want %+v", i, want[i].ev)
		case i >= len(want):
			t.Fatalf("extra event %d: %+v", i, got[i])
		}
		g := got[i]
		change := g.ChangePercent.String()
		g.ChangePercent = Percent{}
		if g != want[i].ev || change != want[i].change {
			t.Fatalf("event %d:\n got %+v change %s\nwant %+v change %s", i, g, change, want[i].ev, want[i].change)
		}
	}
}

func TestAgainstNaive(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 4 // seed 3 is the first whose stream moves the time base
	}
	total := 0
	var forms struct{ widened, narrowed, rebased, compact int }
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s := genStream(seed, 5+int(seed)*7, 6000)
			d := New(s.opts)
			mode := refMode(seed % 3)
			got := runRefs(d, s.ops, mode)
			forms.widened += d.widened
			forms.narrowed += d.narrowed
			forms.rebased += d.rebased
			forms.compact += len(d.compact) - len(d.freeC)
			compareEvents(t, got, s.events)
			if mode != refsNone && len(d.byRef) == 0 {
				t.Errorf("refs mode %d: no ref listed", mode)
			}
			for inc, h := range s.hot {
				if d.Hot(inc) != h {
					t.Errorf("Hot(%d) = %v, want %v", inc, d.Hot(inc), h)
				}
			}
			if d.Len() != len(s.hot) {
				t.Errorf("Len = %d, want %d", d.Len(), len(s.hot))
			}
			total += len(got)
		})
	}
	t.Logf("%d events; windows widened %d, narrowed %d, time base moved %d times", total, forms.widened, forms.narrowed, forms.rebased)
	if total < 100 {
		t.Errorf("only %d events over all seeds: the generator does not exercise the detector", total)
	}
	if forms.widened == 0 || forms.narrowed == 0 || forms.rebased == 0 || forms.compact == 0 {
		t.Errorf("the streams did not move windows between both forms (%+v)", forms)
	}
}

// TestStateSnapshot: a detector restored from a snapshot taken at any point, of format
// version 4 (AppendState), 3 or 1 (appendStateV3, appendStateV1: what checkpoints of
// earlier versions hold), continues exactly as the uninterrupted one. The streams have whole-ms, mixed and
// any-ns times, and prices with and without trailing zeros, so the windows' units vary.
func TestStateSnapshot(t *testing.T) {
	units := map[byte]int{}
	for _, c := range []struct {
		name string
		s    stream
	}{
		{"millis", genStream(99, 30, 8000)},
		{"mixed-rounded", quantized(genStream(100, 30, 8000), 100)},
		{"nanos-rounded", quantized(genStream(101, 30, 8000), 101)},
		{"millis-rounded", quantized(genStream(102, 30, 8000), 102)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.s
			full := New(s.opts)
			want := run(full, s.ops)
			wantState := full.AppendState(nil)
			for _, k := range []int{0, 1, 777, len(s.ops) / 2, len(s.ops) - 1, len(s.ops)} {
				a := New(s.opts)
				prefix := run(a, s.ops[:k])
				snap := a.AppendState([]byte("prefix"))[len("prefix"):]
				for u, n := range snapshotUnits(t, snap) {
					units[u] += n
				}
				for _, in := range []struct {
					version int
					b       []byte
				}{{4, snap}, {3, appendStateV3(a, nil)}, {1, appendStateV1(a, nil)}} {
					b := New(s.opts)
					b.Observe(testISIN, 1<<60, t0, 1, 1) // state that the restore must replace
					if err := b.RestoreState(in.b); err != nil {
						t.Fatalf("ops %d, version %d: %v", k, in.version, err)
					}
					if again := b.AppendState(nil); !bytes.Equal(again, snap) {
						t.Fatalf("ops %d, version %d: AppendState after RestoreState differs", k, in.version)
					}
					if b.Len() != a.Len() {
						t.Fatalf("ops %d, version %d: Len %d after restore, want %d", k, in.version, b.Len(), a.Len())
					}
					got := append(slices.Clone(prefix), run(b, s.ops[k:])...)
					compareEvents(t, got, s.events)
					if len(got) != len(want) {
						t.Fatalf("ops %d, version %d: %d events, uninterrupted %d", k, in.version, len(got), len(want))
					}
					if !bytes.Equal(b.AppendState(nil), wantState) {
						t.Fatalf("ops %d, version %d: final state differs from the uninterrupted run", k, in.version)
					}
				}
			}
			t.Logf("snapshot of %d incarnations: %d bytes (version 1: %d)", full.Len(), len(wantState), len(appendStateV1(full, nil)))
		})
	}
	// Every time unit and the price units of the streams occur.
	for _, u := range []byte{0x00, 0x02, 0x04, 0x06, 0x60, 0x62, 0x64, 0x66} {
		if units[u] == 0 {
			t.Errorf("no window with units %#x (%v)", u, units)
		}
	}
}

func TestRestoreStateErrors(t *testing.T) {
	d := New(DefaultOptions())
	d.Observe(testISIN, 5, t0, 6, 100_000_000)
	d.Observe(testISIN, 5, t0+int64(time.Second), 7, 120_000_000)
	good := d.AppendState(nil)
	const v1, v2, v3, v4 = stateVersion1, stateVersion2, stateVersion3, stateVersion
	// wrap is a value in units of 10^6 whose product by 10^6 wraps around int64 to 448,384:
	// a valid time or price if the product were not checked.
	const wrap = (1<<64-1)/1_000_000 + 1
	if w := int64(wrap); w*1_000_000 != 448_384 {
		t.Fatal("wrap does not wrap")
	}
	bad := map[string]struct {
		b    []byte
		want string // in the error
	}{
		"empty":     {nil, "empty"},
		"version":   {append([]byte{9}, good[1:]...), "version"},
		"version 0": {append([]byte{0}, good[1:]...), "version"},
		"truncated": {good[:len(good)-1], "truncated"},
		"trailing":  {append(slices.Clone(good), 0), "trailing"},
		// Version 2: per window incarnation, sequence, flags, units, count, entries.
		"count":             {[]byte{v2, 0xff, 0xff, 0xff, 0x0f}, "window count"},
		"no entries":        {[]byte{v2, 1, 5, 6, 0, 0x62, 0}, "entry count"},
		"no units":          {[]byte{v2, 1, 0x85, 0x01, 6, 0}, "truncated"},
		"flags":             {[]byte{v2, 1, 5, 6, 4, 0x62, 1, 2, 2}, "flags"},
		"price":             {[]byte{v2, 1, 5, 6, 0, 0x62, 1, 2, 0}, "price 0"},
		"duplicate":         {[]byte{v2, 2, 5, 6, 0, 0x62, 1, 2, 2, 5, 6, 0, 0x62, 1, 2, 2}, "twice"},
		"units ts 1":        {[]byte{v2, 1, 5, 6, 0, 0x10, 1, 2, 2}, "units 0x10"},
		"units ts 3":        {[]byte{v2, 1, 5, 6, 0, 0x32, 1, 2, 2}, "units 0x32"},
		"units ts 9":        {[]byte{v2, 1, 5, 6, 0, 0x90, 1, 2, 2}, "units 0x90"},
		"units price 7":     {[]byte{v2, 1, 5, 6, 0, 0x67, 1, 2, 2}, "units 0x67"},
		"units price 15":    {[]byte{v2, 1, 5, 6, 0, 0x0f, 1, 2, 2}, "units 0xf"},
		"units all":         {[]byte{v2, 1, 5, 6, 0, 0xff, 1, 2, 2}, "units 0xff"},
		"units in 2nd":      {snapV2(snapWin{0x62, [][2]int64{{1, 1}}}, snapWin{0xa2, [][2]int64{{1, 1}}}), "units 0xa2"},
		"ts wraps":          {snapV2(snapWin{0x60, [][2]int64{{wrap, 1}}}), "ns overflows"},
		"ts wraps below":    {snapV2(snapWin{0x60, [][2]int64{{-wrap, 1}}}), "ns overflows"},
		"ts too large":      {snapV2(snapWin{0x60, [][2]int64{{1<<63/1_000_000 + 1, 1}}}), "ns overflows"},
		"ts delta wraps":    {snapV2(snapWin{0x60, [][2]int64{{0, 1}, {wrap, 0}}}), "ns overflows"},
		"ts delta too far":  {snapV2(snapWin{0x60, [][2]int64{{1 << 42, 1}, {1<<63/1_000_000 - 1<<42 + 1, 0}}}), "ns overflows"},
		"price wraps":       {snapV2(snapWin{0x06, [][2]int64{{0, wrap}}}), "× 1000000 overflows"},
		"price wraps neg":   {snapV2(snapWin{0x06, [][2]int64{{0, -wrap}}}), "× 1000000 overflows"},
		"price delta wraps": {snapV2(snapWin{0x06, [][2]int64{{0, 1}, {1, wrap - 1}}}), "× 1000000 overflows"},
		"price too large":   {snapV2(snapWin{0x06, [][2]int64{{0, int64(feed.MaxPrice)/1_000_000 + 1}}}), "bad price"},
		// Version 3: the windows in pieces (window count, byte size).
		"piece of no windows":    {[]byte{v3, 1, 0, 7, 5, 6, 0, 0x62, 1, 2, 2}, "bad piece"},
		"piece past count":       {[]byte{v3, 1, 2, 14, 5, 6, 0, 0x62, 1, 2, 2, 7, 6, 0, 0x62, 1, 2, 2}, "bad piece"},
		"piece truncated":        {[]byte{v3, 1, 1, 9, 5, 6, 0, 0x62, 1, 2, 2}, "truncated"},
		"piece trailing":         {[]byte{v3, 1, 1, 8, 5, 6, 0, 0x62, 1, 2, 2, 0}, "trailing"},
		"window past its piece":  {[]byte{v3, 2, 1, 6, 5, 6, 0, 0x62, 1, 2, 1, 7, 7, 6, 0, 0x62, 1, 2, 2}, "entry count"},
		"pieces short of count":  {[]byte{v3, 2, 1, 7, 5, 6, 0, 0x62, 1, 2, 2}, "truncated"},
		"after the pieces":       {[]byte{v3, 1, 1, 7, 5, 6, 0, 0x62, 1, 2, 2, 0}, "trailing"},
		"duplicate across piece": {[]byte{v3, 2, 1, 7, 5, 6, 0, 0x62, 1, 2, 2, 1, 7, 5, 6, 0, 0x62, 1, 2, 2}, "twice"},
		// Version 4: the fixed form (unitsFixed), only with ms times; not in version 3.
		"fixed in v3":        {[]byte{v3, 1, 1, 11, 5, 6, 0, 0xe2, 2, 2, 2, 0xe8, 0x03, 1, 0}, "units 0xe2"},
		"fixed ns":           {[]byte{v4, 1, 1, 11, 5, 6, 0, 0x82, 2, 2, 2, 0xe8, 0x03, 1, 0}, "units 0x82"},
		"fixed truncated":    {[]byte{v4, 1, 1, 10, 5, 6, 0, 0xe2, 2, 2, 2, 0xe8, 0x03, 1}, "truncated"},
		"fixed price 0":      {[]byte{v4, 1, 1, 11, 5, 6, 0, 0xe2, 2, 2, 2, 0xe8, 0x03, 0xff, 0xff}, "bad price 0"},
		"fixed price neg":    {[]byte{v4, 1, 1, 11, 5, 6, 0, 0xe2, 2, 2, 2, 0xe8, 0x03, 0x00, 0x80}, "bad price"},
		"fixed in 2nd piece": {append([]byte{v4, 2, 1, 7, 5, 6, 0, 0x62, 1, 2, 2}, 1, 11, 7, 6, 0, 0xe2, 2, 2, 2, 0xe8, 0x03, 0xfe, 0xff), "bad price"},
		// Version 1 (no units), still read.
		"v1 count":      {[]byte{v1, 0xff, 0xff, 0xff, 0x0f}, "window count"},
		"v1 no entries": {[]byte{v1, 1, 5, 6, 0, 0}, "entry count"},
		"v1 flags":      {[]byte{v1, 1, 5, 6, 4, 1, 2, 2}, "flags"},
		"v1 price":      {[]byte{v1, 1, 5, 6, 0, 1, 2, 0}, "price 0"},
		"v1 duplicate":  {[]byte{v1, 2, 5, 6, 0, 1, 2, 2, 5, 6, 0, 1, 2, 2}, "twice"},
		"v1 ts delta":   {[]byte{v1, 1, 5, 6, 0, 2, 2, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}, "ns overflows"},
	}
	for name, c := range bad {
		before := d.AppendState(nil)
		err := d.RestoreState(c.b)
		if !errors.Is(err, ErrCorruptState) || !errors.Is(err, encoding.ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorruptState and encoding.ErrCorrupt", name, err)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one about %q", name, err, c.want)
		}
		if !bytes.Equal(d.AppendState(nil), before) {
			t.Errorf("%s: failed restore changed the state", name)
		}
	}
	empty := New(DefaultOptions()).AppendState(nil)
	if err := d.RestoreState(empty); err != nil || d.Len() != 0 {
		t.Errorf("restore of empty state: %v, Len %d", err, d.Len())
	}
	// The largest values that do not overflow restore.
	for name, b := range map[string][]byte{
		"ts":            snapV2(snapWin{0x60, [][2]int64{{math.MaxInt64 / 1_000_000, 1}}}),
		"ts below":      snapV2(snapWin{0x60, [][2]int64{{math.MinInt64 / 1_000_000, 1}}}),
		"ts delta":      snapV2(snapWin{0x60, [][2]int64{{0, 1}, {math.MaxInt64 / 1_000_000, 0}}}),
		"price":         snapV2(snapWin{0x06, [][2]int64{{0, int64(feed.MaxPrice) / 1_000_000}}}),
		"non-max units": snapV2(snapWin{0x02, [][2]int64{{3_000_000, 10_000}}}),
	} {
		if err := d.RestoreState(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// snapWin is a window of a hand-built version-2 snapshot: its units byte and entries as
// (ts, price) in units, the first absolute, the others deltas (the ts delta a uvarint).
type snapWin struct {
	units byte
	es    [][2]int64
}

// snapV2 returns a version-2 snapshot of ws, of incarnations 1, 2, …, not hot, sequence 1.
func snapV2(ws ...snapWin) []byte {
	e := encoding.Encbuf{}
	e.PutByte(stateVersion2)
	e.PutUvarint(uint64(len(ws)))
	for i, w := range ws {
		e.PutUvarint(uint64(i + 1))
		e.PutUvarint(1)
		e.PutByte(0)
		e.PutByte(w.units)
		e.PutUvarint(uint64(len(w.es)))
		for j, en := range w.es {
			if j == 0 {
				e.PutVarint(en[0])
			} else {
				e.PutUvarint(uint64(en[0]))
			}
			e.PutVarint(en[1])
		}
	}
	return e.Get()
}

func FuzzRestoreState(f *testing.F) {
	s := genStream(7, 4, 300)
	d := New(s.opts)
	run(d, s.ops)
	f.Add(d.AppendState(nil))
	f.Add(appendStateV1(d, nil))
	q := quantized(genStream(8, 4, 300), 8)
	d = New(q.opts)
	run(d, q.ops)
	f.Add(d.AppendState(nil))
	f.Add(New(DefaultOptions()).AppendState(nil))
	f.Add(specWindows(3, 20).AppendState(nil))
	f.Add([]byte{stateVersion1, 1, 5, 6, 1, 3, 2, 2, 4, 2})
	f.Add([]byte{stateVersion2, 1, 5, 6, 1, 0x62, 3, 2, 2, 4, 2, 6, 1})
	f.Add([]byte{stateVersion3, 1, 1, 12, 5, 6, 1, 0x62, 3, 2, 2, 4, 2, 6, 1})
	f.Add([]byte{stateVersion, 1, 1, 15, 5, 6, 1, 0xe2, 3, 2, 2, 0xe8, 0x03, 1, 0, 0xe8, 0x03, 0xff, 0xff})
	f.Add(appendStateV3(d, nil))
	f.Add(snapV2(snapWin{0x60, [][2]int64{{math.MaxInt64 / 1_000_000, 1}}}, snapWin{0x06, [][2]int64{{0, 1}, {1, -1}}}))
	if golden, err := os.ReadFile(filepath.Join("testdata", "state-v1.golden")); err == nil {
		f.Add(golden)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := New(DefaultOptions())
		if err := d.RestoreState(b); err != nil {
			if !errors.Is(err, ErrCorruptState) || !errors.Is(err, encoding.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorruptState and encoding.ErrCorrupt", err)
			}
			return
		}
		snap := d.AppendState(nil)
		e := New(DefaultOptions())
		if err := e.RestoreState(snap); err != nil {
			t.Fatalf("re-restore: %v", err)
		}
		if !bytes.Equal(e.AppendState(nil), snap) {
			t.Fatalf("snapshot not stable")
		}
		// The same state in versions 1 and 3 restores to the same.
		if err := e.RestoreState(appendStateV1(d, nil)); err != nil || !bytes.Equal(e.AppendState(nil), snap) {
			t.Fatalf("version-1 snapshot of the state: %v, or another state", err)
		}
		if err := e.RestoreState(appendStateV3(d, nil)); err != nil || !bytes.Equal(e.AppendState(nil), snap) {
			t.Fatalf("version-3 snapshot of the state: %v, or another state", err)
		}
		// The restored detector keeps working.
		for i := range uint64(50) {
			d.Observe(testISIN, i%7, t0+int64(i)*int64(20*time.Second), 1<<62+i, feed.Price(1+i*1_000_000))
		}
		d.Expire(t0 + int64(time.Hour))
	})
}
