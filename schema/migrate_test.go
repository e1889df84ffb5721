package schema_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/schema"
)

// v1 is the version 1 schema (candles ordered by isin, incarnation, minute, flush_id, chunk),
// {db} standing for the database.
var v1 = []string{
	`CREATE DATABASE IF NOT EXISTS {db}`,
	`CREATE TABLE IF NOT EXISTS {db}.quotes_schema (version UInt32, applied_at DateTime('UTC')) ENGINE = ReplacingMergeTree() ORDER BY version`,
	`CREATE TABLE IF NOT EXISTS {db}.instruments (isin FixedString(12), incarnation UInt64, seq UInt64, ts Int64, kind Enum8('ADD' = 1, 'DELETE' = 2), description String) ENGINE = ReplacingMergeTree() ORDER BY (isin, incarnation, seq)`,
	`CREATE TABLE IF NOT EXISTS {db}.candles_input (isin FixedString(12), incarnation UInt64, minute DateTime('UTC'), flush_id UInt64, chunk UInt32,
    open_price Int64, open_ts Int64, open_seq UInt64, close_price Int64, close_ts Int64, close_seq UInt64, high Int64, low Int64, quotes UInt64) ENGINE = Null`,
	`CREATE TABLE IF NOT EXISTS {db}.candles (isin FixedString(12), incarnation UInt64, minute DateTime('UTC'), flush_id UInt64, chunk UInt32,
    open AggregateFunction(argMin, Int64, Tuple(Int64, UInt64)), open_at AggregateFunction(min, Tuple(Int64, UInt64)),
    close AggregateFunction(argMax, Int64, Tuple(Int64, UInt64)), close_at AggregateFunction(max, Tuple(Int64, UInt64)),
    high AggregateFunction(max, Int64), low AggregateFunction(min, Int64), quotes AggregateFunction(sum, UInt64))
ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMMDD(minute) ORDER BY (isin, incarnation, minute, flush_id, chunk)`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.candles_mv TO {db}.candles AS SELECT isin, incarnation, minute, flush_id, chunk,
    argMinState(open_price, tuple(open_ts, open_seq)) AS open, minState(tuple(open_ts, open_seq)) AS open_at,
    argMaxState(close_price, tuple(close_ts, close_seq)) AS close, maxState(tuple(close_ts, close_seq)) AS close_at,
    maxState(high) AS high, minState(low) AS low, sumState(quotes) AS quotes
FROM {db}.candles_input GROUP BY isin, incarnation, minute, flush_id, chunk`,
	`CREATE VIEW IF NOT EXISTS {db}.candles_merged AS SELECT isin, incarnation, minute, argMinMerge(open) AS open_price, argMaxMerge(close) AS close_price,
    maxMerge(high) AS high_price, minMerge(low) AS low_price, sumMerge(quotes) AS quotes,
    tupleElement(minMerge(open_at), 1) AS open_ts, tupleElement(maxMerge(close_at), 1) AS close_ts
FROM {db}.candles WHERE isin != toFixedString('', 12) GROUP BY isin, incarnation, minute`,
	`INSERT INTO {db}.quotes_schema (version, applied_at) SELECT toUInt32(1), now()`,
	// flush 7: 3 candles of 2 ISINs over 2 minutes in one chunk, plus its marker
	`INSERT INTO {db}.candles_input SELECT toFixedString(if(number < 2, 'DE0001234567', 'US0378331005'), 12), 11, toDateTime(1767225600 + 60 * (number % 2)), 7, 0,
    100 + number, 1767225600000000000 + number, number, 200 + number, 1767225601000000000 + number, number + 10, 300 + number, 50 + number, 5
FROM system.numbers LIMIT 3`,
	`INSERT INTO {db}.candles_input SELECT toFixedString('', 12), 0, toDateTime(1767225600), 7, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0`,
	// flush 9: a late correction of the first candle, in one chunk, plus its marker
	`INSERT INTO {db}.candles_input SELECT toFixedString('DE0001234567', 12), 11, toDateTime(1767225600), 9, 0,
    90, 1767225599000000000, 99, 205, 1767225602000000000, 40, 400, 40, 2`,
	`INSERT INTO {db}.candles_input SELECT toFixedString('', 12), 0, toDateTime(1767225600), 9, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0`,
}

func execAll(t *testing.T, conn driver.Conn, db string, stmts []string) {
	t.Helper()
	for _, s := range stmts {
		if err := conn.Exec(context.Background(), strings.ReplaceAll(s, "{db}", schema.QuoteIdent(db))); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func query(t *testing.T, conn driver.Conn, q string) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var b strings.Builder
	cols := rows.ColumnTypes()
	for rows.Next() {
		vals := make([]any, len(cols))
		for i, c := range cols {
			vals[i] = reflect.New(c.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprint(&b, reflect.ValueOf(v).Elem().Interface())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

const mergedQ = "SELECT isin, incarnation, toUInt32(minute), open_price, close_price, high_price, low_price, quotes, open_ts, close_ts FROM %s.candles_merged ORDER BY isin, incarnation, minute"

// TestMigrateV1: a version 1 database is migrated by Apply: same merged candles, the
// markers re-keyed by flush id (the flushes view lists them), candles ordered by (isin,
// incarnation, minute) so its rows merge, version 2 recorded; and every state a crash can
// leave behind is repaired by applying again.
func TestMigrateV1(t *testing.T) {
	srv := chtest.Start(t)
	conn, _ := connect(t, srv.DSN)
	ctx := context.Background()
	for _, crash := range []string{"none", "mid-copy", "between renames"} {
		db := "m_" + strings.ReplaceAll(crash, " ", "_")
		db = strings.ReplaceAll(db, "-", "_")
		execAll(t, conn, db, v1)
		before := query(t, conn, fmt.Sprintf(mergedQ, db))
		if strings.Count(before, "\n") != 3 {
			t.Fatalf("v1 merged candles:\n%s", before)
		}
		q := schema.QuoteIdent(db)
		switch crash {
		case "mid-copy": // the copy table exists, half filled; the MV and Null table are gone
			execAll(t, conn, db, []string{
				`DROP TABLE {db}.candles_mv`, `DROP TABLE {db}.candles_input`,
				`CREATE TABLE {db}.candles_migrating AS {db}.candles`,
			})
		case "between renames": // the old table renamed away, the copy not yet renamed in
			if err := schema.Apply(ctx, conn, db); err != nil {
				t.Fatal(err)
			}
			execAll(t, conn, db, []string{
				`RENAME TABLE {db}.candles TO {db}.candles_migrating`,
				`CREATE TABLE {db}.candles_v1 AS {db}.candles_migrating`,
				`DROP TABLE {db}.quotes_schema`,
				`CREATE TABLE {db}.quotes_schema (version UInt32, applied_at DateTime('UTC')) ENGINE = ReplacingMergeTree() ORDER BY version`,
				`INSERT INTO {db}.quotes_schema (version, applied_at) SELECT toUInt32(1), now()`,
			})
		}
		if err := schema.Apply(ctx, conn, db); err != nil {
			t.Fatalf("%s: apply: %v", crash, err)
		}
		if err := schema.Apply(ctx, conn, db); err != nil {
			t.Fatalf("%s: second apply: %v", crash, err)
		}
		if err := schema.Check(ctx, conn, db); err != nil {
			t.Fatalf("%s: %v", crash, err)
		}
		if after := query(t, conn, fmt.Sprintf(mergedQ, db)); after != before {
			t.Fatalf("%s: merged candles changed:\n%s\nwant\n%s", crash, after, before)
		}
		if got := query(t, conn, "SELECT flush_id, chunk, toString(day), candles, chunks FROM "+q+".flushes ORDER BY flush_id"); got != "7 0 2026-01-01 3 1\n9 0 2026-01-01 1 1\n" {
			t.Fatalf("%s: flushes:\n%s", crash, got)
		}
		have := tables(t, conn, db)
		for _, gone := range []string{"candles_v1", "candles_migrating"} {
			if _, ok := have[gone]; ok {
				t.Errorf("%s: %s left behind", crash, gone)
			}
		}
		if ddl := have["candles"]; !strings.Contains(ddl, "ORDER BY (isin, incarnation, minute)") || strings.Contains(ddl, "flush_id") {
			t.Errorf("%s: candles after the migration: %s", crash, ddl)
		}
		// the rows of one minute now merge into one
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+q+".candles FINAL"); err != nil {
			t.Fatal(err)
		}
		if got := query(t, conn, "SELECT count() FROM "+q+".candles WHERE isin = toFixedString('DE0001234567', 12)"); got != "2\n" {
			t.Errorf("%s: rows of DE0001234567 after OPTIMIZE FINAL: %s, want 2 (one per minute)", crash, got)
		}
	}
}
