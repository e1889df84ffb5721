package hot

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// deltaHeaderErrors checks every used delta window of d: the header's entries (front, at,
// last) and next are those of its points, walked from the oldest present one; the times
// are in order; every present price is in range and a multiple of the unit 10^pe.
func deltaHeaderErrors(d *Detector) []string {
	var errs []string
	for s := range d.delta {
		w := &d.delta[s]
		if !w.used || w.n == 0 {
			continue
		}
		if w.lh >= w.n || w.cur >= w.n || w.cur < -1 {
			errs = append(errs, fmt.Sprintf("slot %d: lh %d, cur %d of %d points", s, w.lh, w.cur, w.n))
			continue
		}
		e := w.front
		next := int64(math.MaxInt64)
		for i := w.lh; i < w.n; i++ {
			if i > w.lh {
				nx := w.after(e, i-1)
				if nx.ts < e.ts {
					errs = append(errs, fmt.Sprintf("slot %d: time %d after %d", s, nx.ts, e.ts))
				}
				e = nx
				if i == w.lh+1 {
					next = e.ts
				}
			}
			if e.price <= 0 || e.price > int64(feed.MaxPrice) || !multipleOfPow10(e.price, w.pe) || e.ts%msNanos != 0 {
				errs = append(errs, fmt.Sprintf("slot %d: point %d %+v: bad price or time (unit 10^%d)", s, i, e, w.pe))
			}
			if i == w.cur && e != w.at {
				errs = append(errs, fmt.Sprintf("slot %d: at %+v, point %d is %+v", s, w.at, i, e))
			}
		}
		if e != w.last {
			errs = append(errs, fmt.Sprintf("slot %d: last %+v, walked to %+v", s, w.last, e))
		}
		if w.next != next {
			errs = append(errs, fmt.Sprintf("slot %d: next %d, want %d", s, w.next, next))
		}
	}
	return errs
}

// TestDeltaWindowHeaders: after every operation of generated streams (quotes out of time
// order, forgets, expires, jumps that move windows out of the delta form and back), every
// delta window's header agrees with its points.
func TestDeltaWindowHeaders(t *testing.T) {
	var out, in int
	for _, seed := range []uint64{3, 7, 11} {
		s := genStream(seed, 5+int(seed)*7, 6000)
		d := New(s.opts)
		for i, o := range s.ops {
			run(d, s.ops[i:i+1])
			if errs := deltaHeaderErrors(d); len(errs) > 0 {
				t.Fatalf("seed %d, after op %d (%c): %v", seed, i, o.kind, errs)
			}
		}
		out, in = out+d.deltaOut, in+d.deltaIn
	}
	if out == 0 || in == 0 {
		t.Fatalf("no window left the delta form and came back (out %d, in %d)", out, in)
	}
}

// TestFormsAgree: the same streams through a detector with delta windows and through one
// without (Detector.noDelta) give the same events and, at every few hundred operations,
// byte-identical snapshots: the form changes nothing but memory.
func TestFormsAgree(t *testing.T) {
	moved := 0
	for seed := range uint64(8) {
		s := genStream(seed, 5+int(seed)*7, 6000)
		d, c := New(s.opts), newCompactOnly(s.opts)
		var got, want []Event
		for i := 0; i < len(s.ops); i += 250 {
			ops := s.ops[i:min(i+250, len(s.ops))]
			got = append(got, run(d, ops)...)
			want = append(want, run(c, ops)...)
			if !bytes.Equal(d.AppendState(nil), c.AppendState(nil)) {
				t.Fatalf("seed %d, after %d ops: the snapshots of the two forms differ", seed, i+len(ops))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("seed %d: events differ:\n%v\n%v", seed, got, want)
		}
		if len(d.delta) == 0 {
			t.Fatalf("seed %d: no delta window", seed)
		}
		moved += d.deltaOut
	}
	if moved == 0 {
		t.Fatal("no window left the delta form")
	}
}

// TestDeltaWindowCases: the delta form's limits, one quote at a time — what fits stays,
// what does not moves the window to the compact form with the same results.
func TestDeltaWindowCases(t *testing.T) {
	const sec = int64(time.Second)
	for _, c := range []struct {
		name      string
		ts        []int64 // offsets from t0
		prices    []feed.Price
		wantDelta bool
	}{
		{"in order", []int64{0, sec, 2 * sec}, []feed.Price{100_000_000, 100_010_000, 99_990_000}, true},
		{"late, between", []int64{0, 2 * sec, sec}, []feed.Price{100_000_000, 100_010_000, 100_020_000}, true},
		{"late, before all", []int64{sec, 2 * sec, 0}, []feed.Price{100_000_000, 100_010_000, 100_020_000}, true},
		{"equal times keep order", []int64{sec, sec, sec}, []feed.Price{100_000_000, 100_010_000, 100_020_000}, true},
		{"finer price", []int64{0, sec, 2 * sec}, []feed.Price{100_000_000, 100_000_001, 100_000_002}, true},
		{"gap of 65.535 s", []int64{0, 65_535 * int64(time.Millisecond)}, []feed.Price{100_000_000, 100_000_000}, true},
		{"gap of 65.536 s", []int64{0, 65_536 * int64(time.Millisecond)}, []feed.Price{100_000_000, 100_000_000}, false},
		{"largest price step", []int64{0, sec}, []feed.Price{100_000_000, 100_000_000 + 32_767}, true},
		{"jump", []int64{0, sec}, []feed.Price{100_000_000, 100_000_000 + 32_768}, false},
		{"late jump", []int64{0, 2 * sec, sec}, []feed.Price{100_000_000, 100_000_000, 100_040_001}, false},
		{"not a whole ms", []int64{0, sec + 1}, []feed.Price{100_000_000, 100_000_000}, false},
		{"finer price that does not fit", []int64{0, sec, 2 * sec}, []feed.Price{100_000_000, 140_000_000, 140_000_001}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, ref := New(DefaultOptions()), newCompactOnly(DefaultOptions())
			var got, want []Event
			for i := range c.ts {
				if e, ok := d.Observe(testISIN, 1, t0+c.ts[i], uint64(i+1), c.prices[i]); ok {
					got = append(got, e)
				}
				if e, ok := ref.Observe(testISIN, 1, t0+c.ts[i], uint64(i+1), c.prices[i]); ok {
					want = append(want, e)
				}
				if errs := deltaHeaderErrors(d); len(errs) > 0 {
					t.Fatalf("after quote %d: %v", i, errs)
				}
			}
			s, _ := d.index.get(1)
			if isDelta := s&deltaBit != 0; isDelta != c.wantDelta {
				t.Errorf("delta form %v, want %v", isDelta, c.wantDelta)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || !bytes.Equal(d.AppendState(nil), ref.AppendState(nil)) {
				t.Errorf("events %v, snapshot differ from the compact form's %v", got, want)
			}
		})
	}
}
