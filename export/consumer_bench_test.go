package export

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/store"
)

// BenchmarkClickHouseConsumer50k measures sustained delivery through the outbox consumer
// into ClickHouse at 50,000 instruments: each iteration stores 4 closed minutes (200,000
// candle states) in the outbox and drains them into ClickHouse. Reported: candle rows/s
// (outbox read + intent + insert with markers + watermark commit).
func BenchmarkClickHouseConsumer50k(b *testing.B) {
	srv := chtest.Start(b)
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(b.TempDir(), "db")).WithLogger(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	st := store.New(db, nil)
	ch, err := NewClickHouseSink(context.Background(), ClickHouseOptions{DSN: srv.DSN})
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	c, err := NewConsumer(st, ch.OutboxSink(), ConsumerOptions{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	const instruments, minutes = 50_000, 4
	isins := make([]feed.ISIN, instruments)
	for i := range isins {
		isins[i], _ = feed.ParseISIN(fmt.Sprintf("BE%010d", i))
	}
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixNano()
	tag := uint64(0)
	rows := 0
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		batch := store.Batch{}
		for m := 0; m < minutes; m++ {
			tag++ // one tick record closes a minute of every instrument
			minute := t0 + int64(i*minutes+m)*aggregate.MinuteNanos
			for j, isin := range isins {
				cd := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: uint64(j + 1), Minute: minute}}
				cd.Add(minute+1e9, tag, feed.Price(1_000_000+j))
				cd.Add(minute+30e9, tag, feed.Price(1_100_000+j))
				batch.Outbox = append(batch.Outbox, store.OutboxItem{Tag: tag, Idx: uint32(j), Kind: store.OutboxClosed, Candle: cd})
			}
		}
		batch.Seq = tag
		if err := st.Apply(&batch); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if pending, err := c.Drain(context.Background()); err != nil || pending != 0 {
			b.Fatalf("drain: %d pending, %v", pending, err)
		}
		elapsed += time.Since(start)
		rows += len(batch.Outbox)
	}
	b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
}
