package feed

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts rejected messages by reason (SPEC §8). A nil *Metrics is valid and counts
// nothing.
type Metrics struct {
	// Rejected is quotes_feed_rejected_total{reason}: messages rejected, by Reason.
	Rejected *prometheus.CounterVec
}

// NewMetrics creates the feed metrics and registers them with reg (none if reg is nil; the
// global registry is never used). Every Reason is pre-initialised to 0 so that each series
// exists from the start. If reg already holds quotes_feed_rejected_total (two components
// sharing a registry), the registered counter is reused. Any other registration error is a
// programming error and panics, as with prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "quotes",
		Subsystem: "feed",
		Name:      "rejected_total",
		Help:      "Partner messages and recorded lines rejected, by reason.",
	}, []string{"reason"})
	if reg != nil {
		if err := reg.Register(rejected); err != nil {
			var are prometheus.AlreadyRegisteredError
			existing, ok := (*prometheus.CounterVec)(nil), false
			if errors.As(err, &are) {
				existing, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				panic("feed: register quotes_feed_rejected_total: " + err.Error())
			}
			rejected = existing
		}
	}
	for _, r := range Reasons {
		rejected.WithLabelValues(string(r))
	}
	return &Metrics{Rejected: rejected}
}

// Reject counts one message rejected for reason r. It is safe for concurrent use and does
// nothing on a nil *Metrics.
func (m *Metrics) Reject(r Reason) {
	if m == nil || m.Rejected == nil {
		return
	}
	m.Rejected.WithLabelValues(string(r)).Inc()
}

// RejectError counts err if it is (or wraps) a *DecodeError, under its reason, and reports
// whether it was one. It does nothing else on a nil *Metrics.
func (m *Metrics) RejectError(err error) bool {
	var de *DecodeError
	if !errors.As(err, &de) {
		return false
	}
	m.Reject(de.Reason)
	return true
}
