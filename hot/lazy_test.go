package hot

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// TestLazyPruneMatchesEager drives the detector and the eager one it replaced (pruning on
// every Observe, windows in a map) with the same random operations — quotes in order, late
// within the lateness and far beyond it, repeated sequences, Expire with a watermark ahead
// of some instruments, Forget and reuse of slots, snapshot and restore — and requires the
// same events and byte-identical snapshots at every step.
func TestLazyPruneMatchesEager(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			opts := Options{Threshold: DefaultThreshold(), Window: 20 * time.Second, Lateness: 5 * time.Second}
			if seed%3 == 0 {
				opts.Threshold = Threshold{num: 1, den: 1}
			}
			lazy, eager := New(opts), newEager(opts)
			incs := 1 + int(seed%4)*2
			farLate := 2 + int(seed%5)*2 // in 20 quotes
			clock := t0
			last := make([]int64, incs+1) // newest ts per incarnation
			price := make([]int64, incs+1)
			gen := make([]uint64, incs+1) // current incarnation id per instrument
			lag := make([]int64, incs+1)  // how far an instrument's quotes trail the clock
			for i := range lag {
				if i%2 == 0 {
					lag[i] = rng.Int64N(int64(2 * opts.Window))
				}
			}
			for i := range gen {
				gen[i] = uint64(i + 1)
				price[i] = 100_000_000
			}
			seq := uint64(1000)
			events := 0
			// The snapshot's units: even seeds quote whole milliseconds, and prices are
			// multiples of 10^(seed%7) micro-units, except about one quote in 300 that
			// keeps all its digits.
			msTimes, priceUnit := seed%2 == 0, pow10[seed%7]
			for step := 0; step < 30_000; step++ {
				i := rng.IntN(incs) + 1
				switch r := rng.IntN(100); {
				case r < 2:
					lazy.Forget(gen[i])
					eager.Forget(gen[i])
					gen[i] += 1000
					last[i] = 0
				case r < 5:
					clock += rng.Int64N(int64(30 * time.Second))
					lazy.Expire(clock)
					eager.Expire(clock)
				case r < 7:
					b := lazy.AppendState(nil)
					if eb := eager.AppendState(nil); !bytes.Equal(b, eb) {
						t.Fatalf("step %d: snapshots differ (%d vs %d bytes)", step, len(b), len(eb))
					}
					if rng.IntN(2) == 0 {
						fresh := New(opts)
						if err := fresh.RestoreState(b); err != nil {
							t.Fatal(err)
						}
						lazy = fresh
					}
				default:
					ts := clock - lag[i] + rng.Int64N(int64(2*time.Second))
					switch k := rng.IntN(20); {
					case k < 3: // late within the lateness
						ts -= rng.Int64N(int64(opts.Lateness))
					case k < 3+farLate: // far beyond the lateness
						ts -= rng.Int64N(int64(3 * opts.Window))
					case k < 6: // same ts as the newest
						ts = last[i]
					}
					exact := rng.IntN(300) == 0 // all digits, whatever the seed
					if msTimes && !exact {
						ts -= ts % int64(time.Millisecond)
					}
					clock = max(clock, ts)
					last[i] = max(last[i], ts)
					price[i] += rng.Int64N(price[i]/8) - price[i]/16
					if price[i] <= 0 {
						price[i] = 1
					}
					p := price[i]
					if !exact {
						p = max(p/priceUnit*priceUnit, priceUnit)
					}
					s := seq
					if rng.IntN(50) == 0 {
						s -= uint64(rng.IntN(3)) // a repeat: ignored by both
					} else {
						seq++
						s = seq
					}
					var isin feed.ISIN
					copy(isin[:], fmt.Sprintf("XX%010d", i))
					ev, ok := lazy.Observe(isin, gen[i], ts, s, feed.Price(p))
					eev, eok := eager.Observe(isin, gen[i], ts, s, feed.Price(p))
					if ok != eok || ev != eev {
						t.Fatalf("step %d: lazy %v %+v, eager %v %+v", step, ok, ev, eok, eev)
					}
					if ok {
						events++
					}
				}
				if lazy.Len() != len(eager.windows) {
					t.Fatalf("step %d: %d windows, eager %d", step, lazy.Len(), len(eager.windows))
				}
			}
			if events == 0 {
				t.Fatal("no events: the stream tests nothing")
			}
		})
	}
}

// TestLargeSnapshotMatchesEager: a snapshot much larger than WriteState's pieces is
// byte-identical to the eager detector's, written whole or streamed.
func TestLargeSnapshotMatchesEager(t *testing.T) {
	opts := DefaultOptions()
	lazy, eager := New(opts), newEager(opts)
	rng := rand.New(rand.NewPCG(5, 5))
	seq := uint64(0)
	for q := 0; q < 300_000; q++ {
		i := rng.IntN(3000)
		ts := t0 + int64(q)*int64(time.Millisecond) + rng.Int64N(int64(time.Second))
		p := feed.Price(100_000_000 + rng.Int64N(20_000_000))
		seq++
		var isin feed.ISIN
		copy(isin[:], fmt.Sprintf("XX%010d", i))
		ev, ok := lazy.Observe(isin, uint64(i+1), ts, seq, p)
		eev, eok := eager.Observe(isin, uint64(i+1), ts, seq, p)
		if ok != eok || ev != eev {
			t.Fatalf("quote %d: lazy %v %+v, eager %v %+v", q, ok, ev, eok, eev)
		}
	}
	want := eager.AppendState(nil)
	if n := lazy.Len(); n < 5*statePiece {
		t.Fatalf("%d windows: too few to test pieces", n)
	}
	if got := lazy.AppendState([]byte("prefix")); !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
		t.Fatal("AppendState differs from the eager snapshot")
	}
	for _, workers := range []int{1, 2, 3, 8} {
		var pieces int
		var buf bytes.Buffer
		if err := lazy.writeState(writerFunc(func(p []byte) (int, error) {
			pieces++
			return buf.Write(p)
		}), workers); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) || pieces < 5 {
			t.Fatalf("%d workers: %d bytes in %d pieces, differs from the eager snapshot", workers, buf.Len(), pieces)
		}
	}
}

// TestWriteStateStopsOnWriteError: a failing writer ends WriteState with its error, for
// any number of workers and wherever it fails, and the workers stop (WriteState returns).
func TestWriteStateStopsOnWriteError(t *testing.T) {
	d := New(DefaultOptions())
	var isin feed.ISIN
	for q := 0; q < 20*statePiece; q++ {
		d.Observe(isin, uint64(q%(10*statePiece)+1), t0+int64(q)*int64(time.Millisecond), uint64(q+1), feed.Price(1_000_000+q%7))
	}
	errDisk := errors.New("disk full")
	for _, workers := range []int{1, 2, 8} {
		for _, failAt := range []int{0, 1, 4, 10} {
			calls := 0
			err := d.writeState(writerFunc(func(p []byte) (int, error) {
				if calls == failAt {
					return 0, errDisk
				}
				calls++
				return len(p), nil
			}), workers)
			if !errors.Is(err, errDisk) {
				t.Fatalf("%d workers, failing write %d: got %v, want %v", workers, failAt, err, errDisk)
			}
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestPrefetchGroupChangesNothing: PrefetchGroup only reads: the snapshot is the same
// before and after, for known and unknown incarnations.
func TestPrefetchGroupChangesNothing(t *testing.T) {
	d := New(DefaultOptions())
	var isin feed.ISIN
	for q := 0; q < 5000; q++ {
		d.Observe(isin, uint64(q%50+1), t0+int64(q)*int64(100*time.Millisecond), uint64(q+1), feed.Price(1_000_000+q%7))
	}
	d.Forget(7)
	before := d.AppendState(nil)
	incs := []uint64{1, 7, 50, 51, 1 << 40, 3}
	d.PrefetchGroup(make([]uint32, len(incs)), incs, make([]int32, len(incs)))
	if !bytes.Equal(before, d.AppendState(nil)) {
		t.Fatal("PrefetchGroup changed the state")
	}
	// With refs, listed or not, right or wrong.
	d.ObserveRef(2, isin, 3, t0+int64(5000)*int64(100*time.Millisecond), 5001, 1_000_000)
	d.ObserveRef(3, isin, 7, t0+int64(5000)*int64(100*time.Millisecond), 5002, 1_000_000) // 7 was forgotten: a new window
	d.Forget(7)
	before = d.AppendState(nil)
	d.PrefetchGroup([]uint32{2, 3, 2, 0, 1 << 30, 9}, incs, make([]int32, len(incs)))
	if !bytes.Equal(before, d.AppendState(nil)) {
		t.Fatal("PrefetchGroup with refs changed the state")
	}
}
