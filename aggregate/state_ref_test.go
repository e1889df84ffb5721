package aggregate

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
	"github.com/quotesdev/quotes/record"
)

// appendStateReference is AppendState as it was before it wrote into reserved space
// (encoding.Encbuf, one append per byte): the reference its output must equal byte for byte.
func appendStateReference(a *Aggregator, b []byte) []byte {
	e := encoding.Encbuf{B: b}
	e.PutString(stateMagic)
	var flags byte
	if a.hasWM {
		flags |= 1
	}
	e.PutByte(flags)
	e.PutUvarint(a.lastSeq)
	e.PutVarint(a.watermark)
	e.PutVarint(a.closedThrough)
	counters := a.counters()
	e.PutUvarint(uint64(len(counters)))
	for _, c := range counters {
		e.PutUvarint(*c)
	}
	var incs []*incarnation
	for inc := range a.active.Values() {
		incs = append(incs, inc)
	}
	for _, inc := range a.dirty {
		if !inc.active && len(inc.open) > 0 {
			incs = append(incs, inc)
		}
	}
	slices.SortFunc(incs, cmpInc)
	e.PutUvarint(uint64(len(incs)))
	for _, inc := range incs {
		e.PutBytes(inc.isin[:])
		e.PutUvarint(inc.id)
		e.PutUvarintString(inc.desc)
		flags = 0
		if inc.active {
			flags |= 1
		}
		if inc.hasPrice {
			flags |= 2
		}
		if inc.hasLastClose {
			flags |= 4
		}
		e.PutByte(flags)
		e.PutVarint(int64(inc.price))
		e.PutVarint(inc.priceTS)
		e.PutUvarint(inc.priceSeq)
		e.PutVarint(inc.firstMinute)
		e.PutVarint(int64(inc.lastClose))
		e.PutVarint(inc.lastCloseMinute)
		e.PutVarint(inc.lastCloseTS)
		e.PutUvarint(inc.lastCloseSeq)
		e.PutUvarint(uint64(len(inc.open)))
		for i := range inc.open {
			c := &inc.open[i]
			e.PutVarint(c.Minute)
			e.PutVarint(int64(c.Open))
			e.PutVarint(int64(c.High))
			e.PutVarint(int64(c.Low))
			e.PutVarint(int64(c.Close))
			e.PutVarint(c.OpenTS)
			e.PutVarint(c.CloseTS)
			e.PutUvarint(c.OpenSeq)
			e.PutUvarint(c.CloseSeq)
			e.PutUvarint(c.Quotes)
		}
	}
	isins := make([]feed.ISIN, 0, len(a.held.byISIN))
	for isin := range a.held.byISIN {
		isins = append(isins, isin)
	}
	slices.SortFunc(isins, func(x, y feed.ISIN) int { return compareISIN(&x, &y) })
	e.PutUvarint(uint64(len(isins)))
	for _, isin := range isins {
		qs := a.held.byISIN[isin]
		e.PutBytes(isin[:])
		e.PutUvarint(uint64(len(qs)))
		for _, q := range qs {
			e.PutVarint(q.ts)
			e.PutUvarint(q.seq)
			e.PutVarint(int64(q.price))
		}
	}
	return e.Get()
}

// checkSameState fails unless AppendState and appendStateReference give the same bytes for
// a, appending to buffers of every kind: nil, a prefix with no spare capacity, a small
// one, one just short of the snapshot, an exact fit and a roomy one.
func checkSameState(t *testing.T, name string, a *Aggregator) {
	t.Helper()
	want := appendStateReference(a, nil)
	prefix := []byte("prefix")
	withPrefix := appendStateReference(a, slices.Clone(prefix))
	for _, c := range []int{0, 1, 100, len(want) / 3, len(want) - 1, len(want), len(want) + 1, 2 * len(want)} {
		if got := a.AppendState(make([]byte, 0, c)); !bytes.Equal(got, want) {
			t.Fatalf("%s: cap %d: AppendState differs from the reference (%d vs %d bytes) at byte %d", name, c, len(got), len(want), firstDiffByte(got, want))
		}
		b := make([]byte, len(prefix), len(prefix)+c)
		copy(b, prefix)
		if got := a.AppendState(b); !bytes.Equal(got, withPrefix) {
			t.Fatalf("%s: prefix, cap %d: AppendState differs from the reference at byte %d", name, c, firstDiffByte(got, withPrefix))
		}
	}
	if got := a.AppendState(nil); !bytes.Equal(got, want) {
		t.Fatalf("%s: nil: AppendState differs from the reference at byte %d", name, firstDiffByte(got, want))
	}
}

func firstDiffByte(x, y []byte) int {
	for i := range min(len(x), len(y)) {
		if x[i] != y[i] {
			return i
		}
	}
	return min(len(x), len(y))
}

// TestAppendStateMatchesReference: AppendState writes exactly the bytes of the reference
// encoder, for random streams snapshotted at many points (deleted incarnations with open
// candles, held quotes, several incarnations of one ISIN, after CloseAll), for the
// benchmark's large state, and for extreme values (every varint length, negative values).
func TestAppendStateMatchesReference(t *testing.T) {
	checkSameState(t, "empty", New(DefaultOptions()))
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	for seed := 0; seed < seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		a := New(Options{Grace: testGraces[seed%len(testGraces)]})
		var r recorder
		recs := randomStream(rng, 300+rng.IntN(1500), 2+rng.IntN(40))
		next := rng.IntN(len(recs))
		for i, rec := range recs {
			if i == next {
				checkSameState(t, fmt.Sprintf("seed %d at %d", seed, i), a)
				next = i + 1 + rng.IntN(len(recs)/3)
			}
			a.Apply(rec, &r)
		}
		checkSameState(t, fmt.Sprintf("seed %d at the end", seed), a)
		a.CloseAll(&r)
		checkSameState(t, fmt.Sprintf("seed %d after CloseAll", seed), a)
	}
	checkSameState(t, "bench state", benchState(3000))

	// Extreme values, set directly: what Apply would take ages to reach.
	a := benchState(200)
	a.lastSeq, a.watermark, a.closedThrough = math.MaxUint64, math.MaxInt64, math.MinInt64
	a.stats.Records, a.stats.Stale = math.MaxUint64, 1<<63
	vals := []int64{0, 1, -1, 63, -64, 64, -65, 1 << 20, -(1 << 40), math.MaxInt64, math.MinInt64, math.MinInt64 + 1}
	k := 0
	v := func() int64 { k++; return vals[k%len(vals)] }
	for inc := range a.active.Values() {
		inc.id = uint64(v())
		inc.price, inc.priceTS, inc.priceSeq = feed.Price(v()), v(), uint64(v())
		inc.firstMinute, inc.lastClose, inc.lastCloseMinute = v(), feed.Price(v()), v()
		inc.lastCloseTS, inc.lastCloseSeq = v(), uint64(v())
		inc.desc = string(bytes.Repeat([]byte{'d'}, int(uint64(v())%300)))
		for i := range inc.open {
			c := &inc.open[i]
			c.Minute, c.Open, c.High, c.Low, c.Close = v(), feed.Price(v()), feed.Price(v()), feed.Price(v()), feed.Price(v())
			c.OpenTS, c.CloseTS, c.OpenSeq, c.CloseSeq, c.Quotes = v(), v(), uint64(v()), uint64(v()), uint64(v())
		}
	}
	for isin, qs := range a.held.byISIN {
		for i := range qs {
			qs[i] = heldQuote{ts: v(), seq: uint64(v()), price: feed.Price(v())}
		}
		a.held.byISIN[isin] = qs
	}
	checkSameState(t, "extreme values", a)

	// Many open candles in one incarnation (beyond openBuf), many held quotes for one ISIN.
	a = New(DefaultOptions())
	var out nopOutput
	var seq uint64
	apply := func(kind feed.Kind, ts int64, isin string, p feed.Price) {
		seq++
		rec := record.Record{Seq: seq}
		rec.Kind, rec.TS, rec.ISIN, rec.Price, rec.Description = kind, ts, isinOf(isin), p, "many"
		a.Apply(rec, &out)
	}
	apply(feed.KindAdd, t0, "MANY", 0)
	a.grace = int64(1 << 61) // nothing closes, nothing held expires
	for m := int64(0); m < 50; m++ {
		apply(feed.KindQuote, t0+m*MinuteNanos, "MANY", feed.Price(m+1))
		apply(feed.KindQuote, t0+m*MinuteNanos, "HELD", feed.Price(m+1))
	}
	if inc := a.activeInc(ptr(isinOf("MANY"))); inc == nil || len(inc.open) != 50 || len(a.held.byISIN[isinOf("HELD")]) != 50 {
		t.Fatal("many open candles: the state is not what the test means to build")
	}
	checkSameState(t, "many open candles", a)
}

func ptr[T any](v T) *T { return &v }
