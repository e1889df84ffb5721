package export

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/schema"
)

// RepairKeysPerMutation is the most keys one DELETE mutation names; larger repairs use
// several (each rewrites the parts holding its keys).
const RepairKeysPerMutation = 50_000

// Repair makes ClickHouse hold exactly the states want for their keys, and nothing for the
// keys drop, whatever it held for them before (e.g. a minute counted twice because two data
// directories delivered it): first one ALTER TABLE … DELETE mutation per
// RepairKeysPerMutation keys removes every row of those keys —
//
//	ALTER TABLE db.candles DELETE WHERE isin != <marker> AND (isin, incarnation, toUInt32(minute)) IN (…)
//
// — then the states are inserted as one flush with a fresh id R (each chunk with its
// marker, as Write does), and Repair waits until the server has applied the mutations
// (system.mutations.is_done, which 18.16 has as every later release). A mutation applies to
// the data parts that existed when it was created, never to parts inserted after it, so
// R's states survive it; since candles are keyed by (isin, incarnation, minute) alone (schema
// version 2), a row cannot say which flush wrote it, and this order is what tells R's rows
// from the old ones. Marker rows are never named, so every flush marker stays: a consumer
// retrying a flush that landed before the repair still finds its marker and skips it (its
// states are part of want), and later flushes merge into the repaired states as usual.
//
// Crash-safe and idempotent: a crash after the mutations were created but before R landed
// leaves those keys without rows once the server applies them; a re-run (backfill finds the
// keys missing or in conflict) deletes and inserts them again, R's of the first attempt
// included, and WaitMutations first waits for any pending mutation. As for Write, one
// writer per database: a flush another process inserts meanwhile for the same keys would
// be deleted with the rest.
func (s *ClickHouseSink) Repair(ctx context.Context, want []aggregate.Candle, drop []aggregate.Key) error {
	if len(want) == 0 && len(drop) == 0 {
		return nil
	}
	id := uint64(1)<<63 | rand.Uint64()>>1 // top bit: never a consumer's flush id
	keys := make([]aggregate.Key, 0, len(want)+len(drop))
	for i := range want {
		keys = append(keys, want[i].Key)
	}
	keys = append(keys, drop...)
	for start := 0; start < len(keys); start += RepairKeysPerMutation {
		if err := s.deleteKeys(ctx, keys[start:min(start+RepairKeysPerMutation, len(keys))]); err != nil {
			return err
		}
	}
	if err := s.Write(ctx, id, want); err != nil {
		return fmt.Errorf("clickhouse repair: insert the recomputed states: %w", err)
	}
	return s.WaitMutations(ctx)
}

// deleteKeys creates the mutation that deletes every candle row of keys (markers excepted)
// in the parts that exist now.
func (s *ClickHouseSink) deleteKeys(ctx context.Context, keys []aggregate.Key) error {
	var b strings.Builder
	fmt.Fprintf(&b, "ALTER TABLE %s.candles DELETE WHERE isin != %s AND (isin, incarnation, toUInt32(minute)) IN (", s.db, schema.MarkerISINSQL)
	for i, k := range keys {
		if _, ok := feed.ParseISIN(k.ISIN.String()); !ok {
			return fmt.Errorf("clickhouse repair: invalid ISIN %q", k.ISIN.String())
		}
		if k.Minute < 0 || k.Minute%aggregate.MinuteNanos != 0 || k.Minute/1e9 > maxMinuteSec {
			return fmt.Errorf("clickhouse repair: %s minute %d is not a minute start in 1970–2106", k.ISIN, k.Minute)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "('%s',%d,%d)", k.ISIN.String(), k.Incarnation, k.Minute/1e9)
	}
	b.WriteByte(')')
	q := b.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureSchema(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// The key list can exceed the default max_query_size (256 KiB).
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": len(q) + 4096}))
	if err := s.conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("clickhouse repair: delete the other rows of %d keys: %w", len(keys), err)
	}
	return nil
}

// WaitMutations waits until the server has applied every mutation of the candles table
// (an interrupted repair's included), polling system.mutations, until ctx ends. A mutation
// the server reports as failing (latest_fail_reason, on releases that have it) is an error.
func (s *ClickHouseSink) WaitMutations(ctx context.Context) error {
	db := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s.database)
	where := fmt.Sprintf("database = '%s' AND table = 'candles' AND is_done = 0", db)
	for i := 0; ; i++ {
		var n uint64
		qctx, cancel := context.WithTimeout(ctx, s.timeout)
		err := s.conn.QueryRow(qctx, "SELECT count() FROM system.mutations WHERE "+where).Scan(&n)
		cancel()
		if err != nil {
			return fmt.Errorf("clickhouse: check pending mutations of %s.candles: %w", s.database, err)
		}
		if n == 0 {
			return nil
		}
		if i%20 == 19 {
			if reason := s.mutationFailure(ctx, where); reason != "" {
				return fmt.Errorf("clickhouse: a mutation of %s.candles fails: %s", s.database, reason)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clickhouse: %d mutations of %s.candles still pending (the server completes them; run again): %w", n, s.database, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mutationFailure returns the failure reason of a pending mutation, "" when there is none
// or the server does not report reasons (18.16 has no latest_fail_reason).
func (s *ClickHouseSink) mutationFailure(ctx context.Context, where string) string {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var reason string
	if err := s.conn.QueryRow(ctx, "SELECT latest_fail_reason FROM system.mutations WHERE "+where+" AND latest_fail_reason != '' LIMIT 1").Scan(&reason); err != nil {
		return ""
	}
	return reason
}

// RawRows returns the number of rows of the candles table, markers included, unmerged:
// any insert changes it (tests, and repair reports).
func (s *ClickHouseSink) RawRows(ctx context.Context) (uint64, error) {
	var n uint64
	err := s.query(ctx, "count rows", fmt.Sprintf("SELECT count() FROM %s.candles", s.db), func(scan func(...any) error) error { return scan(&n) })
	return n, err
}
