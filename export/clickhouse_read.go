package export

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/schema"
)

// Reads for serving candles from ClickHouse (cmd/quotes: query/serve --clickhouse) and for
// backfill. Marker rows are never returned.

// query runs q and calls scan for each row.
func (s *ClickHouseSink) query(ctx context.Context, what, q string, scan func(dest func(...any) error) error) error {
	s.mu.Lock()
	err := s.ensureSchema(ctx)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.conn.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("clickhouse %s: %w", what, err)
	}
	defer res.Close()
	for res.Next() {
		if err := scan(res.Scan); err != nil {
			return fmt.Errorf("clickhouse %s: %w", what, err)
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("clickhouse %s: %w", what, err)
	}
	return nil
}

// LatestMinute returns the latest minute holding a candle of any instrument (Unix ns).
func (s *ClickHouseSink) LatestMinute(ctx context.Context) (int64, bool, error) {
	var (
		m, n uint64
	)
	err := s.query(ctx, "latest minute", fmt.Sprintf(
		"SELECT toUInt64(max(toUInt32(minute))), count() FROM %s.candles WHERE isin != %s", s.db, schema.MarkerISINSQL),
		func(scan func(...any) error) error { return scan(&m, &n) })
	return int64(m) * 1e9, err == nil && n > 0, err
}

// MinuteBounds returns the first and last minute holding a candle of an incarnation.
func (s *ClickHouseSink) MinuteBounds(ctx context.Context, isin feed.ISIN, incarnation uint64) (first, last int64, ok bool, err error) {
	if _, valid := feed.ParseISIN(isin.String()); !valid {
		return 0, 0, false, fmt.Errorf("clickhouse minute bounds: invalid ISIN %q", isin.String())
	}
	var lo, hi, n uint64
	err = s.query(ctx, "minute bounds of "+isin.String(), fmt.Sprintf(
		"SELECT toUInt64(min(toUInt32(minute))), toUInt64(max(toUInt32(minute))), count() FROM %s.candles WHERE isin = toFixedString('%s', 12) AND incarnation = %d",
		s.db, isin, incarnation),
		func(scan func(...any) error) error { return scan(&lo, &hi, &n) })
	return int64(lo) * 1e9, int64(hi) * 1e9, err == nil && n > 0, err
}

// LastMinuteBefore returns the latest minute before `before` holding a candle of the
// incarnation.
func (s *ClickHouseSink) LastMinuteBefore(ctx context.Context, isin feed.ISIN, incarnation uint64, before int64) (int64, bool, error) {
	if _, valid := feed.ParseISIN(isin.String()); !valid {
		return 0, false, fmt.Errorf("clickhouse minute before: invalid ISIN %q", isin.String())
	}
	var m, n uint64
	err := s.query(ctx, "minute before of "+isin.String(), fmt.Sprintf(
		"SELECT toUInt64(max(toUInt32(minute))), count() FROM %s.candles WHERE isin = toFixedString('%s', 12) AND incarnation = %d AND minute < toDateTime(%d)",
		s.db, isin, incarnation, secondsCeil(before)),
		func(scan func(...any) error) error { return scan(&m, &n) })
	return int64(m) * 1e9, err == nil && n > 0, err
}

// LatestPrice is the latest quote of an incarnation as its candles hold it.
type LatestPrice struct {
	Price feed.Price
	TS    int64
	Seq   uint64
}

// LatestPrices returns the latest quote (largest (ts, seq)) of every incarnation with
// candles, over all their minutes. It reads the whole table: meant for instrument lists.
func (s *ClickHouseSink) LatestPrices(ctx context.Context) (map[aggregate.Key]LatestPrice, error) {
	out := map[aggregate.Key]LatestPrice{}
	err := s.query(ctx, "latest prices", fmt.Sprintf(`SELECT isin, incarnation, argMaxMerge(close),
    tupleElement(maxMerge(close_at) AS ca, 1), tupleElement(ca, 2)
FROM %s.candles WHERE isin != %s GROUP BY isin, incarnation`, s.db, schema.MarkerISINSQL),
		func(scan func(...any) error) error {
			var (
				isin  string
				inc   uint64
				price int64
				lp    LatestPrice
			)
			if err := scan(&isin, &inc, &price, &lp.TS, &lp.Seq); err != nil {
				return err
			}
			id, ok := feed.ParseISIN(strings.TrimRight(isin, "\x00"))
			if !ok {
				return fmt.Errorf("invalid ISIN %q in the table", isin)
			}
			lp.Price = feed.Price(price)
			out[aggregate.Key{ISIN: id, Incarnation: inc}] = lp
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MergedCandles calls fn with every merged candle (all flushes of a key merged) whose
// minute is in [from, to), ordered by ISIN, incarnation, minute. Meant for backfill.
func (s *ClickHouseSink) MergedCandles(ctx context.Context, from, to int64, fn func(c aggregate.Candle) error) error {
	lo, hi := secondsCeil(from), secondsCeil(to)
	if lo >= hi {
		return nil
	}
	q := fmt.Sprintf(`SELECT isin, incarnation, toUInt32(minute),
    argMinMerge(open), tupleElement(minMerge(open_at) AS oa, 1), tupleElement(oa, 2),
    argMaxMerge(close), tupleElement(maxMerge(close_at) AS ca, 1), tupleElement(ca, 2),
    maxMerge(high), minMerge(low), sumMerge(quotes)
FROM %s.candles
WHERE isin != %s AND minute >= toDateTime(%d) AND minute < toDateTime(%d)
GROUP BY isin, incarnation, minute
ORDER BY isin, incarnation, minute`, s.db, schema.MarkerISINSQL, lo, hi)
	return s.query(ctx, "merged candles", q, func(scan func(...any) error) error {
		var (
			c                   aggregate.Candle
			isin                string
			min                 uint32
			open, close, hi, lo int64
		)
		if err := scan(&isin, &c.Incarnation, &min, &open, &c.OpenTS, &c.OpenSeq,
			&close, &c.CloseTS, &c.CloseSeq, &hi, &lo, &c.Quotes); err != nil {
			return err
		}
		id, ok := feed.ParseISIN(strings.TrimRight(isin, "\x00"))
		if !ok {
			return fmt.Errorf("invalid ISIN %q in the table", isin)
		}
		c.ISIN, c.Minute = id, int64(min)*1e9
		c.Open, c.Close, c.High, c.Low = feed.Price(open), feed.Price(close), feed.Price(hi), feed.Price(lo)
		return fn(c)
	})
}

// waitInserts waits until no INSERT into the database's candles_input runs on the server
// (system.processes), polling, bounded by the sink's timeout. s.mu must be held.
func (s *ClickHouseSink) waitInserts(ctx context.Context) error {
	needle := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace("INSERT INTO " + s.db + ".candles_input")
	q := fmt.Sprintf("SELECT count() FROM system.processes WHERE position(query, '%s') = 1", needle)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	for {
		var n uint64
		if err := s.conn.QueryRow(ctx, q).Scan(&n); err != nil {
			return fmt.Errorf("clickhouse: check for running inserts: %w", err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clickhouse: %d earlier inserts still running: %w", n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
