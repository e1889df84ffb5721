package hot

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// TestWindowGrowth: a window filling at a steady rate reaches the capacity it settles at in
// a few steps, and that capacity stays within 1/16 (+8) of the points a full window
// holds; at a steady rate, a full window then no longer grows.
func TestWindowGrowth(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		jitter   bool // intervals uniform in [interval/2, 3·interval/2)
		maxSteps int
	}{
		{"1 quote/s", time.Second, false, 4},
		{"2 quotes/s", 500 * time.Millisecond, false, 4},
		{"1 quote/10s", 10 * time.Second, false, 4},
		{"about 1 quote/s", time.Second, true, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Threshold: DefaultThreshold(), Window: 5 * time.Minute, Lateness: 30 * time.Second}
			d := newCompactOnly(opts)
			steps, capNow, maxN := 0, 0, int32(0)
			total := int(2 * (opts.Window + opts.Lateness) / tc.interval)
			rng := rand.New(rand.NewPCG(1, 2))
			ts := t0
			lastMinute := ts / int64(time.Minute)
			for i := range total {
				if tc.jitter {
					ts += int64(tc.interval)/2 + rng.Int64N(int64(tc.interval))
					ts -= ts % int64(time.Millisecond)
				} else {
					ts = t0 + int64(i)*int64(tc.interval)
				}
				d.Observe(testISIN, 1, ts, uint64(i+1), 100_000_000)
				// Expire once a minute of event time, as the pipeline does: a window still
				// filling keeps the room it was given.
				if m := ts / int64(time.Minute); m != lastMinute {
					d.Expire(ts)
					lastMinute = m
				}
				s, ok := d.index.get(1)
				if !ok || s&wideBit != 0 {
					t.Fatalf("quote %d: window missing or wide", i)
				}
				w := &d.compact[s]
				if c := len(w.buf); c != capNow {
					if i >= total/2 && !tc.jitter {
						t.Fatalf("quote %d: the full window grew from %d to %d", i, capNow, c)
					}
					steps, capNow = steps+1, c
				}
				maxN = max(maxN, w.n)
			}
			if steps > tc.maxSteps {
				t.Errorf("window took %d steps to reach its capacity %d, want ≤ %d", steps, capNow, tc.maxSteps)
			}
			if capNow > int(grownCap(maxN)) {
				t.Errorf("capacity %d for at most %d points: more than 1/16 + 8 of slack", capNow, maxN)
			}
		})
	}
}

// TestCompactPriceUnit: the price unit a compact window keeps as quotes arrive divides
// every present price, and is windowUnits's (the largest such) when no point with a finer
// price was pruned; for prices of every number of decimals, in windows whose rings wrap.
func TestCompactPriceUnit(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		d := newCompactOnly(Options{Threshold: DefaultThreshold(), Window: 5 * time.Minute})
		unit := int64(pow10[rng.IntN(7)])
		n := 1 + rng.IntN(50)
		if i%8 == 0 {
			n = 400 + rng.IntN(400) // windows that prune, so their rings wrap
		}
		odd := -1 // the last quote with a finer price
		for q := range n {
			p := (1 + rng.Int64N(100_000)) * unit
			if rng.IntN(40) == 0 || q == n-1 && rng.IntN(4) == 0 {
				p += 1 + rng.Int64N(unit) // an odd one out, also as the newest point
				odd = q
			}
			d.Observe(testISIN, 1, t0+int64(q)*int64(time.Second), uint64(q+1), feed.Price(p))
		}
		s, _ := d.index.get(1)
		if s&wideBit != 0 {
			continue
		}
		w := &d.compact[s]
		_, exact := windowUnits(w, d.cdom)
		for k := w.lh; k < w.n; k++ {
			if p := w.entry(d.cdom, k).price; !multipleOfPow10(p, w.pe) {
				t.Fatalf("window %d: price %d of point %d is not a multiple of 10^%d", i, p, k, w.pe)
			}
		}
		oddPresent := odd >= 0 && n-1-odd < int(w.n-w.lh)
		if w.pe > exact || (odd < 0 || oddPresent) && w.pe != exact {
			t.Fatalf("window %d: unit 10^%d, windowUnits 10^%d (last odd price at %d of %d, %d points present)", i, w.pe, exact, odd, n, w.n-w.lh)
		}
	}
}

// headerErrors returns what is wrong with the headers of d's windows: next must be the key
// of the point after lh (maxKey without one), the keys of the present points must not
// decrease, and lh must leave at least one point.
func headerErrors[T word](ws []window[T]) []string {
	var errs []string
	for s := range ws {
		w := &ws[s]
		if !w.used {
			continue
		}
		next := maxKey[T]()
		if w.lh+1 < w.n {
			next = w.at(w.lh + 1).key
		}
		if w.next != next {
			errs = append(errs, fmt.Sprintf("slot %d: next %d, want %d", s, w.next, next))
		}
		if cw, ok := any(w).(*window[int32]); ok {
			for i := w.lh; i < w.n; i++ {
				if p := cw.pbase + int64(cw.at(i).price); !multipleOfPow10(p, cw.pe) {
					errs = append(errs, fmt.Sprintf("slot %d: price %d is not a multiple of the unit 10^%d", s, p, cw.pe))
					break
				}
			}
		}
		if w.n > 0 && w.lh >= w.n {
			errs = append(errs, fmt.Sprintf("slot %d: lh %d of %d points", s, w.lh, w.n))
		}
		for i := w.lh + 1; i < w.n; i++ {
			if w.key(i) < w.key(i-1) {
				errs = append(errs, fmt.Sprintf("slot %d: key %d after %d", s, w.key(i), w.key(i-1)))
				break
			}
		}
	}
	return errs
}

// TestWindowHeaders: after every operation of generated streams (quotes out of time
// order, forgets, expires, windows that widen, narrow and move their time base), every
// window's header agrees with its points.
func TestWindowHeaders(t *testing.T) {
	for _, seed := range []uint64{3, 7} {
		s := genStream(seed, 5+int(seed)*7, 6000)
		d := newCompactOnly(s.opts)
		for i, o := range s.ops {
			run(d, s.ops[i:i+1])
			errs := append(headerErrors(d.compact), headerErrors(d.wide)...)
			if len(errs) > 0 {
				t.Fatalf("seed %d, after op %d (%c): %v", seed, i, o.kind, errs)
			}
		}
		if d.rebased == 0 || d.widened == 0 || d.narrowed == 0 {
			t.Fatalf("seed %d: the stream did not move windows between forms", seed)
		}
	}
	// An instrument quoting every 10 s for 13 days, with an Expire a minute: the time base
	// moves while its window holds minutes of points.
	d := newCompactOnly(DefaultOptions())
	const step = 10 * int64(time.Second)
	for k := range int64(13 * 24 * 360) {
		ts := t0 + k*step
		d.Observe(testISIN, 1, ts, uint64(k+1), feed.Price(100_000_000+k%1000))
		if k%6 == 5 {
			d.Expire(ts)
			if errs := headerErrors(d.compact); len(errs) > 0 {
				t.Fatalf("after the Expire at quote %d: %v", k, errs)
			}
		}
	}
	if d.rebased == 0 {
		t.Fatal("the time base did not move")
	}
}

// TestExpireShrinksQuietWindows: a full window whose instrument stops quoting gives its
// storage back at the next Expire, and one still filling keeps it (TestWindowGrowth).
func TestExpireShrinksQuietWindows(t *testing.T) {
	opts := Options{Threshold: DefaultThreshold(), Window: 5 * time.Minute, Lateness: 30 * time.Second}
	d := newCompactOnly(opts)
	n := int(2 * (opts.Window + opts.Lateness) / time.Second)
	for i := range n {
		d.Observe(testISIN, 1, t0+int64(i)*int64(time.Second), uint64(i+1), 100_000_000)
	}
	s, _ := d.index.get(1)
	full := len(d.compact[s].buf)
	d.Expire(t0 + int64(n)*int64(time.Second) + int64(opts.Window+opts.Lateness))
	if w := &d.compact[s]; w.n != 1 || len(w.buf) > 16 {
		t.Fatalf("after Expire: %d points in a ring of %d (it held %d), want 1 point in a ring of ≤ 16", w.n, len(w.buf), full)
	}
}
