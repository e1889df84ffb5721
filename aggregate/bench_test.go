package aggregate

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/record"
)

// BenchmarkApplyQuote measures Apply for quotes at 50,000 active instruments, each quoting
// about once per second (50k quotes/s of event time), so minutes close as they would live
// (the closing work is amortised into ns/op).
func BenchmarkApplyQuote(b *testing.B) {
	for _, n := range []int{50_000, 1_000} {
		b.Run(fmt.Sprintf("instruments=%d", n), func(b *testing.B) { benchApplyQuote(b, n) })
	}
}

func benchApplyQuote(b *testing.B, n int) {
	a := New(DefaultOptions())
	var out nopOutput
	isins := make([]feed.ISIN, n)
	var seq uint64
	for i := range isins {
		isins[i] = isinOf(fmt.Sprintf("B%07d", i*7919%10_000_000))
		seq++
		r := record.Record{Seq: seq}
		r.Kind, r.TS, r.ISIN, r.Description = feed.KindAdd, t0, isins[i], "bench"
		a.Apply(r, &out)
	}
	step := int64(time.Second) / int64(n)
	ts := t0
	r := record.Record{}
	r.Kind = feed.KindQuote
	// Warm up two minutes so open-candle slices and the close lists have their capacity.
	for i := 0; i < 2*60*n; i++ {
		seq++
		ts += step
		r.Seq, r.TS, r.ISIN, r.Price = seq, ts, isins[i%n], feed.Price(100_000_000+int64(i%1000))
		a.Apply(r, &out)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		seq++
		ts += step
		r.Seq, r.TS, r.ISIN, r.Price = seq, ts, isins[i%n], feed.Price(100_000_000+int64(i%1000))
		a.Apply(r, &out)
	}
	b.StopTimer()
	if s := a.Stats(); s.Aggregated == 0 || s.CandlesClosed == 0 {
		b.Fatalf("nothing aggregated or closed: %+v", s)
	}
}

// BenchmarkApplyShuffled measures Apply for 50,000 instruments quoting once per second in a
// random order (as the feed does, unlike BenchmarkApplyQuote's fixed order, which the
// hardware prefetcher follows), one record at a time and in groups of 32 prefetched with
// PrefetchGroup first, as the pipeline applies them (with the WAL's refs).
func BenchmarkApplyShuffled(b *testing.B) {
	for _, prefetch := range []bool{false, true} {
		b.Run(fmt.Sprintf("prefetch=%v", prefetch), func(b *testing.B) {
			const n, group = 50_000, 32
			a := New(DefaultOptions())
			var out nopOutput
			isins := make([]feed.ISIN, n)
			var seq uint64
			for i := range isins {
				isins[i] = isinOf(fmt.Sprintf("B%07d", i*7919%10_000_000))
				seq++
				r := record.Record{Seq: seq}
				r.Kind, r.TS, r.ISIN, r.Description = feed.KindAdd, t0, isins[i], "bench"
				a.Apply(r, &out)
			}
			rng := rand.New(rand.NewPCG(1, 1))
			step := int64(time.Second) / int64(n)
			ts := t0
			order := make([]int, 0, 20*n) // 20 seconds of random quote orders, reused
			for len(order) < 20*n {
				order = append(order, rng.Perm(n)...)
			}
			g := make([]feed.Message, group)
			var sink int64
			k := 0
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += group {
				for i := range g {
					ts += step
					g[i] = feed.Message{Kind: feed.KindQuote, TS: ts, ISIN: isins[order[k]], Ref: uint32(order[k]) + 1, Price: feed.Price(100_000_000 + int64(k%1000))}
					if k++; k == len(order) {
						k = 0
					}
				}
				if prefetch {
					sink += a.PrefetchGroup(g)
				}
				for i := range g {
					seq++
					a.Apply(record.Record{Seq: seq, Message: g[i]}, &out)
				}
			}
			_ = sink
		})
	}
}

// BenchmarkAppendState measures a checkpoint of 50,000 instruments with open candles.
func BenchmarkAppendState(b *testing.B) {
	const n = 50_000
	a := New(DefaultOptions())
	var out nopOutput
	for i := 0; i < n; i++ {
		isin := isinOf(fmt.Sprintf("B%07d", i))
		r := record.Record{Seq: uint64(2*i + 1)}
		r.Kind, r.TS, r.ISIN, r.Description = feed.KindAdd, t0, isin, "bench"
		a.Apply(r, &out)
		r.Seq, r.Kind, r.Price = uint64(2*i+2), feed.KindQuote, 123_450_000
		a.Apply(r, &out)
	}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf = a.AppendState(buf[:0])
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}
