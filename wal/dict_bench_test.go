package wal

import (
	"math/rand/v2"
	"testing"

	"github.com/quotesdev/quotes/feed"
)

// BenchmarkDictID measures the writer's ISIN → id look-up for ISINs it already knows, at
// 50,000 distinct instruments in a random order (as a replay encodes them).
func BenchmarkDictID(b *testing.B) {
	const n = 50_000
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(1, 2))
	isins := make([]feed.ISIN, n)
	d := newDict()
	for i := range isins {
		for j := range isins[i] {
			isins[i][j] = alpha[rng.IntN(len(alpha))]
		}
		d.id(&isins[i])
	}
	order := make([]int32, 1<<20)
	for i := range order {
		order[i] = int32(rng.IntN(n))
	}
	var sink uint32
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id, _ := d.id(&isins[order[i&(len(order)-1)]])
		sink += id
	}
	_ = sink
}

// BenchmarkBlockEncodeSpec measures encoding 4096-quote blocks of the spec workload: 50,000
// instruments (all with ids already) quoting in a random order, the messages streamed from
// 16 MiB of batches as a replay streams them, so the dictionary is looked up cold.
func BenchmarkBlockEncodeSpec(b *testing.B) {
	const n, batch = 50_000, 4096
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(5, 6))
	isins := make([]feed.ISIN, n)
	var e blockEncoder
	e.dict = newDict()
	for i := range isins {
		for j := range isins[i] {
			isins[i][j] = alpha[rng.IntN(len(alpha))]
		}
		e.dict.id(&isins[i])
	}
	msgs := make([]feed.Message, 64*batch)
	for i := range msgs {
		msgs[i] = feed.Message{Kind: feed.KindQuote, TS: 1_700_000_000_000_000_000 + int64(i)*20_000, ISIN: isins[rng.IntN(n)], Price: feed.Price(100_000_000 + rng.Int64N(1_000_000))}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for k := 0; k < b.N; k += batch {
		off := (k / batch % 64) * batch
		e.reset(1)
		for i := range batch {
			e.add(&msgs[off+i])
		}
		e.finish(0)
	}
}
