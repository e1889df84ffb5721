package export

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/store"
)

// ClickHouseConsumerName is the outbox consumer name of the ClickHouse sink. There is one
// per data directory: pointing --clickhouse at another server continues from the same
// position (use backfill for the history the new server lacks).
const ClickHouseConsumerName = "clickhouse"

// OutboxSink returns the sink as an outbox Sink: each flush's instrument events go in with
// WriteInstruments (idempotent), then its closed candles and late corrections — both just
// candle states, merged by the AggregatingMergeTree — with Write(flushID) (exactly once per
// flush id). Hot events (store.OutboxHot, for the alert sinks) are skipped.
func (s *ClickHouseSink) OutboxSink() Sink { return clickHouseOutbox{s} }

type clickHouseOutbox struct{ s *ClickHouseSink }

func (o clickHouseOutbox) Name() string   { return ClickHouseConsumerName }
func (o clickHouseOutbox) Target() string { return o.s.Target() }

func (o clickHouseOutbox) Write(ctx context.Context, flushID uint64, items []store.OutboxItem) error {
	var (
		events  []InstrumentEvent
		candles = make([]aggregate.Candle, 0, len(items))
	)
	for i := range items {
		it := &items[i]
		switch it.Kind {
		case store.OutboxClosed, store.OutboxLate:
			candles = append(candles, it.Candle)
		case store.OutboxInstrument:
			e := &it.Instrument
			events = append(events, InstrumentEvent{Seq: e.Seq, TS: e.TS, Kind: e.Kind, ISIN: e.ISIN,
				Incarnation: e.Incarnation, Description: e.Description})
		default:
			// store.OutboxHot (the alert sinks' hot events) and kinds of later builds: not
			// ClickHouse's.
		}
	}
	if err := o.s.WriteInstruments(ctx, events); err != nil {
		return err
	}
	return o.s.Write(ctx, flushID, candles)
}

// ConsumerCollector exports the consumers' stats as Prometheus metrics, labelled by sink.
type ConsumerCollector struct{ cs []*Consumer }

// NewConsumerCollector returns a collector for cs.
func NewConsumerCollector(cs ...*Consumer) *ConsumerCollector { return &ConsumerCollector{cs} }

var (
	descBacklog   = prometheus.NewDesc("quotes_sink_backlog_items", "Outbox items not yet delivered to the sink.", []string{"sink"}, nil)
	descDelivered = prometheus.NewDesc("quotes_sink_delivered_items_total", "Outbox items delivered to the sink.", []string{"sink"}, nil)
	descFlushes   = prometheus.NewDesc("quotes_sink_flushes_total", "Successful flushes to the sink.", []string{"sink"}, nil)
	descFailures  = prometheus.NewDesc("quotes_sink_failures_total", "Failed flush attempts (each is retried).", []string{"sink"}, nil)
	descUp        = prometheus.NewDesc("quotes_sink_up", "1 unless the last attempt to write to the sink failed.", []string{"sink"}, nil)
	descLastOK    = prometheus.NewDesc("quotes_sink_last_success_timestamp_seconds", "Time of the last successful flush (0: none yet).", []string{"sink"}, nil)
)

// Describe implements prometheus.Collector.
func (cc *ConsumerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBacklog, descDelivered, descFlushes, descFailures, descUp, descLastOK} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (cc *ConsumerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cc.cs {
		st := c.Stats()
		up, last := 1.0, 0.0
		if st.Down {
			up = 0
		}
		if !st.LastSuccess.IsZero() {
			last = float64(st.LastSuccess.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(st.Backlog), st.Sink)
		ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(st.Delivered), st.Sink)
		ch <- prometheus.MustNewConstMetric(descFlushes, prometheus.CounterValue, float64(st.Flushes), st.Sink)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(st.Failures), st.Sink)
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.Sink)
		ch <- prometheus.MustNewConstMetric(descLastOK, prometheus.GaugeValue, last, st.Sink)
	}
}
