package engine

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/export"
)

// archiveCollector exports the Parquet archive's progress at scrape time.
type archiveCollector struct {
	a                                     *export.Archiver
	e                                     *Engine
	seq, lag, cuts, files, rows, failures *prometheus.Desc
}

func newArchiveCollector(e *Engine, a *export.Archiver) *archiveCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("quotes_archive_"+name, help, labels, nil)
	}
	return &archiveCollector{a: a, e: e,
		seq:      d("archived_seq", "The last WAL sequence whose effects the archive has committed."),
		lag:      d("lag_records", "WAL records not yet in the archive."),
		cuts:     d("cuts_total", "Committed cuts (hour closes and final cuts)."),
		files:    d("files_total", "Parquet files published."),
		rows:     d("rows_total", "Rows published, by dataset.", "dataset"),
		failures: d("failures_total", "Failed attempts to write the archive (each retried)."),
	}
}

func (c *archiveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.seq, c.lag, c.cuts, c.files, c.rows, c.failures} {
		ch <- d
	}
}

func (c *archiveCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.Stats()
	lag := float64(0)
	if last := c.e.log.LastSeq(); last > st.Archived {
		lag = float64(last - st.Archived)
	}
	ch <- prometheus.MustNewConstMetric(c.seq, prometheus.GaugeValue, float64(st.Archived))
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag)
	ch <- prometheus.MustNewConstMetric(c.cuts, prometheus.CounterValue, float64(st.Cuts))
	ch <- prometheus.MustNewConstMetric(c.files, prometheus.CounterValue, float64(st.Files))
	ch <- prometheus.MustNewConstMetric(c.rows, prometheus.CounterValue, float64(st.Quotes), export.DatasetQuotes)
	ch <- prometheus.MustNewConstMetric(c.rows, prometheus.CounterValue, float64(st.Events), export.DatasetEvents)
	ch <- prometheus.MustNewConstMetric(c.rows, prometheus.CounterValue, float64(st.Candles), export.DatasetCandles)
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.Failures))
}
