package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/pipeline"
)

// httpMetrics are the API's own metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec   // quotes_http_requests_total{route,code}
	duration *prometheus.HistogramVec // quotes_http_request_duration_seconds{route}
	streams  prometheus.Gauge         // quotes_http_sse_streams
}

// newHTTPMetrics creates the HTTP metrics and registers them with reg (if not nil). When reg
// already holds them (two handlers on one registry), the registered ones are reused.
func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quotes_http_requests_total",
			Help: "HTTP requests answered, by route (the URL pattern) and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "quotes_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route (event streams excluded).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "quotes_http_sse_streams",
			Help: "Server-Sent Event streams (GET /hot) open now.",
		}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.duration = register(reg, m.duration)
		m.streams = register(reg, m.streams)
	}
	return m
}

// register registers c with reg, or returns the collector already registered in its place.
// Any other error is a programming error and panics, as with prometheus.MustRegister.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic("api: register HTTP metrics: " + err.Error())
}

// instrument counts and times the requests next answers under route. Event streams are
// counted but not timed (their duration is the client's choice).
func (h *handler) instrument(route string, next http.Handler) http.Handler {
	dur := h.metrics.duration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		h.metrics.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		if !sw.stream {
			dur.Observe(time.Since(start).Seconds())
		}
	})
}

// statusWriter records the status code of a response. It passes Flush through and unwraps
// for http.ResponseController (write deadlines of event streams).
type statusWriter struct {
	http.ResponseWriter
	code   int
	stream bool // an event stream: not timed
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap returns the underlying ResponseWriter (for http.ResponseController).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// markStream marks the response w as an event stream, if it is one of ours.
func markStream(w http.ResponseWriter) {
	if sw, ok := w.(*statusWriter); ok {
		sw.stream = true
	}
}

// pipelineCollector exposes a pipeline's counters, read at scrape time.
type pipelineCollector struct {
	p *pipeline.Pipeline

	applied, records, ignored, ticks, quoteRecords, aggregated, late *prometheus.Desc
	held, released, dropped, holding, instrumentEvents, active       *prometheus.Desc
	candlesClosed, hotEvents, walLag                                 *prometheus.Desc
}

// NewPipelineCollector returns a collector of p's counters (pipeline.Pipeline.Stats, Applied
// and HotEventsDerived), read when scraped, so they cost nothing on the hot path:
//
//	quotes_wal_applied_seq                      last WAL sequence applied
//	quotes_records_applied_total                WAL records applied (ticks included)
//	quotes_ticks_applied_total                  clock tick records applied
//	quotes_records_ignored_total                records of an unknown kind
//	quotes_quote_records_total                  QUOTE records
//	quotes_aggregated_total                     quotes folded into candles
//	quotes_late_total                           of those, quotes for an already closed minute
//	quotes_held_quotes_total                    quotes held back for an inactive ISIN
//	quotes_released_quotes_total                held quotes given to a new incarnation
//	quotes_dropped_total{reason}                quotes dropped: inactive_expired, inactive_at_end
//	quotes_held_quotes                          quotes held back now
//	quotes_instrument_events_total{event}       add_new, add_duplicate, delete, delete_unknown
//	quotes_instruments_active                   active instruments
//	quotes_candles_closed_total                 minutes closed
//	quotes_hot_events_total                     hot events derived
//
// The counters are those of the state the pipeline recovered (its checkpoint) plus what it
// applied since; quotes_hot_events_total counts since the process started.
func NewPipelineCollector(p *pipeline.Pipeline) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &pipelineCollector{
		p:                p,
		applied:          d("quotes_wal_applied_seq", "Sequence of the last WAL record the pipeline applied."),
		walLag:           d("quotes_wal_lag_records", "WAL records written but not yet applied by the pipeline."),
		records:          d("quotes_records_applied_total", "WAL records applied by the pipeline (ticks included)."),
		ticks:            d("quotes_ticks_applied_total", "Clock tick records applied (they close minutes)."),
		ignored:          d("quotes_records_ignored_total", "WAL records of an unknown kind, ignored."),
		quoteRecords:     d("quotes_quote_records_total", "QUOTE records applied."),
		aggregated:       d("quotes_aggregated_total", "Quotes folded into an instrument's candles (directly or after being held)."),
		late:             d("quotes_late_total", "Aggregated quotes for a minute already closed (sent as corrections)."),
		held:             d("quotes_held_quotes_total", "Quotes that arrived for an inactive ISIN and were held back for the grace period."),
		released:         d("quotes_released_quotes_total", "Held quotes given to a new incarnation by its ADD."),
		dropped:          d("quotes_dropped_total", "Quotes dropped, by reason.", "reason"),
		holding:          d("quotes_held_quotes", "Quotes held back now, waiting for their ADD."),
		instrumentEvents: d("quotes_instrument_events_total", "Instrument events applied, by effect.", "event"),
		active:           d("quotes_instruments_active", "Active instruments."),
		candlesClosed:    d("quotes_candles_closed_total", "Instrument minutes closed."),
		hotEvents:        d("quotes_hot_events_total", "Hot events derived since the process started (including those re-derived by recovery)."),
	}
}

// Describe implements prometheus.Collector.
func (c *pipelineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.applied, c.walLag, c.records, c.ticks, c.ignored, c.quoteRecords,
		c.aggregated, c.late, c.held, c.released, c.dropped, c.holding, c.instrumentEvents, c.active,
		c.candlesClosed, c.hotEvents} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	applied := c.p.Applied()
	gauge(c.applied, applied)
	if last := c.p.WALLastSeq(); last > applied {
		gauge(c.walLag, last-applied)
	} else {
		gauge(c.walLag, 0)
	}
	counter(c.records, st.Records)
	counter(c.ticks, st.Ticks)
	counter(c.ignored, st.Ignored)
	counter(c.quoteRecords, st.QuoteRecords)
	counter(c.aggregated, st.Aggregated)
	counter(c.late, st.Late)
	counter(c.held, st.HeldQuotes)
	counter(c.released, st.Released)
	counter(c.dropped, st.DroppedExpired, "inactive_expired")
	counter(c.dropped, st.DroppedAtEnd, "inactive_at_end")
	gauge(c.holding, st.Holding)
	counter(c.instrumentEvents, st.AddsNew, "add_new")
	counter(c.instrumentEvents, st.AddsDuplicate, "add_duplicate")
	counter(c.instrumentEvents, st.Deletes, "delete")
	counter(c.instrumentEvents, st.DeletesUnknown, "delete_unknown")
	gauge(c.active, st.Active)
	counter(c.candlesClosed, st.CandlesClosed)
	counter(c.hotEvents, c.p.HotEventsDerived())
}
