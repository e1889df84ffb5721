package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/store"
)

// The lifecycle of the sinks fed from the outbox (export.Consumer): each registers under
// its name in the data directory and stays registered when a later run does not configure
// it (e.g. ingest restarted without --clickhouse). Retention keeps the outbox items a
// registered sink has not delivered, so such a sink would make the outbox grow forever.
// Instead:
//
//   - every running consumer records its last run (store.TouchConsumer);
//   - one that no process has run for longer than Options.SinkStale is stale: it is
//     reported on /metrics (quotes_sink_stale, quotes_sink_last_run_age_seconds) and in
//     the log once an hour, and the retention pass (trimOutbox) stops keeping the outbox
//     for it: its undelivered items are dropped and recorded as lost (the range to
//     backfill once it is back), so the outbox stays bounded;
//   - before that, the retention pass names it in the log as the reason the outbox is kept;
//   - Sinks lists them and RemoveSink (quotes sinks remove) forgets one at once.

// ErrUnknownSink means no sink of that name is registered in the data directory.
var ErrUnknownSink = errors.New("no such sink")

// ErrSinkRunning means the sink to remove is run by this engine.
var ErrSinkRunning = errors.New("sink is running")

// SinkInfo describes a sink registered in the data directory.
type SinkInfo struct {
	// Name is the consumer's name (e.g. "clickhouse"); Target where it delivers, without
	// credentials ("" when not recorded).
	Name, Target string
	// Delivered is the position delivered: the last outbox tag (WAL sequence) the sink has.
	Delivered uint64
	// Backlog is the number of outbox items not delivered yet.
	Backlog int
	// LastRun is the last time a process ran it, LastSuccess the last time it delivered or
	// was caught up (zero: unknown).
	LastRun, LastSuccess time.Time
	// Running is set when this engine runs it; Stale when no process has run it for
	// longer than Options.SinkStale.
	Running, Stale bool
	// Lost is what retention dropped for it while it was stale.
	Lost store.Lost
}

// Sinks returns the sinks registered in the data directory, by name.
func (e *Engine) Sinks() ([]SinkInfo, error) {
	st := e.p.Store()
	infos, err := st.ConsumerInfos()
	if err != nil {
		return nil, err
	}
	applied, err := st.Applied()
	if err != nil {
		return nil, err
	}
	now := e.opts.Clock.Now()
	out := make([]SinkInfo, 0, len(infos))
	for _, ci := range infos {
		si := SinkInfo{Name: ci.Name, Target: ci.Target, Delivered: ci.Watermark, LastRun: ci.LastRun,
			LastSuccess: ci.LastSuccess, Running: e.sinks.running(ci.Name), Lost: ci.Lost}
		si.Stale = e.stale(ci, now)
		if ci.Watermark < applied {
			if si.Backlog, err = st.CountOutbox(ci.Watermark+1, applied, 0); err != nil {
				return nil, err
			}
		}
		out = append(out, si)
	}
	return out, nil
}

// stale reports whether ci is a stale sink at now: not run here and not run by any
// process for longer than SinkStale (an unknown last run is not stale: Open records one).
func (e *Engine) stale(ci store.ConsumerInfo, now time.Time) bool {
	return e.opts.SinkStale > 0 && !e.sinks.running(ci.Name) && !ci.LastRun.IsZero() && now.Sub(ci.LastRun) > e.opts.SinkStale
}

// RemoveSink unregisters the sink name: retention no longer keeps outbox items for it and
// drops the ones only it still needed at once. A later run that configures it again starts
// from what the outbox holds then (backfill the gap). It refuses a sink this engine runs.
func (e *Engine) RemoveSink(name string) error {
	if e.sinks.running(name) {
		return fmt.Errorf("remove sink %s: %w in this process", name, ErrSinkRunning)
	}
	st := e.p.Store()
	found, err := st.RemoveConsumer(name)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("remove sink %q: %w in %s", name, ErrUnknownSink, e.opts.Dir)
	}
	n, err := st.TrimDelivered()
	if err != nil {
		return fmt.Errorf("remove sink %s: trim the outbox: %w", name, err)
	}
	e.opts.Logger.Info("sink removed", "sink", name, "outbox_items_dropped", n)
	return nil
}

// running reports whether the engine runs the consumer name. The consumers are set by
// start, before anything is appended.
func (s *sinks) running(name string) bool {
	return slices.ContainsFunc(s.consumers, func(c *export.Consumer) bool { return c.Name() == name })
}

// adminLog rate-limits the stale-sink log lines: at most one per sink and kind an hour
// (on the engine's clock).
type adminLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const adminLogEvery = time.Hour

func (l *adminLog) due(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < adminLogEvery {
		return false
	}
	l.last[key] = now
	return true
}

func (e *Engine) adminLog() *adminLog { return &e.sinks.admin }

// trimOutbox is the retention pass over the outbox (pipeline.Options.TrimOutbox): stale
// sinks are expired first, then what every registered sink has delivered is removed, and
// a sink that is not running and still keeps items is named in the log (hourly).
func (e *Engine) trimOutbox() (int, error) {
	st := e.p.Store()
	now := e.opts.Clock.Now()
	infos, err := st.ConsumerInfos()
	if err != nil {
		return 0, err
	}
	if !e.opts.ReadOnly {
		for _, ci := range infos {
			if !e.stale(ci, now) {
				continue
			}
			lost, err := st.ExpireConsumer(ci.Name, now.Add(-e.opts.SinkStale))
			if errors.Is(err, store.ErrConsumerActive) {
				continue
			}
			if err != nil {
				return 0, err
			}
			if lost.Items > 0 && e.adminLog().due("expire/"+ci.Name, now) {
				e.opts.Logger.Warn("outbox retention: a stale sink no longer keeps the outbox; its undelivered items are dropped (backfill them once it is back, or `quotes sinks remove` it)",
					"sink", ci.Name, "last_run", ci.LastRun.Format(time.RFC3339), "sink_stale", e.opts.SinkStale,
					"dropped_items", lost.Items, "events_from", fmtTS(lost.From), "events_to", fmtTS(lost.To))
			}
		}
	}
	n, err := st.TrimDelivered()
	if err != nil {
		return n, err
	}
	applied, err := st.Applied()
	if err != nil {
		return n, err
	}
	if infos, err = st.ConsumerInfos(); err != nil {
		return n, err
	}
	for _, ci := range infos {
		if e.sinks.running(ci.Name) || ci.Watermark >= applied || !e.adminLog().due("keep/"+ci.Name, now) {
			continue
		}
		kept, err := st.CountOutbox(ci.Watermark+1, applied, 0)
		if err != nil {
			return n, err
		}
		attrs := []any{"sink", ci.Name, "kept_items", kept, "last_run", fmtTime(ci.LastRun)}
		if e.opts.SinkStale > 0 && !ci.LastRun.IsZero() {
			attrs = append(attrs, "stale_at", ci.LastRun.Add(e.opts.SinkStale).Format(time.RFC3339))
		}
		e.opts.Logger.Warn("outbox retention: kept for a sink that is not running (configure it again, or `quotes sinks remove` it; after --sink-stale its backlog is dropped)", attrs...)
	}
	return n, nil
}

// startMonitor records a last run for the registered sinks that have none (registered by an
// older version: from now on they can become stale), registers the stale-sink metrics and
// starts the hourly report of stale sinks.
func (s *sinks) startMonitor(ctx context.Context) {
	e := s.e
	st := e.p.Store()
	now := e.opts.Clock.Now()
	if infos, err := st.ConsumerInfos(); err != nil {
		e.opts.Logger.Warn("read sinks", "err", err)
	} else {
		for _, ci := range infos {
			if ci.LastRun.IsZero() {
				if err := st.TouchConsumer(ci.Name, now, false); err != nil {
					e.opts.Logger.Warn("record the sink's last run", "sink", ci.Name, "err", err)
				}
			}
		}
	}
	if e.opts.Registerer != nil {
		e.opts.Registerer.MustRegister(staleCollector{e})
	}
	if e.opts.SinkStale <= 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := e.opts.Clock.Ticker(time.Hour)
		defer t.Stop()
		for {
			e.reportStale()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// reportStale logs every stale sink.
func (e *Engine) reportStale() {
	sinks, err := e.Sinks()
	if err != nil {
		e.opts.Logger.Warn("read sinks", "err", err)
		return
	}
	now := e.opts.Clock.Now()
	for _, si := range sinks {
		if !si.Stale {
			continue
		}
		e.opts.Logger.Warn("sink is stale: no process has run it for longer than --sink-stale, so retention no longer keeps the outbox for it; run with it configured and backfill, or `quotes sinks remove` it",
			"sink", si.Name, "target", si.Target, "last_run", fmtTime(si.LastRun), "age", now.Sub(si.LastRun).Round(time.Second),
			"sink_stale", e.opts.SinkStale, "backlog", si.Backlog, "lost_items", si.Lost.Items)
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtTS(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// staleCollector exports, for every registered sink, whether it is stale and how long ago
// it last ran.
type staleCollector struct{ e *Engine }

var (
	descStale   = prometheus.NewDesc("quotes_sink_stale", "1 when no process has run the registered sink for longer than --sink-stale (retention then drops its backlog).", []string{"sink"}, nil)
	descLastRun = prometheus.NewDesc("quotes_sink_last_run_age_seconds", "Time since a process last ran the registered sink.", []string{"sink"}, nil)
	descLost    = prometheus.NewDesc("quotes_sink_lost_items", "Outbox items retention dropped while the sink was stale (to backfill).", []string{"sink"}, nil)
)

func (c staleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descStale
	ch <- descLastRun
	ch <- descLost
}

func (c staleCollector) Collect(ch chan<- prometheus.Metric) {
	infos, err := c.e.p.Store().ConsumerInfos()
	if err != nil {
		return
	}
	now := c.e.opts.Clock.Now()
	for _, ci := range infos {
		stale := 0.0
		if c.e.stale(ci, now) {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(descStale, prometheus.GaugeValue, stale, ci.Name)
		if !ci.LastRun.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastRun, prometheus.GaugeValue, now.Sub(ci.LastRun).Seconds(), ci.Name)
		}
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.GaugeValue, float64(ci.Lost.Items), ci.Name)
	}
}
