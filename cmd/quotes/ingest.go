package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/source"
)

// ingestOptions are the flags of `quotes ingest`.
type ingestOptions struct {
	data     dataOptions
	sinks    sinkOptions
	source   string
	http     string
	record   string
	maxFrame int64
	clock    clock.Clock // injected by tests
	// ready, if set, receives the HTTP address once the API is up (tests).
	ready chan<- string
}

func newIngestCmd() *cobra.Command {
	o := &ingestOptions{}
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Consume the partner's live feed into the WAL, candles and hot events, and serve the API",
		Long: `ingest connects to the partner's /instruments and /quotes websockets (reconnecting with
backoff), stamps every message with its arrival time, appends it to the WAL under --data
before anything else sees it, aggregates 1-minute candles, detects hot instruments and
serves the HTTP API on --http.

With --clickhouse DSN, closed candles, late corrections and instrument events also go to
ClickHouse, exactly once, from the outbox in --data: ClickHouse being down or slow never
stops ingest; the backlog waits on disk and is delivered when it is back (also after a
restart). Metrics: quotes_sink_*.

With --archive DIR or --archive s3://bucket/prefix, the raw quotes and instrument events
and the closed candles also go to hourly Parquet files
(PREFIX/{quotes,events,candles}/date=YYYY-MM-DD/hour=HH/part-….parquet), each hour written
once it is complete, atomically and exactly once; at shutdown the partial hour is written
too (within --sink-timeout; otherwise on the next start). The archive follows the WAL, so
S3 being down never stops ingest: WAL retention keeps what it has not written yet.
Credentials and region come from the standard AWS environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, ~/.aws, instance roles); --s3-endpoint selects an
S3-compatible store (path-style addressing).

Minutes close by the clock: minute m closes at m + 60s + --grace; the close is itself
written to the WAL, so a restart or a replay of the WAL derives the same candles.

After a crash (even kill -9) a restart recovers the registry, the open minutes and the hot
windows from the last checkpoint and the WAL: nothing is lost or counted twice.

SIGINT/SIGTERM: stop reading, flush, checkpoint, close cleanly.`,
		Example: `  # terminal 1: a simulated partner; terminal 2: ingest it
  quotes generate
  quotes ingest --source ws://127.0.0.1:8032 --data ./data
  curl http://127.0.0.1:5000/instruments

  # also keep a JSONL recording of what arrives
  quotes ingest --record arrived.jsonl

  # also archive to Parquet: a local directory, or S3 (here an S3-compatible server)
  quotes ingest --archive /srv/quotes-archive
  AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… quotes ingest --archive s3://market-data/quotes --s3-endpoint http://127.0.0.1:7070`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd)
		},
	}
	f := cmd.Flags()
	o.data.bindDir(f)
	o.data.bindPipeline(f)
	f.StringVar(&o.source, "source", "ws://127.0.0.1:8032", "partner base URL: /instruments and /quotes are appended")
	f.StringVar(&o.http, "http", "127.0.0.1:5000", "address of the HTTP API (empty disables it)")
	f.StringVar(&o.record, "record", "", "also write what arrives as JSONL (SPEC §3) to this file (appended)")
	f.Int64Var(&o.maxFrame, "max-frame", source.DefaultMaxFrame, "largest accepted websocket frame in bytes")
	o.sinks.bind(f, 10*time.Second, "at shutdown, how long to keep delivering to the sinks (the rest goes on the next start)")
	return cmd
}

func (o *ingestOptions) run(ctx context.Context, cmd *cobra.Command) error {
	if o.clock == nil {
		o.clock = clock.New()
	}
	if o.maxFrame <= 0 {
		return usagef("--max-frame %d: must be positive", o.maxFrame)
	}
	if err := o.sinks.validate(); err != nil {
		return err
	}
	logger := slog.Default()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	feedMetrics := feed.NewMetrics(reg)

	var rec *recorder
	if o.record != "" {
		var err error
		if rec, err = openRecorder(o.record); err != nil {
			return err
		}
		defer rec.close()
	}

	o.data.metrics = pipeline.NewMetrics(reg)
	o.data.consumers = o.sinks.retention()
	log, p, err := o.data.open(logger)
	if err != nil {
		return err
	}
	defer log.Close()
	// The sinks stop after the pipeline's final flush (defers run in reverse) and before
	// the WAL closes.
	sinks, err := o.sinks.start(p, log, &o.data, o.clock, logger, reg)
	if err != nil {
		p.Close()
		return err
	}
	defer sinks.stop(o.sinks.sinkTimeout)
	defer func() {
		if err := p.Close(); err != nil {
			logger.Error("final flush failed", "err", err)
		}
	}()
	reg.MustRegister(api.NewPipelineCollector(p))

	active := map[feed.ISIN]string{}
	for _, in := range p.Instruments() {
		active[in.ISIN] = in.Description
	}
	sopts := source.DefaultOptions(o.source)
	sopts.Clock = o.clock
	sopts.MaxFrame = o.maxFrame
	sopts.Active = active
	sopts.Logger = logger
	sopts.OnReject = func(de *feed.DecodeError) { feedMetrics.Reject(de.Reason) }
	client, err := source.New(sopts)
	if err != nil {
		return usagef("--source %q: %v", o.source, err)
	}

	ing := &ingester{p: p, rec: rec, clock: o.clock, grace: o.data.grace, logger: logger}
	ing.durable = newDurableLatency(reg) // bench (issue 9): arrival-to-WAL-durable latency

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)

	httpAddr := ""
	if o.http != "" {
		srv, err := api.Listen(o.http, api.NewHandler(api.Options{
			Backend:    api.PipelineBackend{P: p},
			Ready:      func() error { return readiness(client) },
			Gatherer:   reg,
			Registerer: reg,
			Logger:     logger,
			Clock:      o.clock,
		}))
		if err != nil {
			return fmt.Errorf("--http %s: %w", o.http, err)
		}
		httpAddr = srv.Addr()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(); err != nil {
				errs <- fmt.Errorf("HTTP API: %w", err)
			}
		}()
		defer func() {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			srv.Shutdown(sctx)
			wg.Wait()
		}()
		logger.Info("HTTP API listening", "url", "http://"+httpAddr)
	}
	remove, err := writeRunning(o.data.dir, runningProcess{PID: os.Getpid(), Command: "ingest", HTTP: httpAddr})
	if err != nil {
		return err
	}
	defer remove()
	if o.ready != nil {
		o.ready <- httpAddr
	}

	go func() { errs <- ing.tickLoop(ctx) }()
	go func() { errs <- client.Run(ctx, ing.deliver) }()
	logger.Info("ingesting", "source", o.source, "data", o.data.dir)

	err = <-errs
	cancel()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	logger.Info("stopping: flushing and checkpointing")
	return nil
}

func readiness(c *source.Client) error {
	if !c.Connected() {
		return errors.New("partner source not connected")
	}
	return nil
}

// ingester serialises WAL appends from the partner client and the minute ticker.
type ingester struct {
	mu     sync.Mutex
	p      *pipeline.Pipeline
	rec    *recorder
	clock  clock.Clock
	grace  time.Duration
	logger *slog.Logger
	// durable observes clock.Now() − ts of each message once its WAL append returned.
	durable prometheus.Histogram
}

func (in *ingester) deliver(batch []feed.Message) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := in.p.Append(batch); err != nil {
		return err
	}
	if in.durable != nil {
		now := in.clock.Now().UnixNano()
		for i := range batch {
			in.durable.Observe(float64(now-batch[i].TS) / 1e9)
		}
	}
	if in.rec != nil {
		in.rec.write(batch, in.logger)
	}
	return nil
}

// tickLoop writes a tick when each minute is due to close (minute end + grace), aligned to
// the wall clock. After a stall it ticks once with the current time, which closes every
// minute that became due meanwhile.
func (in *ingester) tickLoop(ctx context.Context) error {
	for {
		now := in.clock.Now()
		due := time.Unix(0, aggregate.MinuteOf(now.UnixNano())+int64(in.grace)+int64(time.Millisecond))
		for !due.After(now) {
			due = due.Add(time.Minute)
		}
		t := in.clock.Timer(due.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		in.mu.Lock()
		err := in.p.Tick(in.clock.Now().UnixNano())
		in.mu.Unlock()
		if err != nil {
			return fmt.Errorf("tick: %w", err)
		}
		if in.rec != nil {
			in.rec.flush(in.logger)
		}
	}
}

// recorder appends what arrives to a JSONL file.
type recorder struct {
	f *os.File
	w *feed.RecordingWriter
}

func openRecorder(path string) (*recorder, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, usagef("--record %q: %v", path, errors.Unwrap(err))
	}
	return &recorder{f: f, w: feed.NewRecordingWriter(f)}, nil
}

func (r *recorder) write(batch []feed.Message, logger *slog.Logger) {
	for i := range batch {
		if err := r.w.Write(&batch[i]); err != nil {
			logger.Error("record", "err", err)
			return
		}
	}
}

func (r *recorder) flush(logger *slog.Logger) {
	if err := r.w.Flush(); err != nil {
		logger.Error("record", "err", err)
	}
}

func (r *recorder) close() {
	r.w.Flush()
	r.f.Close()
}

// newDurableLatency registers quotes_ingest_durable_latency_seconds on reg: how long after
// its arrival stamp a message was durable in the WAL (its append, with --sync, returned).
// make bench reads its p50/p99 from /metrics.
func newDurableLatency(reg prometheus.Registerer) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "quotes_ingest_durable_latency_seconds",
		Help:    "Time from a message's arrival stamp until its WAL append returned (durable per --sync).",
		Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16), // 0.25 ms … 8.2 s
	})
	reg.MustRegister(h)
	return h
}
