package export

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/schema"
)

// DefaultChunkRows is the default of ClickHouseOptions.ChunkRows.
const DefaultChunkRows = 200_000

// MaxChunkRows is the largest ClickHouseOptions.ChunkRows: a chunk must stay below the
// server's min_insert_block_size_rows (1,048,576 by default) so that the materialized view
// writes it as one block, hence one data part per partition.
const MaxChunkRows = 1_000_000

// DefaultClickHouseTimeout is the default of ClickHouseOptions.Timeout.
const DefaultClickHouseTimeout = 2 * time.Minute

// ErrFlushConflict reports a flush id whose landed chunks do not match the candles given
// for it now: a caller bug (the same flush id for different candles), or ChunkRows changed
// between a partly landed flush and its retry. Nothing is written.
var ErrFlushConflict = errors.New("clickhouse: flush already landed with different contents")

// ClickHouseOptions configure a ClickHouseSink.
type ClickHouseOptions struct {
	// DSN is the server: clickhouse://[user[:password]@]host:9000/database (native protocol).
	DSN string
	// Database overrides the DSN's database (default "default").
	Database string
	// ChunkRows is the most candles one INSERT carries (DefaultChunkRows when zero, at most
	// MaxChunkRows). Larger flushes are split into chunks, each landing atomically on its own;
	// see Write. Keep it fixed while flushes may be pending a retry.
	ChunkRows int
	// Timeout bounds each statement (DefaultClickHouseTimeout when zero).
	Timeout time.Duration
}

// ClickHouseStats are a sink's cumulative counters.
type ClickHouseStats struct {
	// Flushes is the number of Write calls that succeeded.
	Flushes uint64
	// Chunks is the number of chunks inserted; ChunksSkipped those found already landed
	// (a retried flush).
	Chunks, ChunksSkipped uint64
	// Rows is the number of candle rows inserted (markers not counted).
	Rows uint64
	// InstrumentEvents is the number of instrument events inserted.
	InstrumentEvents uint64
}

// ClickHouseSink writes candle states and instrument events to ClickHouse, exactly once per
// flush id, and reads them back merged. The schema (package schema) is applied on first use.
// It is safe for concurrent use; writes are serialised.
//
// Exactly-once: Write splits a flush into chunks (one per UTC day, at most ChunkRows rows
// each, in a deterministic order) and inserts each chunk as one INSERT … SELECT of one
// external-table block into the Null table candles_input. The materialized view turns that
// block into one block of aggregate states, which the AggregatingMergeTree commits as one
// data part (a chunk never spans two partitions): a chunk lands entirely or not at all. Each
// chunk carries a marker row keyed by the flush id and chunk index (see package schema) that
// lands in the same part; before inserting, Write reads the flush's markers and skips chunks
// that landed.
// A crash (of the process or of ClickHouse) at any moment, followed by a retry of the same
// flush, so writes every chunk exactly once. This relies on no insert deduplication setting
// and holds on every server version. One writer per database: two processes writing the
// same flush id concurrently could both insert it.
//
// Durability is ClickHouse's: a part is committed when the INSERT returns, but 18.16 does
// not fsync it, so a machine crash (not a process crash) right after a flush can lose it.
type ClickHouseSink struct {
	conn      driver.Conn
	db        string // quoted database name
	database  string
	target    string // clickhouse://host:port/database, no credentials
	chunkRows int
	timeout   time.Duration

	mu           sync.Mutex // serialises writes, guards the fields below
	schemaReady  bool
	stats        ClickHouseStats
	testAfterFn  func(chunk int) error // test hook: called after each inserted chunk
	testBeforeFn func(chunk int) error // test hook: called before each insert
}

// NewClickHouseSink returns a sink for opts.DSN. It validates the options and sets up the
// connection pool without connecting: a server that is down does not stop the caller; the
// schema is applied, and errors surface, on first use. Ping checks the server at once.
func NewClickHouseSink(_ context.Context, opts ClickHouseOptions) (*ClickHouseSink, error) {
	chOpts, database, err := schema.ParseDSN(opts.DSN)
	if err != nil {
		return nil, err
	}
	if opts.Database != "" {
		database = opts.Database
	}
	switch {
	case opts.ChunkRows == 0:
		opts.ChunkRows = DefaultChunkRows
	case opts.ChunkRows < 0 || opts.ChunkRows > MaxChunkRows:
		return nil, fmt.Errorf("clickhouse sink: chunk rows %d: want 1 to %d", opts.ChunkRows, MaxChunkRows)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultClickHouseTimeout
	}
	conn, err := clickhouse.Open(chOpts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse sink %s: %w", strings.Join(chOpts.Addr, ","), err)
	}
	return &ClickHouseSink{
		target:    "clickhouse://" + strings.Join(chOpts.Addr, ",") + "/" + database,
		conn:      conn,
		db:        schema.QuoteIdent(database),
		database:  database,
		chunkRows: opts.ChunkRows,
		timeout:   opts.Timeout,
	}, nil
}

// Database returns the database the sink writes to.
func (s *ClickHouseSink) Database() string { return s.database }

// Target returns where the sink writes, without credentials: clickhouse://host:port/db.
func (s *ClickHouseSink) Target() string { return s.target }

// Ping checks that the server answers and that the schema is in place (applying it if
// needed).
func (s *ClickHouseSink) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ensureSchema(ctx)
}

// Close closes the connections.
func (s *ClickHouseSink) Close() error {
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("close clickhouse sink: %w", err)
	}
	return nil
}

// Stats returns the sink's counters.
func (s *ClickHouseSink) Stats() ClickHouseStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// ensureSchema applies the schema once per sink. s.mu must be held.
func (s *ClickHouseSink) ensureSchema(ctx context.Context) error {
	if s.schemaReady {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := schema.Apply(ctx, s.conn, s.database); err != nil {
		return fmt.Errorf("clickhouse sink: %w", err)
	}
	s.schemaReady = true
	return nil
}

// chunk is a run of sorted candles written by one INSERT.
type chunk struct {
	index  int
	day    int64 // Unix seconds of the UTC day start
	rows   []aggregate.Candle
	landed bool
}

// Write stores the candle states of one flush, identified by flushID (the WAL sequence of
// the flush: deterministic, so a retry after a crash uses the same id for the same candles).
// Calling it again with the same flushID and candles, after a success or a failure at any
// point, never counts a candle twice: chunks that landed are skipped. A late correction is a
// further flush with its own id; Candles merges it. Candles with no quotes are ignored;
// candles of the same Key are merged first. On an error the caller retries the same flush
// later.
func (s *ClickHouseSink) Write(ctx context.Context, flushID uint64, candles []aggregate.Candle) error {
	rows, err := prepare(candles)
	if err != nil {
		return fmt.Errorf("clickhouse write flush %d: %w", flushID, err)
	}
	if len(rows) == 0 {
		return nil
	}
	chunks := splitChunks(rows, s.chunkRows)
	if len(chunks) > schema.MaxChunks {
		return fmt.Errorf("clickhouse write flush %d: %d chunks, more than %d: raise ChunkRows", flushID, len(chunks), schema.MaxChunks)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureSchema(ctx); err != nil {
		return err
	}
	// An INSERT of an earlier attempt that the client gave up on (a timeout, a cancelled
	// context, a killed process) may still be running on the server: wait until it ends,
	// or the marker check below could miss a chunk that lands right after it.
	if err := s.waitInserts(ctx); err != nil {
		return err
	}
	if err := s.markLanded(ctx, flushID, chunks); err != nil {
		return err
	}
	for i := range chunks {
		c := &chunks[i]
		if c.landed {
			s.stats.ChunksSkipped++
			continue
		}
		if s.testBeforeFn != nil {
			if err := s.testBeforeFn(c.index); err != nil {
				return err
			}
		}
		if err := s.insertChunk(ctx, flushID, len(chunks), c); err != nil {
			return fmt.Errorf("clickhouse write flush %d chunk %d/%d (%d candles): %w", flushID, c.index+1, len(chunks), len(c.rows), err)
		}
		s.stats.Chunks++
		s.stats.Rows += uint64(len(c.rows))
		if s.testAfterFn != nil {
			if err := s.testAfterFn(c.index); err != nil {
				return err
			}
		}
	}
	s.stats.Flushes++
	return nil
}

// maxMinuteSec is the last minute a DateTime (UInt32 seconds) holds.
const maxMinuteSec = math.MaxUint32 - math.MaxUint32%60

// prepare validates and copies candles, merges states of the same Key, drops empty ones,
// and sorts them by (day, ISIN, incarnation, minute).
func prepare(candles []aggregate.Candle) ([]aggregate.Candle, error) {
	rows := make([]aggregate.Candle, 0, len(candles))
	for i := range candles {
		c := &candles[i]
		if c.Empty() {
			continue
		}
		if _, ok := feed.ParseISIN(c.ISIN.String()); !ok {
			return nil, fmt.Errorf("candle %d: invalid ISIN %q", i, c.ISIN.String())
		}
		if c.Minute < 0 || c.Minute%aggregate.MinuteNanos != 0 || c.Minute/1e9 > maxMinuteSec {
			return nil, fmt.Errorf("candle %d (%s): minute %d is not a minute start in 1970–2106", i, c.ISIN, c.Minute)
		}
		rows = append(rows, *c)
	}
	slices.SortFunc(rows, func(a, b aggregate.Candle) int {
		return cmp.Or(
			cmp.Compare(a.Minute/dayNanos, b.Minute/dayNanos),
			strings.Compare(a.ISIN.String(), b.ISIN.String()),
			cmp.Compare(a.Incarnation, b.Incarnation),
			cmp.Compare(a.Minute, b.Minute),
		)
	})
	// Merge runs of equal keys in place.
	out := rows[:0]
	for _, c := range rows {
		if n := len(out); n > 0 && out[n-1].Key == c.Key {
			out[n-1].Merge(&c)
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

const dayNanos = 24 * 60 * aggregate.MinuteNanos

// splitChunks cuts sorted rows into chunks of one UTC day and at most max rows each.
func splitChunks(rows []aggregate.Candle, max int) []chunk {
	var chunks []chunk
	for start := 0; start < len(rows); {
		day := rows[start].Minute / dayNanos
		end := start
		for end < len(rows) && end-start < max && rows[end].Minute/dayNanos == day {
			end++
		}
		chunks = append(chunks, chunk{index: len(chunks), day: day * 86400, rows: rows[start:end]})
		start = end
	}
	return chunks
}

// markLanded reads the markers of flushID and sets chunk.landed for the chunks found. A
// marker that does not match the chunk computed now is ErrFlushConflict. A marker's key is
// (schema.MarkerISIN, flushID, day + chunk index in seconds): see package schema.
func (s *ClickHouseSink) markLanded(ctx context.Context, flushID uint64, chunks []chunk) error {
	q := fmt.Sprintf(`SELECT toUInt32(minute), toInt64(maxMerge(high)), toInt64(minMerge(low))
FROM %s.candles
WHERE isin = %s AND incarnation = %d
GROUP BY minute`, s.db, schema.MarkerISINSQL, flushID)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.conn.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("clickhouse write flush %d: read flush markers: %w", flushID, err)
	}
	defer res.Close()
	for res.Next() {
		var (
			at          uint32
			rows, total int64
		)
		if err := res.Scan(&at, &rows, &total); err != nil {
			return fmt.Errorf("clickhouse write flush %d: read flush markers: %w", flushID, err)
		}
		index, day := int(at%86400), int64(at-at%86400)
		if index >= len(chunks) || total != int64(len(chunks)) ||
			rows != int64(len(chunks[index].rows)) || day != chunks[index].day {
			return fmt.Errorf("%w: flush %d chunk %d landed as %d of %d chunks with %d candles on day %d, now %d chunks",
				ErrFlushConflict, flushID, index, index+1, total, rows, day, len(chunks))
		}
		chunks[index].landed = true
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("clickhouse write flush %d: read flush markers: %w", flushID, err)
	}
	return nil
}

// candleColumns are the columns of candles_input, in the order insertChunk fills them.
const candleColumns = "isin, incarnation, minute, open_price, open_ts, open_seq, close_price, close_ts, close_seq, high, low, quotes"

// insertChunk inserts one chunk plus its marker as one block.
func (s *ClickHouseSink) insertChunk(ctx context.Context, flushID uint64, total int, c *chunk) error {
	n := len(c.rows) + 1
	var (
		isin                   = make([]string, 0, n)
		inc, openSeq, closeSeq = make([]uint64, 0, n), make([]uint64, 0, n), make([]uint64, 0, n)
		quotes                 = make([]uint64, 0, n)
		minute                 = make([]uint32, 0, n)
		openP, openTS          = make([]int64, 0, n), make([]int64, 0, n)
		closeP, closeTS        = make([]int64, 0, n), make([]int64, 0, n)
		high, low              = make([]int64, 0, n), make([]int64, 0, n)
	)
	for i := range c.rows {
		r := &c.rows[i]
		isin = append(isin, r.ISIN.String())
		inc = append(inc, r.Incarnation)
		minute = append(minute, uint32(r.Minute/1e9))
		openP, openTS, openSeq = append(openP, int64(r.Open)), append(openTS, r.OpenTS), append(openSeq, r.OpenSeq)
		closeP, closeTS, closeSeq = append(closeP, int64(r.Close)), append(closeTS, r.CloseTS), append(closeSeq, r.CloseSeq)
		high, low = append(high, int64(r.High)), append(low, int64(r.Low))
		quotes = append(quotes, r.Quotes)
	}
	// The marker, keyed by (flush id, chunk): the chunk's day plus its index in seconds, so
	// the same partition, hence the same data part as the chunk's candles.
	isin = append(isin, schema.MarkerISIN)
	inc = append(inc, flushID)
	minute = append(minute, uint32(c.day)+uint32(c.index))
	openP, openTS, openSeq = append(openP, 0), append(openTS, 0), append(openSeq, 0)
	closeP, closeTS, closeSeq = append(closeP, 0), append(closeTS, 0), append(closeSeq, 0)
	high, low = append(high, int64(len(c.rows))), append(low, int64(total))
	quotes = append(quotes, 0)

	tbl, err := ExternalTable("quotes_rows",
		ExternalColumn{"isin", "FixedString(12)", isin},
		ExternalColumn{"incarnation", "UInt64", inc},
		ExternalColumn{"minute", "UInt32", minute},
		ExternalColumn{"open_price", "Int64", openP},
		ExternalColumn{"open_ts", "Int64", openTS},
		ExternalColumn{"open_seq", "UInt64", openSeq},
		ExternalColumn{"close_price", "Int64", closeP},
		ExternalColumn{"close_ts", "Int64", closeTS},
		ExternalColumn{"close_seq", "UInt64", closeSeq},
		ExternalColumn{"high", "Int64", high},
		ExternalColumn{"low", "Int64", low},
		ExternalColumn{"quotes", "UInt64", quotes},
	)
	if err != nil {
		return fmt.Errorf("build block: %w", err)
	}
	// INSERT … SELECT from an external table: over the native protocol, 18.16 ignores data
	// inline in the query, and clickhouse-go's batches (INSERT … FORMAT Native) get an empty
	// header from it; an external table is one binary block on every version.
	q := fmt.Sprintf("INSERT INTO %s.candles_input (%s) SELECT %s FROM quotes_rows",
		s.db, candleColumns, strings.Replace(candleColumns, "minute,", "toDateTime(minute),", 1))
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.conn.Exec(clickhouse.Context(ctx, clickhouse.WithExternalTable(tbl)), q); err != nil {
		return err
	}
	return nil
}

// Candles returns the merged candles of every incarnation of isin for the minutes m with
// from ≤ m < to (Unix nanoseconds), ordered by incarnation and minute: all flushes of a
// minute (late corrections included) merged, the same values Candle.Merge gives.
func (s *ClickHouseSink) Candles(ctx context.Context, isin feed.ISIN, from, to int64) ([]aggregate.Candle, error) {
	if _, ok := feed.ParseISIN(isin.String()); !ok {
		return nil, fmt.Errorf("clickhouse candles: invalid ISIN %q", isin.String())
	}
	lo, hi := secondsCeil(from), secondsCeil(to)
	if lo >= hi {
		return nil, nil
	}
	q := fmt.Sprintf(`SELECT
    incarnation,
    toUInt32(minute),
    argMinMerge(open),
    tupleElement(minMerge(open_at) AS oa, 1),
    tupleElement(oa, 2),
    argMaxMerge(close),
    tupleElement(maxMerge(close_at) AS ca, 1),
    tupleElement(ca, 2),
    maxMerge(high),
    minMerge(low),
    sumMerge(quotes)
FROM %s.candles
WHERE isin = toFixedString('%s', 12) AND minute >= toDateTime(%d) AND minute < toDateTime(%d)
GROUP BY incarnation, minute
ORDER BY incarnation, minute`, s.db, isin.String(), lo, hi)
	s.mu.Lock()
	err := s.ensureSchema(ctx)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("clickhouse candles of %s: %w", isin, err)
	}
	defer res.Close()
	var out []aggregate.Candle
	for res.Next() {
		var (
			c                   aggregate.Candle
			min                 uint32
			open, close, hi, lo int64
		)
		if err := res.Scan(&c.Incarnation, &min, &open, &c.OpenTS, &c.OpenSeq,
			&close, &c.CloseTS, &c.CloseSeq, &hi, &lo, &c.Quotes); err != nil {
			return nil, fmt.Errorf("clickhouse candles of %s: %w", isin, err)
		}
		c.ISIN = isin
		c.Minute = int64(min) * 1e9
		c.Open, c.Close, c.High, c.Low = feed.Price(open), feed.Price(close), feed.Price(hi), feed.Price(lo)
		out = append(out, c)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse candles of %s: %w", isin, err)
	}
	return out, nil
}

// secondsCeil converts Unix nanoseconds to the smallest whole second at or after it,
// clamped to the DateTime range.
func secondsCeil(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	s := ns / 1e9
	if ns%1e9 != 0 {
		s++
	}
	return min(s, math.MaxUint32)
}
