package aggregate

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// TestSnapshotResume applies part of a random stream, snapshots, restores into a fresh
// Aggregator and applies the rest: the outputs and the final state equal an uninterrupted
// run.
func TestSnapshotResume(t *testing.T) {
	seeds := 150
	if testing.Short() {
		seeds = 30
	}
	for seed := 0; seed < seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		opts := Options{Grace: testGraces[seed%len(testGraces)]}
		recs := randomStream(rng, 200+rng.IntN(1200), 2+rng.IntN(12))

		whole := New(opts)
		var want recorder
		for _, r := range recs {
			whole.Apply(r, &want)
		}
		whole.CloseAll(&want)

		// Resume at a few split points, several times in one run.
		a := New(opts)
		var got recorder
		next := rng.IntN(len(recs))
		for i, r := range recs {
			if i == next {
				snap := a.AppendState(nil)
				b := New(opts)
				if err := b.RestoreState(snap); err != nil {
					t.Fatalf("seed %d at %d: restore: %v", seed, i, err)
				}
				if again := b.AppendState(nil); !bytes.Equal(again, snap) {
					t.Fatalf("seed %d at %d: snapshot of the restored state differs", seed, i)
				}
				a = b
				next = i + 1 + rng.IntN(len(recs))
			}
			a.Apply(r, &got)
		}
		a.CloseAll(&got)
		if got.String() != want.String() {
			t.Fatalf("seed %d: resumed outputs differ:\n%s", seed, firstDiff(got.lines, want.lines))
		}
		if !bytes.Equal(a.AppendState(nil), whole.AppendState(nil)) {
			t.Fatalf("seed %d: final states differ", seed)
		}
		if a.Stats() != whole.Stats() {
			t.Fatalf("seed %d: stats differ: %+v vs %+v", seed, a.Stats(), whole.Stats())
		}
	}
}

func TestSnapshotAfterCloseAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	recs := randomStream(rng, 500, 5)
	a := New(DefaultOptions())
	var r recorder
	for _, rec := range recs[:400] {
		a.Apply(rec, &r)
	}
	a.CloseAll(&r)
	b := New(DefaultOptions())
	if err := b.RestoreState(a.AppendState(nil)); err != nil {
		t.Fatal(err)
	}
	var ra, rb recorder
	for _, rec := range recs[400:] {
		a.Apply(rec, &ra)
		b.Apply(rec, &rb)
	}
	if ra.String() != rb.String() || b.ClosedThrough() != a.ClosedThrough() {
		t.Fatalf("after CloseAll + restore outputs differ:\n%s", firstDiff(rb.lines, ra.lines))
	}
}

func TestRestoreStateRejectsGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a := New(DefaultOptions())
	var r recorder
	for _, rec := range randomStream(rng, 800, 6) {
		a.Apply(rec, &r)
	}
	snap := a.AppendState(nil)
	b := New(DefaultOptions())
	for n := 0; n < len(snap); n++ {
		err := b.RestoreState(snap[:n])
		if err == nil {
			t.Fatalf("truncated snapshot (%d of %d bytes) accepted", n, len(snap))
		}
		if !errors.Is(err, errState) || !errors.Is(err, encoding.ErrCorrupt) {
			t.Fatalf("error %v does not wrap errState and encoding.ErrCorrupt", err)
		}
		if len(b.Instruments()) != 0 || b.Stats() != (Stats{}) {
			t.Fatal("failed restore left state behind")
		}
	}
	if err := b.RestoreState(append(snap[:len(snap):len(snap)], 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	// Random corruption must never panic.
	for i := 0; i < 2000; i++ {
		c := bytes.Clone(snap)
		for j := 0; j < 1+rng.IntN(4); j++ {
			c[rng.IntN(len(c))] = byte(rng.IntN(256))
		}
		_ = b.RestoreState(c)
	}
}

func FuzzRestoreState(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	a := New(DefaultOptions())
	var r recorder
	for _, rec := range randomStream(rng, 300, 4) {
		a.Apply(rec, &r)
	}
	f.Add(a.AppendState(nil))
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		x := New(DefaultOptions())
		if err := x.RestoreState(b); err != nil {
			return
		}
		// A snapshot that restores must be usable and round-trip.
		if again := x.AppendState(nil); !bytes.Equal(again, b) {
			y := New(DefaultOptions())
			if err := y.RestoreState(again); err != nil {
				t.Fatalf("re-snapshot does not restore: %v", err)
			}
		}
		var r recorder
		for _, rec := range randomStream(rand.New(rand.NewPCG(1, 1)), 50, 4) {
			x.Apply(rec, &r)
		}
		x.CloseAll(&r)
	})
}

// TestSortedIncs: a snapshot's incarnations come in cmpInc's order, (ISIN, id): ISINs that
// differ in any byte, one ISIN with several ids, deleted ones with open candles included
// and deleted ones without left out.
func TestSortedIncs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	const alphabet = "0A9Z5M"
	var active, dirty []*incarnation
	for i := range 3000 {
		var isin feed.ISIN
		for j := range isin {
			isin[j] = alphabet[rng.IntN(len(alphabet))]
		}
		inc := &incarnation{isin: isin, id: rng.Uint64N(4), active: i%3 != 0}
		if !inc.active && i%2 == 0 {
			inc.open = make([]Candle, 1)
		}
		if inc.active {
			active = append(active, inc)
		} else {
			dirty = append(dirty, inc)
		}
	}
	got := sortedIncs(slices.Values(active), dirty, len(active))
	want := slices.Clone(active)
	for _, inc := range dirty {
		if len(inc.open) > 0 {
			want = append(want, inc)
		}
	}
	slices.SortStableFunc(want, cmpInc)
	if len(got) != len(want) {
		t.Fatalf("%d incarnations, want %d", len(got), len(want))
	}
	for i := range got {
		if cmpInc(got[i].inc, want[i]) != 0 {
			t.Fatalf("at %d: %s/%d, want %s/%d", i, got[i].inc.isin[:], got[i].inc.id, want[i].isin[:], want[i].id)
		}
	}
}
