package engine

import (
	"context"
	"fmt"
	"math"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/export"
)

// RepairResult is what BackfillRequest.Repair did to ClickHouse.
type RepairResult struct {
	// Rewritten counts the minutes held differently from the recomputed state (the plan's
	// conflicts), now holding exactly it; Removed the minutes the recomputation does not
	// explain (the plan's extras), now gone.
	Rewritten, Removed int
	// KeptAfter counts extra minutes left alone because they are after the last minute
	// recomputed (the WAL or archive may simply not have reached them).
	KeptAfter int
}

// backfillClickHouseRepair is backfillClickHouse, made safe against an interrupted repair
// and, with req.Repair, followed by the repair of what an insert cannot fix:
//
//  1. wait until ClickHouse has applied every pending mutation of the candles table (a
//     repair interrupted after creating its mutation; reading before it is applied could
//     see a key half deleted);
//  2. compare and insert what is missing (backfillClickHouse: res.ClickHouse is the plan);
//  3. with Repair, rewrite the conflicting minutes with their recomputed states and remove
//     the extra ones up to the last recomputed minute (export.ClickHouseSink.Repair: a
//     mutation deletes those keys' rows, then the states are inserted after it; crash-safe,
//     idempotent: an interrupted repair's keys are found missing and redone). A second
//     run finds every minute equal and changes nothing.
//
// The outbox was delivered before (drainOutbox), so the recomputed states include every
// flush this data directory made, and the markers of those flushes are kept: later
// consumer flushes (and retries of earlier ones) stay exactly-once.
func (e *Engine) backfillClickHouseRepair(ctx context.Context, req BackfillRequest, cs []aggregate.Candle, events []aggregate.InstrumentEvent, res *BackfillResult) error {
	if req.Repair && e.sinks.running(export.ClickHouseConsumerName) {
		// Its flushes could land between the comparison and the delete, which would
		// remove them with the rows being repaired.
		return fmt.Errorf("backfill --repair: this process delivers to ClickHouse itself (--clickhouse); repair from a run without it: %w", ErrSinkRunning)
	}
	return backfillClickHouseRepair(ctx, req, cs, events, res)
}

// backfillClickHouseRepair does the work of Engine.backfillClickHouseRepair (also for
// BackfillArchive, which has no data directory).
func backfillClickHouseRepair(ctx context.Context, req BackfillRequest, cs []aggregate.Candle, events []aggregate.InstrumentEvent, res *BackfillResult) error {
	if err := req.ClickHouse.WaitMutations(ctx); err != nil {
		return err
	}
	if err := backfillClickHouse(ctx, req, cs, events, res); err != nil {
		return err
	}
	if !req.Repair {
		return nil
	}
	last := int64(math.MinInt64)
	for i := range cs {
		last = max(last, cs[i].Minute)
	}
	rr := &RepairResult{}
	plan := &res.ClickHouse
	want := make([]aggregate.Candle, 0, len(plan.Conflicts))
	for _, c := range plan.Conflicts {
		want = append(want, c.Want)
	}
	var drop []aggregate.Key
	for _, c := range plan.Extra {
		if c.Minute > last {
			rr.KeptAfter++
			continue
		}
		drop = append(drop, c.Key)
	}
	if err := req.ClickHouse.Repair(ctx, want, drop); err != nil {
		return err
	}
	rr.Rewritten, rr.Removed = len(want), len(drop)
	res.Repaired = rr
	return nil
}
