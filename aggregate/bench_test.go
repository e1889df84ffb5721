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

// BenchmarkAppendState measures a checkpoint's snapshot of 50,000 instruments, each with a
// price and one or two open candles (benchState), into three kinds of buffer:
//   - reuse: the same buffer every time, large enough (no growth at all);
//   - presized: a new buffer of the last snapshot's size + 1/8, as the pipeline sizes it;
//   - grow: a new buffer of half the snapshot's size, as when the state grew since the last
//     checkpoint by more than the pipeline's eighth (sizes vary between 4.5 and 9.5 MB), or
//     nil at the first checkpoint after a start.
func BenchmarkAppendState(b *testing.B) {
	a := benchState(50_000)
	size := len(a.AppendState(nil))
	for _, mode := range []string{"reuse", "presized", "grow"} {
		b.Run(mode, func(b *testing.B) {
			buf := make([]byte, 0, size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				switch mode {
				case "reuse":
					buf = buf[:0]
				case "presized":
					buf = make([]byte, 0, size+size/8)
				case "grow":
					buf = make([]byte, 0, size/2)
				}
				buf = a.AppendState(buf)
			}
			b.ReportMetric(float64(len(buf)), "bytes")
		})
	}
}

// benchState returns an Aggregator with n active instruments as a replay leaves them at a
// checkpoint: each has a description and a price and quoted in the last minute, half of them
// also in the current one (one or two open candles, a few quotes each); one in a thousand was
// deleted with its candle still open, and a few inactive ISINs have held quotes.
func benchState(n int) *Aggregator {
	a := New(DefaultOptions())
	var out nopOutput
	rng := rand.New(rand.NewPCG(9, 9))
	isins := make([]feed.ISIN, n)
	var seq uint64
	apply := func(kind feed.Kind, ts int64, isin feed.ISIN, p feed.Price, desc string) {
		seq++
		r := record.Record{Seq: seq}
		r.Kind, r.TS, r.ISIN, r.Price, r.Description = kind, ts, isin, p, desc
		a.Apply(r, &out)
	}
	for i := range isins {
		isins[i] = isinOf(fmt.Sprintf("%c%c%09d", 'A'+i%26, 'A'+i/26%26, i*7919%1_000_000_000))
		apply(feed.KindAdd, t0, isins[i], 0, fmt.Sprintf("Instrument %d bench share class %c", i, 'A'+i%3))
	}
	// Minute 0 for every instrument, minute 1 (up to 4 s in, within the grace) for half.
	base := make([]feed.Price, n)
	for i := range base {
		base[i] = feed.Price(1+rng.Int64N(500_000)) * feed.PriceScale / 100
	}
	step := int64(time.Minute) / int64(4*n)
	ts := t0
	for round := 0; round < 4; round++ {
		for _, i := range rng.Perm(n) {
			ts += step
			apply(feed.KindQuote, ts, isins[i], base[i]+feed.Price(rng.Int64N(2000)-1000), "")
		}
	}
	for _, i := range rng.Perm(n)[:n/2] {
		ts += int64(4*time.Second) / int64(n/2)
		apply(feed.KindQuote, ts, isins[i], base[i]+feed.Price(rng.Int64N(2000)-1000), "")
	}
	for i := 0; i < n; i += 1000 {
		apply(feed.KindDelete, ts, isins[i], 0, "")
	}
	for i := 0; i < 20; i++ {
		apply(feed.KindQuote, ts, isinOf(fmt.Sprintf("ZZ%09d", i%7)), feed.PriceScale, "")
	}
	return a
}
