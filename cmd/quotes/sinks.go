package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

// sinkOptions are the flags of the sinks besides the embedded store (ingest, replay).
type sinkOptions struct {
	clickhouse  string
	sinkTimeout time.Duration
	flushItems  int
	maxBackoff  time.Duration
	archive     archiveOptions
	// archiving is the running archiver once start has run: the pipeline opens (and may
	// trim the WAL) before it, so retention reads it through this pointer (see retention).
	archiving atomic.Pointer[runningArchive]
}

func (o *sinkOptions) bind(f *pflag.FlagSet, timeoutDefault time.Duration, timeoutHelp string) {
	f.StringVar(&o.clickhouse, "clickhouse", "", "also deliver candles and instrument events to ClickHouse, exactly once (clickhouse://host:9000/database)")
	f.DurationVar(&o.sinkTimeout, "sink-timeout", timeoutDefault, timeoutHelp)
	f.IntVar(&o.flushItems, "sink-flush-items", export.DefaultFlushItems, "items per flush to a sink")
	f.MarkHidden("sink-flush-items")
	f.DurationVar(&o.maxBackoff, "sink-max-backoff", export.DefaultMaxBackoff, "longest wait between retries of a failing sink")
	f.MarkHidden("sink-max-backoff")
	o.archive.bind(f)
}

// retention returns what the sinks that read the WAL (the archive) still need of it, for
// pipeline.Options.Consumers, or nil when none is configured. Before start has run it
// keeps everything.
func (o *sinkOptions) retention() func() uint64 {
	if o.archive.target == "" {
		return nil
	}
	return func() uint64 {
		ra := o.archiving.Load()
		if ra == nil {
			return 0 // not started yet: keep the whole WAL
		}
		return ra.needed()
	}
}

func (o *sinkOptions) validate() error {
	if o.sinkTimeout < 0 {
		return usagef("--sink-timeout %s: must not be negative", o.sinkTimeout)
	}
	if o.flushItems <= 0 {
		return usagef("--sink-flush-items %d: must be positive", o.flushItems)
	}
	if o.clickhouse != "" {
		if _, err := export.NewClickHouseSink(context.Background(), export.ClickHouseOptions{DSN: o.clickhouse}); err != nil {
			return usagef("--clickhouse: %v", err)
		}
	}
	return o.archive.validate()
}

// runningSinks are the consumers of the configured sinks, delivering in the background.
type runningSinks struct {
	consumers []*export.Consumer
	archive   *runningArchive // nil without --archive
	log       *wal.Log
	closers   []func() error
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	logger    *slog.Logger
}

// start opens the configured sinks and runs a consumer for each over p's outbox, and the
// archiver over log (the WAL under data, open with p). With no sink configured it returns
// an empty set.
func (o *sinkOptions) start(p *pipeline.Pipeline, log *wal.Log, data *dataOptions, clk clock.Clock, logger *slog.Logger, reg prometheus.Registerer) (*runningSinks, error) {
	rs := &runningSinks{logger: logger, log: log}
	if o.clickhouse != "" {
		ch, err := export.NewClickHouseSink(context.Background(), export.ClickHouseOptions{DSN: o.clickhouse})
		if err != nil {
			return nil, usagef("--clickhouse: %v", err)
		}
		c, err := export.NewConsumer(p.Store(), ch.OutboxSink(), export.ConsumerOptions{
			FlushItems: o.flushItems, Changed: p.OutboxChanged, Clock: clk, Logger: logger,
			MinBackoff: min(export.DefaultMinBackoff, o.maxBackoff), MaxBackoff: o.maxBackoff,
		})
		if err != nil {
			ch.Close()
			return nil, err
		}
		rs.consumers = append(rs.consumers, c)
		rs.closers = append(rs.closers, ch.Close)
	}
	if reg != nil && len(rs.consumers) > 0 {
		reg.MustRegister(export.NewConsumerCollector(rs.consumers...))
	}
	ra, err := o.archive.start(log, data.dir, data.grace, clk, logger)
	if err != nil {
		for _, cl := range rs.closers {
			cl()
		}
		return nil, err
	}
	rs.archive = ra
	o.archiving.Store(ra)
	ctx, cancel := context.WithCancel(context.Background())
	rs.cancel = cancel
	for _, c := range rs.consumers {
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			c.Run(ctx)
		}()
	}
	return rs, nil
}

// pending is what a sink has not received when stop returns.
type pending struct {
	sink  string
	items int
	err   error
}

// stop ends the background delivery, then delivers what is left (the pipeline must be
// flushed) for at most timeout, and reports what is still pending: it is delivered on the
// next start.
func (rs *runningSinks) stop(timeout time.Duration) []pending {
	rs.cancel()
	rs.wg.Wait()
	var out []pending
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, c := range rs.consumers {
		n, err := c.Drain(ctx)
		if n > 0 {
			out = append(out, pending{sink: c.Name(), items: n, err: err})
			rs.logger.Warn("sink not caught up at exit; the rest is delivered on the next start", "sink", c.Name(), "pending_items", n, "err", err)
		} else if err != nil {
			out = append(out, pending{sink: c.Name(), err: err})
		}
	}
	for _, cl := range rs.closers {
		cl()
	}
	rs.closers = nil
	if rs.archive != nil {
		if err := rs.archive.stop(timeout); err != nil {
			n := 0
			if last, done := rs.log.LastSeq(), rs.archive.a.Archived(); last > done {
				n = int(last - done)
			}
			out = append(out, pending{sink: "archive " + rs.archive.target, items: n, err: err})
			rs.logger.Warn("archive not caught up at exit; the rest is written on the next start", "archive", rs.archive.target, "pending_records", n, "err", err)
		}
	}
	return out
}

// active reports whether any sink besides the embedded store is configured.
func (rs *runningSinks) active() bool { return len(rs.consumers) > 0 || rs.archive != nil }

// stats returns the consumers' stats.
func (rs *runningSinks) stats() []export.ConsumerStats {
	out := make([]export.ConsumerStats, len(rs.consumers))
	for i, c := range rs.consumers {
		out[i] = c.Stats()
	}
	return out
}

// errHotNotInClickHouse: hot events live in the embedded store only.
var errHotNotInClickHouse = errors.New("hot events are not stored in ClickHouse: query them with --data (the embedded store)")

// clickHouseBackend serves instruments and candles from ClickHouse (api.Backend), with the
// same output as the embedded store. Hot events come from hot when set (serve over a data
// directory too), otherwise they are an error.
//
// "Now" is the minute after the latest minute ClickHouse holds a candle for (of any
// instrument): the minute still open when ClickHouse is caught up. ClickHouse holds closed
// minutes only, so that open minute is served flat at the last close; after a replay, whose
// end closes every minute, this equals what the embedded store serves.
type clickHouseBackend struct {
	ch  *export.ClickHouseSink
	hot api.Backend
}

func (b clickHouseBackend) Instruments(ctx context.Context) ([]api.Instrument, error) {
	ins, err := b.ch.Instruments(ctx)
	if err != nil {
		return nil, err
	}
	prices, err := b.ch.LatestPrices(ctx)
	if err != nil {
		return nil, err
	}
	reg := make([]aggregate.Instrument, len(ins))
	for i, in := range ins {
		reg[i] = aggregate.Instrument{ISIN: in.ISIN, Incarnation: in.Incarnation, Description: in.Description}
		if lp, ok := prices[aggregate.Key{ISIN: in.ISIN, Incarnation: in.Incarnation}]; ok {
			reg[i].HasPrice, reg[i].Price, reg[i].PriceTS, reg[i].PriceSeq = true, lp.Price, lp.TS, lp.Seq
		}
	}
	return api.InstrumentsView(reg), nil
}

// active returns the active incarnation of isin.
func (b clickHouseBackend) active(ctx context.Context, isin feed.ISIN) (export.Instrument, error) {
	hist, err := b.ch.InstrumentHistory(ctx, isin)
	if err != nil {
		return export.Instrument{}, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if !hist[i].Deleted {
			return hist[i], nil
		}
	}
	return export.Instrument{}, pipeline.ErrUnknownInstrument
}

func (b clickHouseBackend) Candles(ctx context.Context, isin feed.ISIN, r pipeline.CandleRange) ([]api.Candle, error) {
	in, err := b.active(ctx, isin)
	if err != nil {
		return nil, err
	}
	latest, ok, err := b.ch.LatestMinute(ctx)
	if err != nil {
		return nil, err
	}
	first, _, has, err := b.ch.MinuteBounds(ctx, isin, in.Incarnation)
	if err != nil {
		return nil, err
	}
	if !ok || !has {
		return []api.Candle{}, nil
	}
	current := latest + aggregate.MinuteNanos
	from, to := r.From, r.To
	if r.Last > 0 {
		from, to = aggregate.LastRange(current, r.Last)
	}
	gr := aggregate.GapRange{ISIN: isin, Incarnation: in.Incarnation, From: from, To: to, First: first, Current: current}
	lo := max(from, first)
	all, err := b.ch.Candles(ctx, isin, lo, to)
	if err != nil {
		return nil, err
	}
	lists := make([]aggregate.Candle, 0, len(all)+1)
	for _, c := range all {
		if c.Incarnation == in.Incarnation {
			lists = append(lists, c)
		}
	}
	if prev, found, err := b.ch.LastMinuteBefore(ctx, isin, in.Incarnation, lo); err != nil {
		return nil, err
	} else if found {
		cs, err := b.ch.Candles(ctx, isin, prev, prev+aggregate.MinuteNanos)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if c.Incarnation == in.Incarnation {
				lists = append(lists, c)
			}
		}
	}
	out := aggregate.FillGaps(gr, lists)
	return api.CandlesView(out), nil
}

func (b clickHouseBackend) HotEvents(ctx context.Context, afterID uint64, since int64, limit int) ([]hot.Event, error) {
	if b.hot != nil {
		return b.hot.HotEvents(ctx, afterID, since, limit)
	}
	return nil, errHotNotInClickHouse
}

func (b clickHouseBackend) HotEventsChanged() <-chan struct{} {
	if b.hot != nil {
		return b.hot.HotEventsChanged()
	}
	return make(chan struct{})
}

// openClickHouse opens a sink for reading (query, serve, backfill).
func openClickHouse(ctx context.Context, dsn string) (*export.ClickHouseSink, error) {
	ch, err := export.NewClickHouseSink(ctx, export.ClickHouseOptions{DSN: dsn})
	if err != nil {
		return nil, usagef("--clickhouse: %v", err)
	}
	if err := ch.Ping(ctx); err != nil {
		ch.Close()
		return nil, fmt.Errorf("--clickhouse %s: %w", dsn, err)
	}
	return ch, nil
}
