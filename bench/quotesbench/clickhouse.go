package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/internal/proc"
	"github.com/quotesdev/quotes/schema"
)

// chBaseline is a private ClickHouse server, started the way the tests start one.
type chBaseline struct {
	srv     *chtest.Server
	conn    driver.Conn
	version string
	err     error // why the baseline is not available
}

// chInsertRows is the number of quotes per INSERT (one external-table block).
const chInsertRows = 1_000_000

func (b *bench) startClickHouse() *chBaseline {
	ch := &chBaseline{}
	if b.cfg.noCH {
		ch.err = errors.New("skipped (-no-clickhouse)")
		return ch
	}
	dir := filepath.Join(b.tmp, "clickhouse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ch.err = err
		return ch
	}
	b.logf("starting ClickHouse")
	srv, err := chtest.StartProcess(dir)
	if err != nil {
		ch.err = fmt.Errorf("ClickHouse server: %s", firstLine(err.Error()))
		return ch
	}
	ch.srv = srv
	b.cleanFn = append(b.cleanFn, srv.Stop)
	opts, _, err := schema.ParseDSN(srv.DSN)
	if err != nil {
		ch.err = err
		return ch
	}
	opts.ReadTimeout = 5 * time.Minute
	conn, err := clickhouse.Open(opts)
	if err != nil {
		ch.err = err
		return ch
	}
	ch.conn = conn
	b.cleanFn = append(b.cleanFn, func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&ch.version); err != nil {
		ch.err = fmt.Errorf("ClickHouse version(): %w", err)
		return ch
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS bench"); err != nil {
		ch.err = fmt.Errorf("ClickHouse: %w", err)
		return ch
	}
	b.header = append(b.header, fmt.Sprintf("baseline: ClickHouse %s, private server (internal/chtest config), started in %s", ch.version, secs(srv.StartupTime)))
	return ch
}

// quoteCols is one INSERT's worth of quotes, column by column.
type quoteCols struct {
	isin  []string
	sec   []uint32
	ts    []int64
	seq   []uint64
	price []int64
}

func (q *quoteCols) len() int { return len(q.ts) }

// readQuotes decodes the recording's quotes into blocks of chInsertRows; seq is the line
// number (arrival order).
func readQuotes(ctx context.Context, path string, out chan<- *quoteCols) error {
	defer close(out)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rr := feed.NewRecordingReader(f)
	fresh := func() *quoteCols {
		return &quoteCols{isin: make([]string, 0, chInsertRows), sec: make([]uint32, 0, chInsertRows),
			ts: make([]int64, 0, chInsertRows), seq: make([]uint64, 0, chInsertRows), price: make([]int64, 0, chInsertRows)}
	}
	q := fresh()
	var m feed.Message
	for {
		err := rr.Next(&m)
		var de *feed.DecodeError
		switch {
		case errors.As(err, &de):
			continue
		case errors.Is(err, io.EOF):
			if q.len() > 0 {
				select {
				case out <- q:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		case err != nil:
			return err
		}
		if m.Kind != feed.KindQuote {
			continue
		}
		q.isin = append(q.isin, m.ISIN.String())
		q.sec = append(q.sec, uint32(m.TS/1e9))
		q.ts = append(q.ts, m.TS)
		q.seq = append(q.seq, uint64(rr.Line()))
		q.price = append(q.price, int64(m.Price))
		if q.len() == chInsertRows {
			select {
			case out <- q:
			case <-ctx.Done():
				return ctx.Err()
			}
			q = fresh()
		}
	}
}

// run inserts the recording's quotes raw and measures candle queries for the ISINs the
// embedded store was asked for.
func (ch *chBaseline) run(ctx context.Context, b *bench, col int, w workload, feedFile string, isins []string) error {
	tbl := "bench.quotes_" + w.Name
	ddl := fmt.Sprintf(`CREATE TABLE %s (isin FixedString(12), t DateTime, ts Int64, seq UInt64, price Int64)
ENGINE = MergeTree() PARTITION BY toYYYYMMDD(t) ORDER BY (isin, ts)`, tbl)
	defer ch.conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+tbl)
	b.cmd(col, "ClickHouse: "+strings.Join(strings.Fields(ddl), " "))
	b.cmd(col, fmt.Sprintf("ClickHouse: INSERT INTO %s SELECT … FROM <external table of %s quotes> (native protocol), decoded from the same recording while the previous INSERT runs", tbl, num(chInsertRows)))

	// bestOf times, each into a fresh table, keeping the fastest run's figures; the last run's
	// table answers the queries.
	var rows int
	var wall, insertTime time.Duration
	var others []string
	for run := range bestOf {
		if err := ch.conn.Exec(ctx, "DROP TABLE IF EXISTS "+tbl); err != nil {
			return fmt.Errorf("drop table: %w", err)
		}
		if err := ch.conn.Exec(ctx, ddl); err != nil {
			return fmt.Errorf("create table: %w", err)
		}
		if err := warmCache(feedFile); err != nil {
			return err
		}
		b.logf("%s: ClickHouse insert (run %d of %d)", w.Name, run+1, bestOf)
		r, wl, it, err := ch.insert(ctx, tbl, feedFile)
		if err != nil {
			return err
		}
		switch {
		case run == 0:
			rows, wall, insertTime = r, wl, it
		case wl < wall:
			others = append(others, secs(wall))
			rows, wall, insertTime = r, wl, it
		default:
			others = append(others, secs(wl))
		}
	}
	var disk uint64
	if err := ch.conn.QueryRow(ctx, fmt.Sprintf("SELECT toUInt64(sum(bytes)) FROM system.parts WHERE active AND database = 'bench' AND table = 'quotes_%s'", w.Name)).Scan(&disk); err != nil {
		disk = 0
	}
	other := ""
	if len(others) > 0 {
		other = "; other run " + strings.Join(others, ", ")
	}
	b.t.set("insert throughput (file → ClickHouse)", col, fmt.Sprintf("%s (%s for %s rows%s)", rate(float64(rows), wall), secs(wall), num(float64(rows)), other))
	b.t.set("insert throughput (INSERT statements only)", col, rate(float64(rows), insertTime))
	b.res.set(w.Name, keyCHFileQPS, float64(rows)/wall.Seconds())
	if insertTime > 0 {
		b.res.set(w.Name, keyCHInsertQPS, float64(rows)/insertTime.Seconds())
	}
	if disk > 0 {
		b.t.set("bytes/quote on disk (compressed parts)", col, fmt.Sprintf("%.1f B (%s)", float64(disk)/float64(max(rows, 1)), mib(int64(disk))))
	}
	ours := b.ourReplay[col]
	if ours > 0 && wall > 0 {
		b.t.set("ours ÷ theirs: replay --sync batch q/s ÷ file → CH q/s", col, ratio(ours, float64(rows)/wall.Seconds()))
	}

	// Candles by GROUP BY: the last 30 minutes of the data (it ends at its latest minute).
	var maxT uint32
	if err := ch.conn.QueryRow(ctx, "SELECT toUInt32(max(t)) FROM "+tbl).Scan(&maxT); err != nil {
		return fmt.Errorf("max(t): %w", err)
	}
	hi := int64(maxT) - int64(maxT)%60 + 60
	lo := hi - 30*60
	query := func(isin string) string {
		sql := fmt.Sprintf(`SELECT toStartOfMinute(t) AS m, argMin(price, ts) AS open, max(price) AS high, min(price) AS low, argMax(price, ts) AS close, count() AS quotes
FROM %s WHERE isin = '%s' AND t >= toDateTime(%d) AND t < toDateTime(%d) GROUP BY m ORDER BY m FORMAT JSONCompact`, tbl, isin, lo, hi)
		return "http://" + ch.srv.HTTPAddr + "/?query=" + url.QueryEscape(sql)
	}
	b.cmd(col, "ClickHouse: SELECT toStartOfMinute(t) AS m, argMin(price, ts), max(price), min(price), argMax(price, ts), count() FROM "+tbl+" WHERE isin = ? AND t in the last 30 min GROUP BY m ORDER BY m FORMAT JSONCompact   (HTTP interface, same ISINs as ours)")
	b.logf("%s: ClickHouse queries", w.Name)
	if code, body, err := proc.Get(ctx, query(isins[0])); err != nil || code != http.StatusOK {
		return fmt.Errorf("candle query: status %d, %v: %s", code, err, firstLine(string(body)))
	}
	latencies(ctx, isins[:50], 1, 0, query) // warm-up
	lat, errs := latencies(ctx, isins, 1, 0, query)
	b.t.set("last=30m by GROUP BY, HTTP, 1 client: p50 / p99", col, latCell(lat, errs))
	if o := b.ourQueryP50[col]; o > 0 && len(lat) > 0 {
		b.t.set("ours ÷ theirs: query p50 (below 1: ours faster)", col, ratio(float64(o), float64(exactQuantile(0.5, lat))))
	}
	b.note("ClickHouse baseline: the raw quotes go in by INSERT … SELECT from an external table (clickhouse-go's batch insert does not work on 18.16); \"file → ClickHouse\" counts decoding the same JSONL with the same decoder, overlapped with the inserts; argMin/argMax by ts (no tie-break by arrival order as ours has); both query paths are HTTP + JSON on loopback, one client, the same ISIN sequence, after 50 warm-up requests.")
	return nil
}

// insert inserts the recording's quotes into tbl, decoding them from feedFile while the
// previous INSERT runs; it returns the rows, the wall time of the whole and the time spent
// in INSERT statements.
func (ch *chBaseline) insert(ctx context.Context, tbl, feedFile string) (rows int, wall, insertTime time.Duration, err error) {
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	blocks := make(chan *quoteCols, 1)
	readErr := make(chan error, 1)
	begin := time.Now()
	go func() { readErr <- readQuotes(ictx, feedFile, blocks) }()
	q := fmt.Sprintf("INSERT INTO %s (isin, t, ts, seq, price) SELECT isin, toDateTime(t), ts, seq, price FROM q", tbl)
	for blk := range blocks {
		t, err := export.ExternalTable("q",
			export.ExternalColumn{Name: "isin", Type: "FixedString(12)", Values: blk.isin},
			export.ExternalColumn{Name: "t", Type: "UInt32", Values: blk.sec},
			export.ExternalColumn{Name: "ts", Type: "Int64", Values: blk.ts},
			export.ExternalColumn{Name: "seq", Type: "UInt64", Values: blk.seq},
			export.ExternalColumn{Name: "price", Type: "Int64", Values: blk.price})
		if err != nil {
			cancel()
			for range blocks {
			}
			return 0, 0, 0, err
		}
		t0 := time.Now()
		if err := ch.conn.Exec(clickhouse.Context(ictx, clickhouse.WithExternalTable(t)), q); err != nil {
			cancel()
			for range blocks {
			}
			return 0, 0, 0, fmt.Errorf("insert: %w", err)
		}
		insertTime += time.Since(t0)
		rows += blk.len()
	}
	if err := <-readErr; err != nil {
		return 0, 0, 0, fmt.Errorf("read %s: %w", feedFile, err)
	}
	return rows, time.Since(begin), insertTime, nil
}
