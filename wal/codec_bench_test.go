package wal

import "testing"

// BenchmarkBlockCodec measures encoding and decoding a 4096-quote block without Badger.
func BenchmarkBlockCodec(b *testing.B) {
	msgs := quoteBatch(0, 4096)
	var e blockEncoder
	e.dict = newDict()
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.reset(1)
			for i := range msgs {
				e.add(&msgs[i])
			}
			e.finish(0)
		}
		b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "records/s")
	})
	e.reset(1)
	for i := range msgs {
		e.add(&msgs[i])
	}
	block, _ := e.finish(0)
	b.ReportMetric(float64(len(block))/float64(len(msgs)), "B/record")
	dst := make([]Record, 0, len(msgs))
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if dst, _, err = decodeBlock(block, 1, dst[:0], e.dict.snapshot()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "records/s")
	})
}
