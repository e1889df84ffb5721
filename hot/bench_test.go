package hot

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// load generates the spec workload: n instruments, each quoting every 1–3 s (uniform), a
// price random walk with a rare ±15 % jump. Time advances in 10 ms slots; within a slot
// instruments quote at their own phase, so ts inversions below 10 ms occur as in a live feed.
type load struct {
	rng    *rand.PCG
	isins  []feed.ISIN
	prices []int64
	phase  []int64
	slots  [][]uint32 // calendar ring: instruments due in each slot
	cur    int        // current slot
	pos    int        // next instrument within the current slot
	start  int64      // start time of the current slot
	seq    uint64
}

const (
	loadSlot  = int64(10 * time.Millisecond)
	loadSlots = 512 // > 3 s / 10 ms
)

func newLoad(n int, seed uint64) *load {
	l := &load{
		rng:    rand.NewPCG(seed, 1),
		isins:  make([]feed.ISIN, n),
		prices: make([]int64, n),
		phase:  make([]int64, n),
		slots:  make([][]uint32, loadSlots),
		start:  t0,
	}
	for i := range n {
		for j := range l.isins[i] {
			l.isins[i][j] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[l.rng.Uint64()%36]
		}
		l.prices[i] = (100 + int64(l.rng.Uint64()%1900)) * feed.PriceScale
		l.phase[i] = int64(l.rng.Uint64()%10) * int64(time.Millisecond) // the partner's times are whole ms
		s := int(l.rng.Uint64() % 300)                                  // first quote within 3 s
		l.slots[s] = append(l.slots[s], uint32(i))
	}
	return l
}

// next returns the next quote: instrument index, ts, seq, price.
func (l *load) next() (int, int64, uint64, feed.Price) {
	for l.pos >= len(l.slots[l.cur]) {
		l.slots[l.cur] = l.slots[l.cur][:0]
		l.cur = (l.cur + 1) % loadSlots
		l.pos = 0
		l.start += loadSlot
	}
	i := int(l.slots[l.cur][l.pos])
	l.pos++
	r := l.rng.Uint64()
	next := (l.cur + 100 + int(r%201)) % loadSlots // 1–3 s later
	l.slots[next] = append(l.slots[next], uint32(i))
	p := l.prices[i]
	if (r>>16)%20_000 == 0 {
		if r>>40&1 == 0 {
			p += p / 100 * 15
		} else {
			p -= p / 100 * 15
		}
	} else {
		p += p / 10_000 * (int64(r>>32%21) - 10)
	}
	p = min(max(p, 1), int64(feed.MaxPrice))
	l.prices[i] = p
	l.seq++
	return i, l.start + l.phase[i], l.seq, feed.Price(p)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkObserve measures one Observe in the steady state of the spec workload: 50,000
// instruments quoting every 1–3 s, after a 10-minute warm-up stream (windows full). It
// reports the heap the detector holds after the warm-up.
func BenchmarkObserve(b *testing.B) {
	const n = 50_000
	before := heapInUse()
	l := newLoad(n, 1)
	d := New(DefaultOptions())
	events := 0
	for l.start < t0+int64(10*time.Minute) {
		i, ts, seq, p := l.next()
		if _, ok := d.Observe(l.isins[i], uint64(i)+1, ts, seq, p); ok {
			events++
		}
	}
	warm := l.seq
	heap := heapInUse() - before
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		i, ts, seq, p := l.next()
		if _, ok := d.Observe(l.isins[i], uint64(i)+1, ts, seq, p); ok {
			events++
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(heap)/(1<<20), "MB-heap")
	b.ReportMetric(float64(heap)/float64(n), "B/instrument")
	b.ReportMetric(float64(warm), "warmup-quotes")
	_ = events
}

// BenchmarkObservePrefetch is BenchmarkObserve in groups of 32 quotes, each prefetched
// with PrefetchGroup first and observed with the WAL's ref of its ISIN, as the pipeline
// does.
func BenchmarkObservePrefetch(b *testing.B) {
	const n, group = 50_000, 32
	l := newLoad(n, 1)
	d := New(DefaultOptions())
	for l.start < t0+int64(10*time.Minute) {
		i, ts, seq, p := l.next()
		d.Observe(l.isins[i], uint64(i)+1, ts, seq, p)
	}
	type q struct {
		i, ts int64
		seq   uint64
		p     feed.Price
	}
	qs := make([]q, group)
	incs := make([]uint64, group)
	refs := make([]uint32, group)
	slots := make([]int32, group)
	var sink int64
	b.ReportAllocs()
	b.ResetTimer()
	for k := 0; k < b.N; k += group {
		for j := range qs {
			i, ts, seq, p := l.next()
			qs[j] = q{int64(i), ts, seq, p}
			incs[j], refs[j] = uint64(i)+1, uint32(i)+1
		}
		sink += d.PrefetchGroup(refs, incs, slots)
		for _, x := range qs {
			d.ObserveRef(uint32(x.i)+1, l.isins[x.i], uint64(x.i)+1, x.ts, x.seq, x.p)
		}
	}
	_ = sink
}

// BenchmarkTenMinutes runs one whole 10-minute stream of the spec workload (≈15M quotes)
// through a fresh Detector per iteration, with Expire once a minute, and reports the
// throughput, the heap held at the end and the snapshot size.
func BenchmarkTenMinutes(b *testing.B) {
	if testing.Short() {
		b.Skip("long")
	}
	const n = 50_000
	var quotes, events int
	var heap uint64
	var snap int
	b.ReportAllocs()
	for range b.N {
		b.StopTimer()
		before := heapInUse()
		l := newLoad(n, 2)
		d := New(DefaultOptions())
		b.StartTimer()
		nextExpire := t0 + int64(time.Minute)
		for l.start < t0+int64(10*time.Minute) {
			i, ts, seq, p := l.next()
			if _, ok := d.Observe(l.isins[i], uint64(i)+1, ts, seq, p); ok {
				events++
			}
			quotes++
			if ts >= nextExpire {
				d.Expire(ts)
				nextExpire += int64(time.Minute)
			}
		}
		b.StopTimer()
		heap = heapInUse() - before
		snap = len(d.AppendState(nil))
		runtime.KeepAlive(l)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(quotes), "ns/quote")
	b.ReportMetric(float64(quotes)/float64(b.N), "quotes/stream")
	b.ReportMetric(float64(events)/float64(b.N), "events/stream")
	b.ReportMetric(float64(heap)/(1<<20), "MB-heap")
	b.ReportMetric(float64(snap)/(1<<20), "MB-snapshot")
}

// BenchmarkLoad measures the workload generator alone, to subtract from BenchmarkObserve.
func BenchmarkLoad(b *testing.B) {
	l := newLoad(50_000, 1)
	for l.start < t0+int64(10*time.Minute) {
		l.next()
	}
	b.ReportAllocs()
	b.ResetTimer()
	var sink int64
	for range b.N {
		i, ts, _, p := l.next()
		sink += ts + int64(p) + int64(l.isins[i][0])
	}
	_ = sink
}
