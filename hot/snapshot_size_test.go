package hot

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

// specWindows returns a detector holding n windows of points quotes each, one a second:
// the spec load once the windows are full (5m30s of quotes a second). Times are whole
// milliseconds (each instrument at its own phase) and prices have 4 decimals, as the
// partner's feed; the prices walk by up to ±10 basis points a quote.
func specWindows(n, points int) *Detector { return fillSpec(New(DefaultOptions()), n, points) }

// specCompactWindows is specWindows in compact windows (Detector.noDelta).
func specCompactWindows(n, points int) *Detector {
	return fillSpec(newCompactOnly(DefaultOptions()), n, points)
}

// newCompactOnly returns a Detector whose windows are never in the delta form: the tests
// of the compact form's own code take it.
func newCompactOnly(opts Options) *Detector {
	d := New(opts)
	d.noDelta = true
	return d
}

// fillSpec fills d with the quotes of specWindows and returns it.
func fillSpec(d *Detector, n, points int) *Detector {
	rng := rand.New(rand.NewPCG(330, uint64(n)))
	prices := make([]int64, n)
	phases := make([]int64, n)
	for i := range n {
		prices[i] = (100 + rng.Int64N(1900)) * feed.PriceScale
		phases[i] = rng.Int64N(1000) * int64(time.Millisecond)
	}
	var isin feed.ISIN
	seq := uint64(0)
	for k := range points {
		for i := range n {
			p := prices[i]
			p += p / 10_000 * (rng.Int64N(21) - 10) / 100 * 100
			prices[i] = max(p, 100)
			seq++
			d.Observe(isin, uint64(i)+1, t0+int64(k)*int64(time.Second)+phases[i], seq, feed.Price(prices[i]))
		}
	}
	return d
}

// BenchmarkSnapshotSize reports the size of the snapshot of the spec load: 50,000
// instruments × 330 points a second apart (a full 5m30s window each), ms times, 4-decimal
// prices; and, for comparison, of the same state in format version 1. Run with
// -benchtime=1x: building the detector takes a few seconds. The time per op is that of
// WriteState.
func BenchmarkSnapshotSize(b *testing.B) {
	if testing.Short() {
		b.Skip("long")
	}
	const n, points = 50_000, 330
	d := specWindows(n, points)
	var size int
	b.ResetTimer()
	for range b.N {
		var c counter
		if err := d.WriteState(&c); err != nil {
			b.Fatal(err)
		}
		size = int(c)
	}
	b.StopTimer()
	v1 := len(appendStateV1(d, nil))
	stored := float64(storedPoints(d))
	b.ReportMetric(float64(size)/1e6, "MB-snapshot")
	b.ReportMetric(float64(size)/stored, "B/point")
	b.ReportMetric(float64(v1)/1e6, "MB-snapshot-v1")
	b.ReportMetric(float64(v1)/stored, "B/point-v1")
}

// storedPoints returns the number of points present in d's windows: the entries of its
// snapshot.
func storedPoints(d *Detector) int {
	total := 0
	for _, k := range d.index.keys(nil) {
		switch s, _ := d.index.get(k); {
		case s&deltaBit != 0:
			w := &d.delta[s&^deltaBit]
			total += int(w.n - w.lh)
		case s&wideBit != 0:
			w := &d.wide[s&^wideBit]
			total += int(w.n - w.lh)
		default:
			total += int(d.compact[s].n - d.compact[s].lh)
		}
	}
	return total
}

// counter is an io.Writer that counts the bytes written.
type counter int64

func (c *counter) Write(p []byte) (int, error) {
	*c += counter(len(p))
	return len(p), nil
}

// BenchmarkRestoreState measures RestoreState of the spec load's snapshot (see
// BenchmarkSnapshotSize), the hot detector's part of a restart: "near" as a pipeline
// restores it (RestoreStateNear, given the checkpoint's watermark), "scan" with the pass
// that finds the newest quote. Run with -benchtime=1x or a few x.
func BenchmarkRestoreState(b *testing.B) {
	if testing.Short() {
		b.Skip("long")
	}
	snap := specWindows(50_000, 330).AppendState(nil)
	newest, _ := newestTime(snap)
	for _, near := range []bool{true, false} {
		name := "scan"
		if near {
			name = "near"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(snap)))
			for range b.N {
				d := New(DefaultOptions())
				var err error
				if near {
					err = d.RestoreStateNear(snap, newest)
				} else {
					err = d.RestoreState(snap)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
