package export

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/internal/chtest"
)

// TestClickHouseRepair: a database that got every candle twice (two flushes of the same
// states) and a minute nobody explains. Repair rewrites the doubled keys with the true
// states and removes the unexplained one; the flush markers stay, so a retry of one of the
// original flushes is still skipped, and a later late correction merges into the repaired
// state. A repair interrupted between its delete and the end of its insert is completed by
// a second one.
func TestClickHouseRepair(t *testing.T) {
	srv := chtest.Start(t)
	s := newSink(t, srv, 0)
	ctx := context.Background()
	all := workload(rand.New(rand.NewPCG(7, 8)), 2000)
	main, late := all[:1800], all[1800:]
	states := fold(main)
	for _, id := range []uint64{11, 12} { // two data directories, two flush ids
		if err := s.Write(ctx, id, states); err != nil {
			t.Fatal(err)
		}
	}
	stray := aggregate.Candle{Key: aggregate.Key{ISIN: isin("DDDDDDDDDDD4"), Incarnation: 9, Minute: t0}, Open: 1, High: 1, Low: 1, Close: 1, OpenTS: t0, CloseTS: t0, Quotes: 1}
	if err := s.Write(ctx, 13, []aggregate.Candle{stray}); err != nil {
		t.Fatal(err)
	}
	doubled := map[aggregate.Key]aggregate.Candle{}
	if err := s.MergedCandles(ctx, 0, 1<<62, func(c aggregate.Candle) error { doubled[c.Key] = c; return nil }); err != nil {
		t.Fatal(err)
	}
	if c := doubled[states[0].Key]; c.Quotes != 2*states[0].Quotes {
		t.Fatalf("not doubled: %+v", c)
	}

	// Interrupted: the delete was created, the insert failed after its first chunk.
	s.testAfterFn = func(int) error { return errors.New("simulated crash") }
	if err := s.Repair(ctx, states, []aggregate.Key{stray.Key}); err == nil {
		t.Fatal("repair with a crash after its insert succeeded")
	}
	s.testAfterFn = nil
	if err := s.Repair(ctx, states, []aggregate.Key{stray.Key}); err != nil {
		t.Fatal(err)
	}
	checkCandles(t, s, main)
	if got, err := s.Candles(ctx, stray.ISIN, t0, t0+aggregate.MinuteNanos); err != nil || len(got) != 0 {
		t.Fatalf("the unexplained minute is still there: %v %v", got, err)
	}
	rows, err := s.RawRows(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The markers of the original flushes stay: retrying one writes nothing.
	before := s.Stats()
	if err := s.Write(ctx, 11, states); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Chunks != before.Chunks || st.ChunksSkipped == before.ChunksSkipped {
		t.Errorf("retry of a flush that landed before the repair: stats %+v → %+v, want only skipped chunks", before, st)
	}
	if n, _ := s.RawRows(ctx); n != rows {
		t.Errorf("retry of an old flush changed the table: %d → %d rows", rows, n)
	}
	// Later flushes merge into the repaired states.
	if err := s.Write(ctx, 14, fold(late)); err != nil {
		t.Fatal(err)
	}
	checkCandles(t, s, all)
}
