package wal

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkAppend measures append throughput (quotes/s) per sync mode, on disk: one appender
// with big batches (ingest/replay), several appenders with big batches, and many concurrent
// small appends (group commit).
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []SyncMode{SyncBatch, SyncAlways, SyncNone} {
		for _, c := range []struct {
			name       string
			goroutines int
			batch      int
		}{
			{"1x4096", 1, 4096},
			{"1x1000", 1, 1000},
			{"4x4096", 4, 4096},
			{"64x10", 64, 10},
		} {
			b.Run(fmt.Sprintf("%s/%s", mode, c.name), func(b *testing.B) {
				l := openTest(b, Options{Dir: b.TempDir(), Sync: mode})
				msgs := quoteBatch(0, c.batch)
				var next atomic.Int64
				total := int64(b.N)
				b.ResetTimer()
				var wg sync.WaitGroup
				for g := 0; g < c.goroutines; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(int64(c.batch)) <= total+int64(c.batch)-1 {
							if _, err := l.Append(msgs); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(l.LastSeq())/b.Elapsed().Seconds(), "quotes/s")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkRead measures sequential read throughput (records/s) over a log written in
// 4096-quote appends.
func BenchmarkRead(b *testing.B) {
	l := openTest(b, Options{Dir: b.TempDir(), Sync: SyncNone})
	const total = 2_000_000
	for i := 0; i < total; i += 4096 {
		if _, err := l.Append(quoteBatch(i, 4096)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	n := 0
	r := l.NewReader(1)
	for i := 0; i < b.N; i++ {
		if _, err := r.Next(); err == io.EOF {
			r = l.NewReader(1)
			if _, err := r.Next(); err != nil {
				b.Fatal(err)
			}
		} else if err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
