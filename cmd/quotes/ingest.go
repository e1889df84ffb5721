package main

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/source"
)

// ingestOptions are the flags of `quotes ingest`.
type ingestOptions struct {
	app               *app
	data              dataOptions
	sinks             sinkOptions
	source            string
	http              httpOptions
	snapshotMaxDelete float64
	minFreeDisk       string
	record            string
	maxFrame          int64
	groupInterval     time.Duration
	clock             clock.Clock // injected by tests
	// ready, if set, receives the HTTP address once the API is up (tests).
	ready chan<- string
}

func newIngestCmd(a *app) *cobra.Command {
	o := &ingestOptions{app: a}
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
	o.data.bindSettings(f)
	o.data.bindWAL(f)
	o.data.bindShard(f)
	f.StringVar(&o.source, "source", "ws://127.0.0.1:8032", "partner base URL: /instruments and /quotes are appended")
	o.http.bind(f, "127.0.0.1:5000", "address of the HTTP API (empty disables it)")
	f.Float64Var(&o.snapshotMaxDelete, "snapshot-max-delete", 10, "at most this percent of the active instruments may be deleted by one reconnect snapshot's reconciliation; beyond it they are kept (a WARN and quotes_source_deletes_withheld say so)")
	bindMinFreeDisk(f, &o.minFreeDisk)
	f.StringVar(&o.record, "record", "", "also write what arrives as JSONL (SPEC §3) to this file (appended)")
	f.Int64Var(&o.maxFrame, "max-frame", source.DefaultMaxFrame, "largest accepted websocket frame in bytes")
	f.DurationVar(&o.groupInterval, "group-interval", source.DefaultGroupInterval, "gather the partner's messages for up to this long between WAL appends (a group commit, one fsync each with --sync batch|always), or until 1024 are waiting; 0 appends as soon as anything arrived")
	o.sinks.bind(f, 10*time.Second, "at shutdown, how long to keep delivering to the sinks (the rest goes on the next start)")
	return cmd
}

func (o *ingestOptions) run(ctx context.Context, cmd *cobra.Command) error {
	if o.clock == nil {
		o.clock = clock.New()
	}
	if o.groupInterval < 0 {
		return usagef("--group-interval %s: must not be negative", o.groupInterval)
	}
	if o.maxFrame <= 0 {
		return usagef("--max-frame %d: must be positive", o.maxFrame)
	}
	if err := checkSourceURL(o.source); err != nil {
		return err
	}
	if err := o.http.validate(); err != nil {
		return err
	}
	if o.snapshotMaxDelete <= 0 || o.snapshotMaxDelete > 100 {
		return usagef("--snapshot-max-delete %g: want a percentage in (0, 100]", o.snapshotMaxDelete)
	}
	logger := o.app.logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	feedMetrics := feed.NewMetrics(reg)

	eopts, err := o.data.engineOptions(logger, reg)
	if err != nil {
		return err
	}
	if err := o.sinks.apply(&eopts); err != nil {
		return err
	}
	eopts.Clock = o.clock
	if eopts.MinFreeDisk, err = parseMinFreeDisk(o.minFreeDisk); err != nil {
		return err
	}
	eopts.Token = engine.NewToken()
	var record *os.File
	if o.record != "" {
		if record, err = openRecording(o.record); err != nil {
			return usagef("--record %q: %v", o.record, errors.Unwrap(err))
		}
		defer record.Close()
	}
	srv, err := startProcessAPI(o.http, &eopts, "ingest", reg, logger, o.clock)
	if err != nil {
		return err
	}
	if srv != nil {
		defer srv.Stop()
	}
	if o.ready != nil && srv != nil {
		o.ready <- srv.Addr()
	}
	eng, err := engine.Open(eopts)
	if err != nil {
		return engineError(err)
	}
	defer func() {
		if err := eng.Close(); err != nil {
			logger.Error("close", "err", err)
		}
	}()

	active := map[feed.ISIN]string{}
	for _, in := range eng.Pipeline().Instruments() {
		active[in.ISIN] = in.Description
	}
	sopts := source.DefaultOptions(o.source)
	sopts.Clock = o.clock
	sopts.MaxFrame = o.maxFrame
	sopts.GroupInterval = o.groupInterval
	sopts.Active = active
	sopts.Logger = logger
	sopts.OnReject = func(de *feed.DecodeError) { feedMetrics.Reject(de.Reason) }
	sopts.SnapshotMaxDelete = o.snapshotMaxDelete
	sopts.Registerer = reg
	client, err := source.New(sopts)
	if err != nil {
		return usagef("--source %q: %v", o.source, err)
	}
	if srv != nil {
		srv.SetAdmin(eng.AdminHandler(engine.SpecOpener(func(endpoint string) export.S3Options {
			ao := archiveOptions{s3Endpoint: endpoint}
			return ao.s3Options()
		})))
		srv.SetBackend(eng.Backend(), func() error {
			if err := eng.DiskErr(); err != nil {
				return err
			}
			return readiness(client)
		})
	}
	logger.Info("ingesting", "source", o.source, "data", o.data.dir)
	var rec io.Writer
	if record != nil {
		rec = record
	}
	if err := eng.Ingest(ctx, client, engine.IngestOptions{Record: rec}); err != nil {
		return err
	}
	logger.Info("stopping: flushing and checkpointing")
	return nil
}

// checkSourceURL accepts a ws:// or wss:// partner base URL.
func checkSourceURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return usagef("--source %q: %v", s, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" || u.Host == "" {
		return usagef("--source %q: want a ws:// or wss:// URL with a host, e.g. ws://127.0.0.1:8032", s)
	}
	return nil
}

func readiness(c *source.Client) error {
	if !c.Connected() {
		return errors.New("partner source not connected")
	}
	return nil
}

// openRecording opens the --record file for appending. A file that does not end with a
// newline — its last line torn by a crash (kill -9) while ingest wrote it — gets one first,
// so that the lines appended now start on a line of their own: the torn line stays one
// rejected line instead of taking the next good line down with it.
func openRecording(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err = f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			_, err = f.Write([]byte{'\n'})
		}
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return f, nil
}
