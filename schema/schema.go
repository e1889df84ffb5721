// Package schema is the ClickHouse DDL of the quotes sink (SPEC §7): the tables, the
// materialized view that turns flushed candle states into aggregate states, and the version
// record. The statements run unchanged on every ClickHouse from the 18.16 that Debian ships
// to current releases, and they are idempotent (CREATE … IF NOT EXISTS): Apply can run any
// number of times.
//
// Tables (all in one database, "default" unless the DSN names another):
//
//   - quotes_schema: one row per applied schema version (ReplacingMergeTree by version).
//   - instruments: the instrument registry as an event history: one row per ADD or DELETE
//     (ReplacingMergeTree ordered by isin, incarnation, seq). An incarnation is the WAL
//     sequence of the ADD that started it; seq is the WAL sequence of the event. Re-sending
//     an event is harmless: the same key carries the same row, and every query aggregates
//     with duplicate-insensitive functions (argMax, min, max). See InstrumentsQuery.
//   - candles_input (ENGINE = Null): what the sink inserts, one plain row per candle state:
//     open/close price with their (ts, seq), high, low, quote count, plus the flush_id and
//     chunk the row was written in.
//   - candles (AggregatingMergeTree, PARTITION BY day, ORDER BY isin, incarnation, minute,
//     flush_id, chunk): the aggregate states, filled by the materialized view candles_mv from
//     candles_input. open = argMin(price, (ts, seq)), close = argMax(price, (ts, seq)),
//     open_at / close_at = min / max of (ts, seq), high = max, low = min, quotes = sum.
//     Rows of the same (isin, incarnation, minute) from different flushes (a late correction
//     is a further flush) are merged at query time with the -Merge combinators, grouping by
//     (isin, incarnation, minute): see CandlesQuery and the view candles_merged.
//   - candles_merged: a plain view with the merged candles, for people querying by hand.
//
// Exactly-once delivery without insert deduplication (which 18.16's non-replicated tables
// do not have): every flush carries its flush_id (the WAL sequence of the flush, supplied by
// the caller) and is written in chunks, each one INSERT of one block into one partition, so
// that each chunk lands as a single data part, all or nothing. Each chunk includes a marker
// row (isin = 12 zero bytes, incarnation = 0, minute = the chunk's day, flush_id, chunk) that
// lands in the same part; the marker's quotes state is 0, its high state holds the chunk's
// candle count and its low state the flush's chunk count. Before writing a chunk the sink looks
// its marker up (a primary-key point read) and skips a chunk that already landed. See the
// export package for the writer.
package schema

import "strings"

// Version is the schema version this binary writes and reads. Apply refuses a database
// whose recorded version is newer.
const Version = 1

// MarkerISIN is the isin of the flush marker rows: 12 zero bytes, never a valid ISIN. In SQL
// it is MarkerISINSQL: on 18.16 a FixedString of zero bytes does not compare equal to the
// empty string literal, so the marker is named by toFixedString of it.
const MarkerISIN = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// MarkerISINSQL is the SQL expression of MarkerISIN.
const MarkerISINSQL = "toFixedString('', 12)"

// DefaultDatabase is the database used when a DSN names none.
const DefaultDatabase = "default"

// QuoteIdent quotes a ClickHouse identifier with backticks.
func QuoteIdent(name string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(name) + "`"
}

// Statements returns the DDL for database, in order, without trailing semicolons.
func Statements(database string) []string {
	db := QuoteIdent(database)
	r := strings.NewReplacer("{db}", db, "{marker}", MarkerISINSQL)
	out := make([]string, len(ddl))
	for i, s := range ddl {
		out[i] = r.Replace(s)
	}
	return out
}

// ddl is the schema, {db} standing for the quoted database name.
var ddl = [...]string{
	`CREATE DATABASE IF NOT EXISTS {db}`,

	`CREATE TABLE IF NOT EXISTS {db}.quotes_schema
(
    version    UInt32,
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY version`,

	`CREATE TABLE IF NOT EXISTS {db}.instruments
(
    isin        FixedString(12),
    incarnation UInt64,
    seq         UInt64,
    ts          Int64,
    kind        Enum8('ADD' = 1, 'DELETE' = 2),
    description String
)
ENGINE = ReplacingMergeTree()
ORDER BY (isin, incarnation, seq)`,

	`CREATE TABLE IF NOT EXISTS {db}.candles_input
(
    isin        FixedString(12),
    incarnation UInt64,
    minute      DateTime('UTC'),
    flush_id    UInt64,
    chunk       UInt32,
    open_price  Int64,
    open_ts     Int64,
    open_seq    UInt64,
    close_price Int64,
    close_ts    Int64,
    close_seq   UInt64,
    high        Int64,
    low         Int64,
    quotes      UInt64
)
ENGINE = Null`,

	`CREATE TABLE IF NOT EXISTS {db}.candles
(
    isin        FixedString(12),
    incarnation UInt64,
    minute      DateTime('UTC'),
    flush_id    UInt64,
    chunk       UInt32,
    open        AggregateFunction(argMin, Int64, Tuple(Int64, UInt64)),
    open_at     AggregateFunction(min, Tuple(Int64, UInt64)),
    close       AggregateFunction(argMax, Int64, Tuple(Int64, UInt64)),
    close_at    AggregateFunction(max, Tuple(Int64, UInt64)),
    high        AggregateFunction(max, Int64),
    low         AggregateFunction(min, Int64),
    quotes      AggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (isin, incarnation, minute, flush_id, chunk)`,

	`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.candles_mv TO {db}.candles
AS SELECT
    isin,
    incarnation,
    minute,
    flush_id,
    chunk,
    argMinState(open_price, tuple(open_ts, open_seq))  AS open,
    minState(tuple(open_ts, open_seq))                 AS open_at,
    argMaxState(close_price, tuple(close_ts, close_seq)) AS close,
    maxState(tuple(close_ts, close_seq))               AS close_at,
    maxState(high)                                     AS high,
    minState(low)                                      AS low,
    sumState(quotes)                                   AS quotes
FROM {db}.candles_input
GROUP BY isin, incarnation, minute, flush_id, chunk`,

	`CREATE VIEW IF NOT EXISTS {db}.candles_merged
AS SELECT
    isin,
    incarnation,
    minute,
    argMinMerge(open)                 AS open_price,
    argMaxMerge(close)                AS close_price,
    maxMerge(high)                    AS high_price,
    minMerge(low)                     AS low_price,
    sumMerge(quotes)                  AS quotes,
    tupleElement(minMerge(open_at), 1)  AS open_ts,
    tupleElement(maxMerge(close_at), 1) AS close_ts
FROM {db}.candles
WHERE isin != {marker}
GROUP BY isin, incarnation, minute`,
}
