package pipeline

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the pipeline's timings. The counters of what it derived are read at scrape
// time from Stats (see api.NewPipelineCollector); these are the ones that need observing as
// they happen.
type Metrics struct {
	// CommitSeconds times one commit: hot detection over a batch and its store write.
	CommitSeconds prometheus.Histogram
	// CheckpointSeconds times writing one state checkpoint; CheckpointBytes is its size.
	CheckpointSeconds prometheus.Histogram
	CheckpointBytes   prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		CommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "quotes_flush_duration_seconds",
			Help:    "Time to run the hot detector over a batch and write what it derived to the embedded store.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}),
		CheckpointSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "quotes_checkpoint_duration_seconds",
			Help:    "Time to write one state checkpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		CheckpointBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "quotes_checkpoint_bytes",
			Help: "Size of the last state checkpoint.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.CommitSeconds, m.CheckpointSeconds, m.CheckpointBytes)
	}
	return m
}

func (m *Metrics) observeCommit(start time.Time) {
	if m != nil {
		m.CommitSeconds.Observe(time.Since(start).Seconds())
	}
}

func (m *Metrics) observeCheckpoint(start time.Time, size int) {
	if m != nil {
		m.CheckpointSeconds.Observe(time.Since(start).Seconds())
		m.CheckpointBytes.Set(float64(size))
	}
}

// WALLastSeq returns the WAL's last durable sequence; WALLastSeq() − Applied() is how far
// the pipeline trails the log.
func (p *Pipeline) WALLastSeq() uint64 { return p.log.LastSeq() }
