package alert

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/store"
)

// Delivery is an alert sink and the outbox consumer that runs it.
type Delivery struct {
	Sink     Sink
	Consumer *export.Consumer
}

// Collector exports the alert sinks' counters as Prometheus metrics, labelled by sink (the
// consumer name). Register export.NewConsumerCollector for the same consumers too for
// their outbox-level metrics (items, flushes, up).
type Collector struct {
	st *store.Store
	ds []Delivery
}

// NewCollector returns a collector for ds; st is the store whose outbox they read (for the
// backlog).
func NewCollector(st *store.Store, ds ...Delivery) *Collector { return &Collector{st: st, ds: ds} }

var (
	descDelivered = prometheus.NewDesc("quotes_alert_delivered_total", "Hot events the alert sink's destination accepted.", []string{"sink"}, nil)
	descRetried   = prometheus.NewDesc("quotes_alert_retried_total", "Failed delivery attempts that are retried (429, 5xx, timeouts, destination down).", []string{"sink"}, nil)
	descRejected  = prometheus.NewDesc("quotes_alert_rejected_total", "Hot events a webhook refused with a non-retryable status (not retried).", []string{"sink"}, nil)
	descFiltered  = prometheus.NewDesc("quotes_alert_filtered_total", "Hot events the alert sink's filter left out.", []string{"sink"}, nil)
	descDups      = prometheus.NewDesc("quotes_alert_duplicates_total", "Redelivered hot events JetStream already had (stored once).", []string{"sink"}, nil)
	descBacklog   = prometheus.NewDesc("quotes_alert_backlog_events", "Hot events in the outbox the alert sink has not processed yet.", []string{"sink"}, nil)
	descLastOK    = prometheus.NewDesc("quotes_alert_last_success_timestamp_seconds", "Time of the alert sink's last delivered event (0: none yet).", []string{"sink"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDelivered, descRetried, descRejected, descFiltered, descDups, descBacklog, descLastOK} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. The backlog is counted from the outbox's keys
// at each scrape; when that fails, the backlog metric is left out.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range c.ds {
		st := d.Sink.Stats()
		last := 0.0
		if !st.LastSuccess.IsZero() {
			last = float64(st.LastSuccess.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(st.Delivered), st.Sink)
		ch <- prometheus.MustNewConstMetric(descRetried, prometheus.CounterValue, float64(st.Retried), st.Sink)
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(st.Rejected), st.Sink)
		ch <- prometheus.MustNewConstMetric(descFiltered, prometheus.CounterValue, float64(st.Filtered), st.Sink)
		ch <- prometheus.MustNewConstMetric(descDups, prometheus.CounterValue, float64(st.Duplicates), st.Sink)
		ch <- prometheus.MustNewConstMetric(descLastOK, prometheus.GaugeValue, last, st.Sink)
		if d.Consumer != nil {
			if n, err := Backlog(c.st, d.Consumer); err == nil {
				ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(n), st.Sink)
			}
		}
	}
}
