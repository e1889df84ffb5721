package source

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/feed"
)

// The client's metrics, exported from Stats at scrape time by the collector New registers
// with Options.Registerer. Per-stream series carry stream="instruments" or "quotes".
//
//	quotes_source_connected{stream}                 1 while connected
//	quotes_source_paused                            1 while paused (Pause, e.g. disk full)
//	quotes_source_connects_total{stream}            successful handshakes
//	quotes_source_connect_failures_total{stream}    failed dials and refused handshakes
//	quotes_source_reconnects_total{stream}          connections that ended other than by shutdown or pause
//	quotes_source_stalls_total{stream}              of which: stalls (no frame nor pong within the read timeout)
//	quotes_source_throttled_total{stream}           of which: closed for too many rejected frames
//	quotes_source_backoff_seconds{stream}           the current (or last) reconnect delay
//	quotes_source_frames_total{stream}              data frames read
//	quotes_source_rejected_total{reason}            frames rejected, by feed reason
//	quotes_source_delivered_total                   messages handed to the consumer
//	quotes_source_active_instruments                instruments the client holds as active
//	quotes_source_snapshot_reconciliations_total    /instruments snapshots that settled
//	quotes_source_snapshots_withheld_total          of which: deleted nothing, over the delete bound
//	quotes_source_snapshots_empty_total             connections whose snapshot had no ADD after the quiet
//	quotes_source_synthetic_deletes_total           DELETEs made up for instruments missing from a snapshot
//	quotes_source_deletes_withheld_total            instruments missing from a snapshot but kept (bound)
//	quotes_source_deletes_withheld                  instruments the last settled snapshot kept that way
//	quotes_source_duplicate_adds_total              unchanged ADDs of active instruments, not delivered
type collector struct{ c *Client }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("quotes_source_"+name, help, labels, nil)
}

var (
	descConnected       = desc("connected", "1 while the partner stream is connected.", "stream")
	descPaused          = desc("paused", "1 while input is paused (partner connections closed, e.g. disk full).")
	descConnects        = desc("connects_total", "Successful websocket handshakes.", "stream")
	descConnectFailures = desc("connect_failures_total", "Failed dials and refused handshakes.", "stream")
	descReconnects      = desc("reconnects_total", "Connections that ended other than by shutdown or pause (each is followed by a reconnect).", "stream")
	descStalls          = desc("stalls_total", "Connections dropped as stalled: no frame and no pong within the read timeout.", "stream")
	descThrottled       = desc("throttled_total", "Connections closed for sending too many rejected frames.", "stream")
	descBackoff         = desc("backoff_seconds", "The current (or last) reconnect delay.", "stream")
	descFrames          = desc("frames_total", "Data frames read (accepted or rejected).", "stream")
	descRejected        = desc("rejected_total", "Frames rejected by the client, by reason.", "reason")
	descDelivered       = desc("delivered_total", "Messages handed to the consumer (the WAL).")
	descActive          = desc("active_instruments", "Instruments the client holds as active.")
	descReconciled      = desc("snapshot_reconciliations_total", "/instruments snapshots that settled and were reconciled.")
	descSnapWithheld    = desc("snapshots_withheld_total", "Settled snapshots that would have deleted more than the bound allows, and deleted nothing.")
	descSnapEmpty       = desc("snapshots_empty_total", "/instruments connections whose snapshot had no ADD after the snapshot quiet.")
	descSynthetic       = desc("synthetic_deletes_total", "DELETEs made up for instruments missing from a settled snapshot.")
	descWithheldTotal   = desc("deletes_withheld_total", "Instruments missing from a snapshot but kept because the snapshot exceeded the delete bound.")
	descWithheldNow     = desc("deletes_withheld", "Instruments the last settled snapshot kept although missing from it.")
	descDuplicateAdds   = desc("duplicate_adds_total", "ADDs of active instruments with an unchanged description, not delivered.")
)

// Describe implements prometheus.Collector.
func (m *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descPaused, descConnects, descConnectFailures,
		descReconnects, descStalls, descThrottled, descBackoff, descFrames, descRejected, descDelivered,
		descActive, descReconciled, descSnapWithheld, descSnapEmpty, descSynthetic, descWithheldTotal,
		descWithheldNow, descDuplicateAdds} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *collector) Collect(ch chan<- prometheus.Metric) {
	st := m.c.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, s := range []struct {
		name string
		st   StreamStats
	}{{"instruments", st.Instruments}, {"quotes", st.Quotes}} {
		gauge(descConnected, b2f(s.st.Connected), s.name)
		counter(descConnects, s.st.Connects, s.name)
		counter(descConnectFailures, s.st.ConnectFailures, s.name)
		counter(descReconnects, s.st.Disconnects, s.name)
		counter(descStalls, s.st.Stalls, s.name)
		counter(descThrottled, s.st.Throttled, s.name)
		gauge(descBackoff, s.st.Backoff.Seconds(), s.name)
		counter(descFrames, s.st.Frames, s.name)
	}
	for _, r := range feed.Reasons {
		counter(descRejected, st.Rejects[r], string(r))
	}
	gauge(descPaused, b2f(st.Paused))
	counter(descDelivered, st.Delivered)
	gauge(descActive, float64(st.Active))
	counter(descReconciled, st.Snapshots)
	counter(descSnapWithheld, st.WithheldSnapshots)
	counter(descSnapEmpty, st.EmptySnapshots)
	counter(descSynthetic, st.SyntheticDeletes)
	counter(descWithheldTotal, st.DeletesWithheld)
	gauge(descWithheldNow, float64(st.Withheld))
	counter(descDuplicateAdds, st.DuplicateAdds)
}
