package export

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
)

// The three datasets of the archive, each the first path element of its files' keys.
const (
	DatasetQuotes  = "quotes"
	DatasetEvents  = "events"
	DatasetCandles = "candles"
)

// QuoteRow is one raw quote in quotes/…parquet: a WAL record of kind QUOTE.
type QuoteRow struct {
	ISIN string `parquet:"isin,dict"`
	// TS is the arrival time: TIMESTAMP(NANOS, UTC).
	TS int64 `parquet:"ts,timestamp(nanosecond)"`
	// Seq is the WAL sequence: the original order of all messages.
	Seq int64 `parquet:"seq"`
	// Price is DECIMAL(18,6), i.e. the micro-units of feed.Price.
	Price int64 `parquet:"price,decimal(6:18)"`
}

// EventRow is one instrument event in events/…parquet: a WAL record of kind ADD or DELETE.
type EventRow struct {
	ISIN        string `parquet:"isin,dict"`
	TS          int64  `parquet:"ts,timestamp(nanosecond)"`
	Seq         int64  `parquet:"seq"`
	Type        string `parquet:"type,dict"` // "ADD" or "DELETE"
	Description string `parquet:"description"`
}

// CandleRow is one candle state in candles/…parquet (SPEC §4.2): a closed minute of an
// incarnation, or a late correction to one. Rows with the same (isin, incarnation, minute)
// are partial states of the same minute and merge like aggregate.Candle.Merge: open/close
// of the smallest/largest (ts, seq), min low, max high, sum of quotes.
type CandleRow struct {
	ISIN        string `parquet:"isin,dict"`
	Incarnation int64  `parquet:"incarnation"`
	Minute      int64  `parquet:"minute,timestamp(nanosecond)"`
	Open        int64  `parquet:"open,decimal(6:18)"`
	High        int64  `parquet:"high,decimal(6:18)"`
	Low         int64  `parquet:"low,decimal(6:18)"`
	Close       int64  `parquet:"close,decimal(6:18)"`
	Quotes      int64  `parquet:"quotes"`
	OpenTS      int64  `parquet:"open_ts,timestamp(nanosecond)"`
	OpenSeq     int64  `parquet:"open_seq"`
	CloseTS     int64  `parquet:"close_ts,timestamp(nanosecond)"`
	CloseSeq    int64  `parquet:"close_seq"`
}

func candleRow(c *aggregate.Candle) CandleRow {
	return CandleRow{
		ISIN: c.ISIN.String(), Incarnation: int64(c.Incarnation), Minute: c.Minute,
		Open: int64(c.Open), High: int64(c.High), Low: int64(c.Low), Close: int64(c.Close),
		Quotes: int64(c.Quotes), OpenTS: c.OpenTS, OpenSeq: int64(c.OpenSeq),
		CloseTS: c.CloseTS, CloseSeq: int64(c.CloseSeq),
	}
}

func (r *CandleRow) candle() (aggregate.Candle, error) {
	isin, ok := feed.ParseISIN(r.ISIN)
	if !ok {
		return aggregate.Candle{}, fmt.Errorf("invalid isin %q", r.ISIN)
	}
	return aggregate.Candle{
		Key:  aggregate.Key{ISIN: isin, Incarnation: uint64(r.Incarnation), Minute: r.Minute},
		Open: feed.Price(r.Open), High: feed.Price(r.High), Low: feed.Price(r.Low), Close: feed.Price(r.Close),
		OpenTS: r.OpenTS, CloseTS: r.CloseTS, OpenSeq: uint64(r.OpenSeq), CloseSeq: uint64(r.CloseSeq),
		Quotes: uint64(r.Quotes),
	}, nil
}

// HourNanos is the length of an archive partition.
const HourNanos = int64(time.Hour)

// hourOf returns the start of the UTC hour holding ts.
func hourOf(ts int64) int64 {
	h := ts - ts%HourNanos
	if ts < 0 && ts%HourNanos != 0 {
		h -= HourNanos
	}
	return h
}

// PartKey returns the key of an archive file: DATASET/date=YYYY-MM-DD/hour=HH/part-FIRST-LAST.parquet,
// hour being the UTC hour (Unix nanoseconds) and FIRST, LAST the WAL sequence range the file
// covers. A redo of the same range produces the same key (and so replaces the object).
func PartKey(dataset string, hour int64, first, last uint64) string {
	t := time.Unix(0, hour).UTC()
	return fmt.Sprintf("%s/date=%s/hour=%02d/part-%d-%d.parquet", dataset, t.Format("2006-01-02"), t.Hour(), first, last)
}

// partInfo is what a key says about its file.
type partInfo struct {
	key         string
	dataset     string
	hour        int64
	first, last uint64
}

// parsePartKey parses a key written by PartKey; ok is false for anything else.
func parsePartKey(key string) (partInfo, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || !strings.HasPrefix(parts[1], "date=") || !strings.HasPrefix(parts[2], "hour=") {
		return partInfo{}, false
	}
	day, err := time.Parse("2006-01-02", strings.TrimPrefix(parts[1], "date="))
	if err != nil {
		return partInfo{}, false
	}
	hh, err := strconv.Atoi(strings.TrimPrefix(parts[2], "hour="))
	if err != nil || hh < 0 || hh > 23 {
		return partInfo{}, false
	}
	name, ok := strings.CutPrefix(parts[3], "part-")
	if !ok {
		return partInfo{}, false
	}
	name, ok = strings.CutSuffix(name, ".parquet")
	if !ok {
		return partInfo{}, false
	}
	a, b, ok := strings.Cut(name, "-")
	if !ok {
		return partInfo{}, false
	}
	first, err1 := strconv.ParseUint(a, 10, 64)
	last, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || first > last {
		return partInfo{}, false
	}
	return partInfo{key: key, dataset: parts[0], hour: day.Add(time.Duration(hh) * time.Hour).UnixNano(), first: first, last: last}, true
}

// DefaultRowGroupRows is the default of ArchiveOptions.RowGroupRows.
const DefaultRowGroupRows = 512 * 1024

// partWriter writes one Parquet file into a staged file: rows are buffered up to
// rowGroupRows, sorted, and written as one row group. Each row group is sorted by the
// declared sorting columns (isin, then ts or incarnation+minute); with the default row
// group size a normal hour fits a few row groups.
type partWriter[T any] struct {
	f      *os.File
	w      *parquet.GenericWriter[T]
	buf    []T
	limit  int
	cmp    func(a, b T) int
	rows   int64
	minSeq uint64
	maxSeq uint64
}

func newPartWriter[T any](f *os.File, rowGroupRows int, cmpFn func(a, b T) int, sorting ...parquet.SortingColumn) *partWriter[T] {
	w := parquet.NewGenericWriter[T](f,
		parquet.Compression(&zstd.Codec{Level: zstd.SpeedDefault}),
		parquet.SortingWriterConfig(parquet.SortingColumns(sorting...)),
		parquet.CreatedBy("quotes", "archive", "1"),
		parquet.PageBufferSize(256*1024),
	)
	return &partWriter[T]{f: f, w: w, limit: rowGroupRows, cmp: cmpFn, minSeq: ^uint64(0)}
}

func (p *partWriter[T]) add(row T, seq uint64) error {
	p.buf = append(p.buf, row)
	p.rows++
	p.minSeq, p.maxSeq = min(p.minSeq, seq), max(p.maxSeq, seq)
	if len(p.buf) >= p.limit {
		return p.flush()
	}
	return nil
}

func (p *partWriter[T]) flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	slices.SortFunc(p.buf, p.cmp)
	if _, err := p.w.Write(p.buf); err != nil {
		return err
	}
	if err := p.w.Flush(); err != nil {
		return err
	}
	clear(p.buf)
	p.buf = p.buf[:0]
	return nil
}

// finish writes the last row group and the footer.
func (p *partWriter[T]) finish() error {
	if err := p.flush(); err != nil {
		return err
	}
	return p.w.Close()
}

func cmpQuoteRow(a, b QuoteRow) int {
	return cmp.Or(strings.Compare(a.ISIN, b.ISIN), cmp.Compare(a.TS, b.TS), cmp.Compare(a.Seq, b.Seq))
}

func cmpEventRow(a, b EventRow) int {
	return cmp.Or(strings.Compare(a.ISIN, b.ISIN), cmp.Compare(a.TS, b.TS), cmp.Compare(a.Seq, b.Seq))
}

func cmpCandleRow(a, b CandleRow) int {
	return cmp.Or(strings.Compare(a.ISIN, b.ISIN), cmp.Compare(a.Incarnation, b.Incarnation),
		cmp.Compare(a.Minute, b.Minute), cmp.Compare(a.OpenSeq, b.OpenSeq))
}

func newQuoteWriter(f *os.File, n int) *partWriter[QuoteRow] {
	return newPartWriter(f, n, cmpQuoteRow, parquet.Ascending("isin"), parquet.Ascending("ts"), parquet.Ascending("seq"))
}

func newEventWriter(f *os.File, n int) *partWriter[EventRow] {
	return newPartWriter(f, n, cmpEventRow, parquet.Ascending("isin"), parquet.Ascending("ts"), parquet.Ascending("seq"))
}

func newCandleWriter(f *os.File, n int) *partWriter[CandleRow] {
	return newPartWriter(f, n, cmpCandleRow, parquet.Ascending("isin"), parquet.Ascending("incarnation"), parquet.Ascending("minute"))
}
