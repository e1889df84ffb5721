package engine

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/alert"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/internal/backoff"
)

// sinks are the engine's deliveries beyond the embedded store: one outbox consumer per
// ClickHouse sink, and the Parquet archiver following the WAL.
type sinks struct {
	e         *Engine
	consumers []*export.Consumer
	closers   []func() error
	archiver  atomic.Pointer[export.Archiver]
	archErr   error
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	started   bool
	admin     adminLog // rate limits of the stale-sink logs (sinks_admin.go)
}

// Pending is what a sink had not received when the engine closed: it is delivered on the
// next Open.
type Pending struct {
	Sink  string
	Items int
	Err   error
}

// PendingError is returned by Close when the sinks did not receive everything within
// Options.SinkTimeout.
type PendingError struct {
	Pending []Pending
	Timeout time.Duration
}

func (e *PendingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "not everything reached the sinks within --sink-timeout %s", e.Timeout)
	for _, p := range e.Pending {
		fmt.Fprintf(&b, "; %s: %d items pending", p.Sink, p.Items)
		if p.Err != nil {
			fmt.Fprintf(&b, " (%v)", p.Err)
		}
	}
	return b.String()
}

// needed is the lowest WAL sequence a sink that reads the WAL (the archive) still needs,
// for the pipeline's retention: everything before the archiver runs, nothing without one.
func (s *sinks) needed() uint64 {
	if s.e.opts.Archive == "" {
		return math.MaxUint64
	}
	a := s.archiver.Load()
	if a == nil {
		return 0
	}
	return a.Needed()
}

// OpenClickHouse opens a ClickHouse sink for dsn and checks that it answers.
func OpenClickHouse(ctx context.Context, dsn string) (*export.ClickHouseSink, error) {
	ch, err := export.NewClickHouseSink(ctx, export.ClickHouseOptions{DSN: dsn})
	if err != nil {
		return nil, &OptionError{Option: "clickhouse", Err: err}
	}
	if err := ch.Ping(ctx); err != nil {
		ch.Close()
		return nil, fmt.Errorf("--clickhouse %s: %w", dsn, err)
	}
	return ch, nil
}

// OpenArchive opens the archive store of target (a directory or s3://bucket/prefix).
func OpenArchive(target string, s3 export.S3Options) (export.ArchiveStore, error) {
	st, err := export.OpenArchiveStore(target, s3)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", target, err)
	}
	return st, nil
}

func (s *sinks) tempDir() (string, error) {
	tmp := filepath.Join(s.e.opts.Dir, "archive-tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	return tmp, nil
}

// start opens the configured sinks and runs them in the background.
func (s *sinks) start() error {
	o := &s.e.opts
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if o.ClickHouse != "" {
		ch, err := export.NewClickHouseSink(ctx, export.ClickHouseOptions{DSN: o.ClickHouse})
		if err != nil {
			cancel()
			return &OptionError{Option: "clickhouse", Err: err}
		}
		c, err := export.NewConsumer(s.e.p.Store(), ch.OutboxSink(), export.ConsumerOptions{
			FlushItems: o.SinkFlushItems, Changed: s.e.p.OutboxChanged, Clock: o.Clock, Logger: o.Logger,
			MinBackoff: min(export.DefaultMinBackoff, o.SinkMaxBackoff), MaxBackoff: o.SinkMaxBackoff,
		})
		if err != nil {
			ch.Close()
			cancel()
			return err
		}
		s.consumers = append(s.consumers, c)
		s.closers = append(s.closers, ch.Close)
	}
	deliveries, err := s.startAlerts()
	if err != nil {
		s.closeAll()
		cancel()
		return err
	}
	if o.Registerer != nil && len(s.consumers) > 0 {
		o.Registerer.MustRegister(export.NewConsumerCollector(s.consumers...))
	}
	if o.Registerer != nil && len(deliveries) > 0 {
		o.Registerer.MustRegister(alert.NewCollector(s.e.p.Store(), deliveries...))
	}
	if o.Archive != "" {
		tmp, err := s.tempDir()
		if err != nil {
			s.closeAll()
			cancel()
			return err
		}
		s3 := o.S3
		s3.TempDir = tmp
		st, err := export.OpenArchiveStore(o.Archive, s3)
		if err != nil {
			s.closeAll()
			cancel()
			return &OptionError{Option: "archive", Err: fmt.Errorf("%q: %w", o.Archive, err)}
		}
		aggOpts := aggregate.DefaultOptions()
		aggOpts.Grace = s.e.settings.Grace
		a, err := export.NewArchiver(ctx, s.e.log, export.ArchiveOptions{
			Store: st, Aggregate: aggOpts, TempDir: tmp, Clock: o.Clock, Logger: o.Logger,
		})
		if err != nil {
			s.closeAll()
			cancel()
			return err
		}
		s.archiver.Store(a)
		if o.Registerer != nil {
			o.Registerer.MustRegister(newArchiveCollector(s.e, a))
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := a.Run(ctx); err != nil {
				o.Logger.Error("archive stopped", "err", err)
				s.archErr = err
			}
		}()
	}
	for _, c := range s.consumers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c.Run(ctx)
		}()
	}
	s.startMonitor(ctx)
	s.started = true
	return nil
}

// startAlerts opens the alert sinks, each with its outbox consumer.
func (s *sinks) startAlerts() ([]alert.Delivery, error) {
	o := &s.e.opts
	a := o.Alerts
	if a.NATS == "" && len(a.Webhooks) == 0 {
		return nil, nil
	}
	filter := alert.NewFilter(a.MinChange, a.ISINs)
	var out []alert.Delivery
	add := func(sink alert.Sink) error {
		c, err := export.NewConsumer(s.e.p.Store(), sink, export.ConsumerOptions{
			Changed: s.e.p.OutboxChanged, Clock: o.Clock, Logger: o.Logger,
			MinBackoff: min(export.DefaultMinBackoff, o.SinkMaxBackoff), MaxBackoff: o.SinkMaxBackoff,
		})
		if err != nil {
			sink.Close()
			return err
		}
		s.consumers = append(s.consumers, c)
		s.closers = append(s.closers, sink.Close)
		out = append(out, alert.Delivery{Sink: sink, Consumer: c})
		return nil
	}
	if a.NATS != "" {
		ns, err := alert.NewNATSSink(alert.NATSOptions{URL: a.NATS, Filter: filter, Clock: o.Clock, Logger: o.Logger})
		if err != nil {
			return nil, &OptionError{Option: "alerts-nats", Err: err}
		}
		if err := add(ns); err != nil {
			return nil, err
		}
	}
	for _, u := range a.Webhooks {
		ws, err := alert.NewWebhookSink(alert.WebhookOptions{URL: u, Secret: a.Secret, Filter: filter, Clock: o.Clock, Logger: o.Logger})
		if err != nil {
			return nil, &OptionError{Option: "alerts-webhook", Err: err}
		}
		if err := add(ws); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *sinks) closeAll() {
	for _, cl := range s.closers {
		cl()
	}
	s.closers = nil
}

// active reports whether any sink besides the embedded store runs.
func (s *sinks) active() bool { return len(s.consumers) > 0 || s.archiver.Load() != nil }

// stats returns the consumers' and the archiver's statistics.
func (s *sinks) stats() ([]export.ConsumerStats, *export.ArchiveStats) {
	out := make([]export.ConsumerStats, len(s.consumers))
	for i, c := range s.consumers {
		out[i] = c.Stats()
	}
	if a := s.archiver.Load(); a != nil {
		st := a.Stats()
		return out, &st
	}
	return out, nil
}

// stop ends the background delivery, then delivers what is left (the pipeline is flushed)
// for at most timeout; what is still pending is reported as a *PendingError.
func (s *sinks) stop(timeout time.Duration) error {
	if !s.started {
		return nil
	}
	s.started = false
	s.cancel()
	s.wg.Wait()
	logger := s.e.opts.Logger
	var out []Pending
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, c := range s.consumers {
		n, err := c.Drain(ctx)
		if n > 0 {
			out = append(out, Pending{Sink: c.Name(), Items: n, Err: err})
			logger.Warn("sink not caught up at exit; the rest is delivered on the next start", "sink", c.Name(), "pending_items", n, "err", err)
		} else if err != nil {
			out = append(out, Pending{Sink: c.Name(), Err: err})
		}
	}
	s.closeAll()
	if a := s.archiver.Load(); a != nil {
		if err := s.flushArchive(ctx, a); err != nil {
			n := 0
			if last, done := s.e.log.LastSeq(), a.Archived(); last > done {
				n = int(last - done)
			}
			out = append(out, Pending{Sink: "archive " + s.e.opts.Archive, Items: n, Err: err})
			logger.Warn("archive not caught up at exit; the rest is written on the next start", "archive", s.e.opts.Archive, "pending_records", n, "err", err)
		}
	}
	if len(out) > 0 {
		return &PendingError{Pending: out, Timeout: timeout}
	}
	return nil
}

// flushArchive writes the partial hour (a final cut), retrying failures with back-off until
// ctx ends; what it cannot write is written on the next start (the cut is recorded).
func (s *sinks) flushArchive(ctx context.Context, a *export.Archiver) error {
	defer a.Close()
	bo := backoff.New(backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}, s.e.opts.Clock)
	var err error
	for {
		if err = a.Flush(ctx); err == nil || ctx.Err() != nil {
			break
		}
		s.e.opts.Logger.Warn("archive: final write failed, retrying", "archive", s.e.opts.Archive, "err", err)
		if bo.Wait(ctx) != nil {
			break
		}
	}
	if err == nil {
		err = s.archErr
	}
	if err != nil {
		return fmt.Errorf("archive: not everything was written: %w", err)
	}
	return nil
}
