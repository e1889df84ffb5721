package engine

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
)

// TestBackfillStore drives Backfill in-process: over a replayed recording it recomputes
// every closed minute and changes nothing; a stored state missing quotes (as if a flush was
// lost) is completed, exactly, and a second run changes nothing again.
func TestBackfillStore(t *testing.T) {
	path, _ := recording(t, 30, 20*time.Minute, 0.05)
	e := mustOpen(t, testOptions(t, "d"))
	defer e.Close()
	replayFile(t, e, path, ReplayOptions{Batch: 2000})

	var all []aggregate.Candle
	if err := e.Store().ScanCandles(func(c aggregate.Candle) error { all = append(all, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) < 100 {
		t.Fatalf("only %d candles stored", len(all))
	}
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, c := range all {
		lo, hi = min(lo, c.Minute), max(hi, c.Minute+aggregate.MinuteNanos)
	}
	req := BackfillRequest{From: lo, To: hi, Store: true}
	res, err := e.Backfill(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Recomputed != len(all) || res.StoreChanged != 0 || res.StoreExtra != 0 {
		t.Fatalf("backfill of an intact store: %+v (stored %d)", res, len(all))
	}

	// damage one candle: a state holding only its first quote
	victim := all[len(all)/2]
	for _, c := range all {
		if c.Quotes >= 3 {
			victim = c
			break
		}
	}
	part := aggregate.Candle{Key: victim.Key}
	part.Add(victim.OpenTS, victim.OpenSeq, victim.Open)
	if err := e.Store().PutCandles([]aggregate.Candle{part}); err != nil {
		t.Fatal(err)
	}
	res, err = e.Backfill(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StoreChanged != 1 {
		t.Fatalf("backfill after losing quotes of one minute: %+v", res)
	}
	got, err := e.Store().Candles(victim.ISIN, victim.Incarnation, victim.Minute, victim.Minute+aggregate.MinuteNanos)
	if err != nil || len(got) != 1 || got[0] != victim {
		t.Fatalf("repaired candle %+v (%v), want %+v", got, err, victim)
	}
	if res, err = e.Backfill(context.Background(), req); err != nil || res.StoreChanged != 0 {
		t.Fatalf("second backfill: %+v %v", res, err)
	}
	// a range without data recomputes nothing
	if res, err = e.Backfill(context.Background(), BackfillRequest{From: hi + aggregate.MinuteNanos, To: hi + 2*aggregate.MinuteNanos, Store: true}); err != nil || res.Recomputed != 0 {
		t.Fatalf("backfill of an empty range: %+v %v", res, err)
	}
	if _, err := e.Backfill(context.Background(), BackfillRequest{From: hi, To: lo, Store: true}); err == nil {
		t.Fatal("backfill with To before From did not fail")
	}
}
