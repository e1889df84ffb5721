package hot

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// TestIncarnationZero checks that incarnation 0, the key the index keeps beside its
// intmap.Map, behaves like any other: observed, hot, counted, snapshotted, restored and
// forgotten, next to incarnations whose slots are in the map.
func TestIncarnationZero(t *testing.T) {
	d := New(Options{})
	incs := []uint64{5, 0, 1, ^uint64(0)}
	seq := uint64(0)
	observe := func(at time.Duration, price string) []uint64 {
		var hot []uint64
		for _, inc := range incs {
			seq++
			if _, ok := d.Observe(testISIN, inc, t0+int64(at), seq, px(t, price)); ok {
				hot = append(hot, inc)
			}
		}
		return hot
	}
	observe(0, "100")
	if d.Len() != len(incs) {
		t.Fatalf("Len = %d, want %d", d.Len(), len(incs))
	}
	if hot := observe(6*time.Minute, "200"); !slices.Equal(hot, incs) {
		t.Fatalf("hot %v, want %v", hot, incs)
	}
	for _, inc := range incs {
		if !d.Hot(inc) {
			t.Fatalf("Hot(%d) false", inc)
		}
	}
	snap := d.AppendState(nil)

	r := New(Options{})
	if err := r.RestoreState(snap); err != nil {
		t.Fatal(err)
	}
	if r.Len() != len(incs) || !bytes.Equal(r.AppendState(nil), snap) {
		t.Fatal("restored state differs")
	}
	for _, inc := range incs {
		if !r.Hot(inc) {
			t.Fatalf("restored Hot(%d) false", inc)
		}
	}

	d.Forget(0)
	if d.Hot(0) || d.Len() != len(incs)-1 {
		t.Fatalf("after Forget(0): Hot %v, Len %d", d.Hot(0), d.Len())
	}
	for _, inc := range incs[2:] {
		if !d.Hot(inc) {
			t.Fatalf("Forget(0) lost Hot(%d)", inc)
		}
	}
	// Incarnation 0 starts afresh: no reference yet, so no event.
	seq++
	if _, ok := d.Observe(testISIN, 0, t0+int64(12*time.Minute), seq, px(t, "400")); ok || d.Len() != len(incs) {
		t.Fatalf("fresh incarnation 0: event %v, Len %d", ok, d.Len())
	}
	if err := d.WriteState(&bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
}
