// Package schema is the ClickHouse DDL of the quotes sink (SPEC §7, §11): the tables, the
// materialized view that turns flushed candle states into aggregate states, the version
// record, the migration of older databases, and the layout on a replicated, sharded
// cluster. The statements run unchanged on every ClickHouse from the 18.16 that Debian
// ships to current releases, and Apply and ApplyCluster are idempotent: they can run any
// number of times.
//
// Tables (all in one database, "default" unless the DSN names another):
//
//   - quotes_schema: one row per applied schema version (ReplacingMergeTree by version).
//   - instruments: the instrument registry as an event history: one row per ADD or DELETE
//     (ReplacingMergeTree ordered by isin, incarnation, seq). An incarnation is the WAL
//     sequence of the ADD that started it; seq is the WAL sequence of the event. Re-sending
//     an event is harmless: the same key carries the same row, and every query aggregates
//     with duplicate-insensitive functions (argMax, min, max).
//   - candles_input (ENGINE = Null): what the sink inserts, one plain row per candle state:
//     open/close price with their (ts, seq), high, low, quote count.
//   - candles (AggregatingMergeTree, PARTITION BY day, ORDER BY isin, incarnation, minute):
//     the aggregate states, filled by the materialized view candles_mv from candles_input.
//     open = argMin(price, (ts, seq)), close = argMax(price, (ts, seq)), open_at / close_at
//     = min / max of (ts, seq), high = max, low = min, quotes = sum. A late correction is a
//     further row of its (isin, incarnation, minute), which background merges fold into one;
//     reads merge whatever is not merged yet with the -Merge combinators.
//   - candles_merged: a plain view with the merged candles, for people querying by hand.
//   - flushes: a plain view of the flush markers (below): flush_id, chunk, day, candles,
//     chunks.
//
// Exactly-once delivery without insert deduplication (which 18.16's non-replicated tables
// do not have): every flush carries a flush id (the WAL sequence of the flush, supplied by
// the caller) and is written in chunks, each one INSERT of one block into one partition, so
// that each chunk lands as a single data part, all or nothing. Each chunk includes a marker
// row that lands in the same part: isin = 12 zero bytes (never a valid ISIN), incarnation =
// the flush id, minute = the chunk's UTC day + the chunk's index in seconds (so the same
// partition); its high state holds the chunk's candle count and its low state the flush's
// chunk count. The markers are keyed by flush id and chunk — every marker has a key of its
// own — so they never merge with each other or with candles, and candles merge freely.
// Before writing a chunk the sink looks its flush's markers up (a primary-key range read)
// and skips chunks that landed. The markers live in the candles table rather than a table
// of their own because two tables cannot be written atomically on any ClickHouse version:
// a crash between the two writes would lose or double a chunk.
//
// Versions: 1 ordered candles by (isin, incarnation, minute, flush_id, chunk) with the
// markers keyed by (day, flush_id, chunk), so rows of different flushes never merged. 2 is
// the layout above. Apply migrates a version 1 database (see apply.go).
//
// On a cluster (ApplyCluster, `quotes schema apply --cluster NAME`) every node gets the same
// database with Replicated*MergeTree tables (ZooKeeper paths
// /clickhouse/tables/{shard}/<database>/<table>, replica {replica}: the server's macros),
// so a shard's replicas hold the same rows and the writer of a shard inserts into any of
// them; and a second database, ClusterDatabase(database) = <database>_all, with Distributed
// tables candles and instruments over them, sharded by package shard's ISIN hash, and the
// views. Readers point their DSN at <database>_all and run the same queries.
package schema

import (
	"fmt"
	"strings"

	"github.com/quotesdev/quotes/shard"
)

// Version is the schema version this binary writes and reads. Apply refuses a database
// whose recorded version is newer.
const Version = 2

// MarkerISIN is the isin of the flush marker rows: 12 zero bytes, never a valid ISIN. In SQL
// it is MarkerISINSQL: on 18.16 a FixedString of zero bytes does not compare equal to the
// empty string literal, so the marker is named by toFixedString of it.
const MarkerISIN = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// MarkerISINSQL is the SQL expression of MarkerISIN.
const MarkerISINSQL = "toFixedString('', 12)"

// MaxChunks is the most chunks one flush may have: a marker's minute is its day plus the
// chunk index in seconds.
const MaxChunks = 86400

// DefaultDatabase is the database used when a DSN names none.
const DefaultDatabase = "default"

// ClusterSuffix is appended to the database name for the database of Distributed tables.
const ClusterSuffix = "_all"

// ClusterDatabase returns the database that holds the Distributed tables over database.
func ClusterDatabase(database string) string { return database + ClusterSuffix }

// QuoteIdent quotes a ClickHouse identifier with backticks.
func QuoteIdent(name string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(name) + "`"
}

// quoteString quotes a ClickHouse string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer("\\", "\\\\", "'", "\\'").Replace(s) + "'"
}

// Statements returns the single-server DDL for database, in order, without trailing
// semicolons.
func Statements(database string) []string {
	return render(database, nil)
}

// Cluster describes the cluster layout: its name (a <remote_servers> entry of every node)
// and its number of shards (the N of `--shard K/N`).
type Cluster struct {
	Name   string
	Shards int
}

// ClusterStatements returns the DDL of one cluster node: the local replicated tables in
// database, then the Distributed tables in ClusterDatabase(database).
func ClusterStatements(database string, c Cluster) []string {
	out := render(database, &c)
	dist := QuoteIdent(ClusterDatabase(database))
	db := QuoteIdent(database)
	key := shard.SQL("isin", c.Shards)
	distributed := func(table string) string {
		return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s AS %s.%s\nENGINE = Distributed(%s, %s, %s, %s)",
			dist, table, db, table, quoteString(c.Name), quoteString(database), quoteString(table), key)
	}
	out = append(out,
		"CREATE DATABASE IF NOT EXISTS "+dist,
		strings.ReplaceAll(versionTable, "{db}", dist),
		distributed("instruments"),
		distributed("candles"),
		strings.NewReplacer("{db}", dist, "{marker}", MarkerISINSQL).Replace(mergedView),
	)
	return out
}

// render fills the templates for database, replicated when c is set.
func render(database string, c *Cluster) []string {
	db := QuoteIdent(database)
	engine := func(plain, table string) string {
		if c == nil {
			return plain + "()"
		}
		path := "/clickhouse/tables/{shard}/" + database + "/" + table
		return "Replicated" + plain + "(" + quoteString(path) + ", '{replica}')"
	}
	r := strings.NewReplacer("{db}", db, "{marker}", MarkerISINSQL,
		"{instruments_engine}", engine("ReplacingMergeTree", "instruments"),
		"{candles_engine}", engine("AggregatingMergeTree", "candles"))
	out := make([]string, len(ddl))
	for i, s := range ddl {
		out[i] = r.Replace(s)
	}
	return out
}

const versionTable = `CREATE TABLE IF NOT EXISTS {db}.quotes_schema
(
    version    UInt32,
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY version`

const candlesTable = `CREATE TABLE IF NOT EXISTS {db}.{table}
(
    isin        FixedString(12),
    incarnation UInt64,
    minute      DateTime('UTC'),
    open        AggregateFunction(argMin, Int64, Tuple(Int64, UInt64)),
    open_at     AggregateFunction(min, Tuple(Int64, UInt64)),
    close       AggregateFunction(argMax, Int64, Tuple(Int64, UInt64)),
    close_at    AggregateFunction(max, Tuple(Int64, UInt64)),
    high        AggregateFunction(max, Int64),
    low         AggregateFunction(min, Int64),
    quotes      AggregateFunction(sum, UInt64)
)
ENGINE = {candles_engine}
PARTITION BY toYYYYMMDD(minute)
ORDER BY (isin, incarnation, minute)`

const mergedView = `CREATE VIEW IF NOT EXISTS {db}.candles_merged
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
GROUP BY isin, incarnation, minute`

// ddl is the schema, {db} standing for the quoted database name. The first two statements
// (database, version table) come first so Apply can check the recorded version before it
// changes anything.
var ddl = [...]string{
	`CREATE DATABASE IF NOT EXISTS {db}`,

	versionTable,

	`CREATE TABLE IF NOT EXISTS {db}.instruments
(
    isin        FixedString(12),
    incarnation UInt64,
    seq         UInt64,
    ts          Int64,
    kind        Enum8('ADD' = 1, 'DELETE' = 2),
    description String
)
ENGINE = {instruments_engine}
ORDER BY (isin, incarnation, seq)`,

	`CREATE TABLE IF NOT EXISTS {db}.candles_input
(
    isin        FixedString(12),
    incarnation UInt64,
    minute      DateTime('UTC'),
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

	strings.Replace(candlesTable, "{table}", "candles", 1),

	`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.candles_mv TO {db}.candles
AS SELECT
    isin,
    incarnation,
    minute,
    argMinState(open_price, tuple(open_ts, open_seq))  AS open,
    minState(tuple(open_ts, open_seq))                 AS open_at,
    argMaxState(close_price, tuple(close_ts, close_seq)) AS close,
    maxState(tuple(close_ts, close_seq))               AS close_at,
    maxState(high)                                     AS high,
    minState(low)                                      AS low,
    sumState(quotes)                                   AS quotes
FROM {db}.candles_input
GROUP BY isin, incarnation, minute`,

	mergedView,

	`CREATE VIEW IF NOT EXISTS {db}.flushes
AS SELECT
    incarnation                             AS flush_id,
    toUInt32(toUInt32(minute) % 86400)      AS chunk,
    toDate(minute)                          AS day,
    toUInt64(maxMerge(high))                AS candles,
    toUInt64(minMerge(low))                 AS chunks
FROM {db}.candles
WHERE isin = {marker}
GROUP BY incarnation, minute`,
}
