package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/simulator"
)

// replayOptions are the flags of `quotes replay`.
type replayOptions struct {
	app            *app
	data           dataOptions
	sinks          sinkOptions
	speed          string
	progress       string
	batch          int
	http           httpOptions
	minFreeDisk    string
	maxRejectRatio float64
	clock          clock.Clock // injected by tests; real clock otherwise
}

func newReplayCmd(a *app) *cobra.Command {
	o := &replayOptions{app: a}
	cmd := &cobra.Command{
		Use:   "replay SOURCE...",
		Short: "Run recorded feeds (JSONL files, another data directory's WAL, a Parquet archive) through the pipeline",
		Long: `replay runs recorded partner messages through the same pipeline as ingest: each message
is appended to the WAL under --data, aggregated into candles and checked for hot moves; at
the end of the input every minute is closed and flushed.

A SOURCE is a recording in the JSONL format of SPEC §3 (as written by generate --record and
ingest --record) or a data directory of another run (its WAL is copied in order, ticks
included, so the result equals the original run's), or a Parquet archive written with
--archive: a directory holding quotes/ and events/, or s3://bucket/prefix (with
--s3-endpoint for S3-compatible stores; credentials from the standard AWS environment).
An archive's raw quotes and instrument events are replayed in their original WAL order
(the archive has no clock ticks: minutes close by event time, and at the end).

Replay is resumable: the WAL records, with every batch, how far into each source it got.
Re-running the same command after a crash (or Ctrl-C) continues after the last durable
message, and the end result equals an uninterrupted run. Re-running a finished replay
changes nothing. A recording is known by its content (a hash of its first 64 KiB), not its
path: a renamed or moved file resumes, a different file under the same name does not.
SIGINT/SIGTERM stop at a batch boundary (exit 130/143).

Event time is each message's recorded ts, whatever the speed; --speed paces the replay
against the wall clock (1x: as recorded; 10x: ten times faster; max: as fast as possible).

With --clickhouse DSN, closed candles, late corrections and instrument events also go to
ClickHouse, exactly once even across crashes and re-runs (see ingest --help). At the end,
replay waits up to --sink-timeout until ClickHouse has everything; what is left is delivered
by the next run (re-running a finished replay only delivers).

With --archive DIR or --archive s3://bucket/prefix, the raw messages and the closed
candles also go to hourly Parquet files (see ingest --help); at the end, the partial last
hour is written too, within --sink-timeout. If that fails (S3 down), replay exits 1 saying
so, and re-running the same command writes the rest.

Broken lines are rejected with a counted reason (see the summary, which names the first
few by line; --log-level debug logs each) and do not stop the replay. A replay that
accepted no message at all, or rejected more than --max-reject-ratio of the lines, exits 1.`,
		Example: `  quotes generate --record feed.jsonl --instruments 2000 --duration 3m --speed max --seed 42
  quotes replay feed.jsonl --data ./data
  quotes query candles DJ40J281M584 --data ./data

  # also into ClickHouse
  quotes replay feed.jsonl --data ./data --clickhouse clickhouse://127.0.0.1:9000/default

  # copy another run's WAL into a fresh directory
  quotes replay ./data --data ./data2

  # archive to Parquet while replaying, then replay the archive into a fresh directory
  quotes replay feed.jsonl --data ./data --archive ./archive
  quotes replay ./archive --data ./data3

  # the same with S3 (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws)
  quotes replay feed.jsonl --data ./data --archive s3://market-data/quotes --s3-endpoint http://127.0.0.1:7070
  quotes replay s3://market-data/quotes --data ./data4 --s3-endpoint http://127.0.0.1:7070`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd, args)
		},
	}
	f := cmd.Flags()
	o.data.bindDir(f)
	o.data.bindSettings(f)
	o.data.bindWAL(f)
	o.data.bindShard(f)
	f.StringVar(&o.speed, "speed", "max", "pace against the wall clock: max, 1x, 10x, …")
	f.StringVar(&o.progress, "progress", "auto", "progress bar: auto (on a terminal), always, never")
	f.IntVar(&o.batch, "batch", 32768, "messages per WAL append (one fsync each with --sync batch|always)")
	o.http.bind(f, "", "also serve the HTTP API on this address while replaying (e.g. 127.0.0.1:5000; empty: off)")
	bindMinFreeDisk(f, &o.minFreeDisk)
	f.Float64Var(&o.maxRejectRatio, "max-reject-ratio", 0.5, "fail (exit 1) when more than this share of the lines is rejected")
	o.sinks.bind(f, 5*time.Minute, "at the end, how long to wait for the sinks to receive everything (the rest goes on the next run)")
	return cmd
}

// errInterrupted marks a replay stopped by a signal: the exit code is 128 + the signal.
type errInterrupted struct{ sig os.Signal }

func (e *errInterrupted) Error() string {
	return "interrupted; run the same command again to resume"
}

func (o *replayOptions) run(ctx context.Context, cmd *cobra.Command, args []string) error {
	speed, err := simulator.ParseSpeed(o.speed)
	if err != nil {
		return usagef("--speed %q: want max or a factor like 1x, 10x", o.speed)
	}
	if o.batch <= 0 {
		return usagef("--batch %d: must be positive", o.batch)
	}
	if o.maxRejectRatio < 0 || o.maxRejectRatio > 1 {
		return usagef("--max-reject-ratio %g: want 0..1", o.maxRejectRatio)
	}
	switch o.progress {
	case "auto", "always", "never":
	default:
		return usagef("--progress %q: want auto, always or never", o.progress)
	}
	if err := o.http.validate(); err != nil {
		return err
	}
	minFree, err := parseMinFreeDisk(o.minFreeDisk)
	if err != nil {
		return err
	}
	if o.clock == nil {
		o.clock = clock.New()
	}
	logger := o.app.logger
	srcs, err := engine.OpenSources(args, engine.SourceOptions{DataDir: o.data.dir, Archive: o.sinks.archive.target, S3: o.sinks.archive.s3Options()})
	var se *engine.SourceError
	if errors.As(err, &se) {
		return &usageError{err}
	}
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range srcs {
			s.Close()
		}
	}()
	reg := prometheus.NewRegistry()
	eopts, err := o.data.engineOptions(logger, reg)
	if err != nil {
		return err
	}
	if err := o.sinks.apply(&eopts); err != nil {
		return err
	}
	eopts.Clock = o.clock
	eopts.MinFreeDisk = minFree
	eopts.Token = engine.NewToken()
	srv, err := startProcessAPI(o.http, &eopts, "replay", reg, logger, o.clock)
	if err != nil {
		return err
	}
	if srv != nil {
		defer srv.Stop()
	}
	eng, err := engine.Open(eopts)
	if err != nil {
		return engineError(err)
	}
	closed := false
	defer func() {
		if !closed {
			eng.Close()
		}
	}()
	if srv != nil {
		srv.SetAdmin(eng.AdminHandler(engine.SpecOpener(func(endpoint string) export.S3Options {
			ao := archiveOptions{s3Endpoint: endpoint}
			return ao.s3Options()
		})))
		srv.SetBackend(eng.Backend(), nil)
	}

	var total int64
	for _, s := range srcs {
		total += s.Size()
	}
	bar := o.progressBar(cmd, total)
	ropts := engine.ReplayOptions{Speed: speed, Batch: o.batch}
	if bar != nil {
		ropts.Progress = func(n int64) { bar.Add64(n) }
	}
	st, err := eng.Replay(ctx, srcs, ropts)
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(cmd.ErrOrStderr())
	}
	if err != nil {
		if ctx.Err() != nil {
			closed = true
			eng.Close()
			return &errInterrupted{sig: signalOf(ctx)}
		}
		if errors.Is(err, engine.ErrBadPosition) {
			return usagef("%v", err)
		}
		return err
	}
	o.printSummary(cmd.OutOrStdout(), st)
	closed = true
	cerr := eng.Close()
	if eng.HasSinks() {
		cs, as := eng.SinkStats()
		for _, s := range cs {
			fmt.Fprintf(cmd.OutOrStdout(), "sink %s: %d items delivered in %d flushes (%d failed attempts)\n", s.Sink, s.Delivered, s.Flushes, s.Failures)
		}
		if as != nil {
			fmt.Fprintf(cmd.OutOrStdout(), "archive %s: %d files (%d quotes, %d events, %d candle states) in %d cuts (%d failed attempts)\n",
				o.sinks.archive.target, as.Files, as.Quotes, as.Events, as.Candles, as.Cuts, as.Failures)
		}
	}
	var pe *engine.PendingError
	if errors.As(cerr, &pe) {
		return fmt.Errorf("the replay is complete in %s, but %w: re-run the same command to deliver the rest", o.data.dir, cerr)
	}
	if cerr != nil {
		return cerr
	}
	return o.checkRejects(st)
}

// checkRejects fails a replay that accepted nothing, or rejected too much.
func (o *replayOptions) checkRejects(st *engine.ReplayStats) error {
	rejected := st.Rejected()
	lines := st.Messages + st.Foreign - st.Ticks + rejected
	switch {
	case st.Messages == 0 && st.Foreign == 0 && st.Resumed == 0:
		if rejected > 0 {
			return fmt.Errorf("no message accepted: all %d lines were rejected (is it a recording? see the summary)", rejected)
		}
		return fmt.Errorf("no message accepted: the sources hold no messages")
	case lines > 0 && float64(rejected) > o.maxRejectRatio*float64(lines):
		return fmt.Errorf("%d of %d lines rejected, more than --max-reject-ratio %g (the data was replayed; see the summary)", rejected, lines, o.maxRejectRatio)
	}
	return nil
}

func (o *replayOptions) progressBar(cmd *cobra.Command, total int64) *progressbar.ProgressBar {
	show := o.progress == "always"
	if o.progress == "auto" {
		f, ok := cmd.ErrOrStderr().(*os.File)
		show = ok && term.IsTerminal(int(f.Fd()))
	}
	if !show {
		return nil
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription("replay"),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
	)
}

func (o *replayOptions) printSummary(w io.Writer, st *engine.ReplayStats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rate := 0.0
	if secs := st.Elapsed.Seconds(); secs > 0 {
		rate = float64(st.Messages) / secs
	}
	before, after := st.Before, st.After
	fmt.Fprintf(tw, "messages\t%d\t(%d quotes, %d instrument events, %d ticks)\n", st.Messages, st.Quotes, st.InstrumentEvents, st.Ticks)
	if st.Foreign > 0 {
		fmt.Fprintf(tw, "other shards' messages\t%d\t(dropped before the WAL: --shard %s)\n", st.Foreign, o.data.shard)
	}
	fmt.Fprintf(tw, "quotes aggregated\t%d\t(%d late corrections, %d released from grace hold)\n", after.Aggregated-before.Aggregated, after.Late-before.Late, after.Released-before.Released)
	fmt.Fprintf(tw, "quotes dropped\t%d\t(inactive_expired %d, inactive_at_end %d)\n",
		after.DroppedExpired-before.DroppedExpired+after.DroppedAtEnd-before.DroppedAtEnd,
		after.DroppedExpired-before.DroppedExpired, after.DroppedAtEnd-before.DroppedAtEnd)
	fmt.Fprintf(tw, "deletes of inactive ISINs\t%d\t\n", after.DeletesUnknown-before.DeletesUnknown)
	fmt.Fprintf(tw, "candles closed\t%d\t\n", after.CandlesClosed-before.CandlesClosed)
	fmt.Fprintf(tw, "hot events\t%d\t\n", st.HotEvents)
	fmt.Fprintf(tw, "active instruments\t%d\t\n", after.Active)
	fmt.Fprintf(tw, "rejected lines\t%d\t\n", st.Rejected())
	for _, r := range feed.Reasons {
		if n := st.Rejects[r]; n > 0 {
			fmt.Fprintf(tw, "  %s\t%d\t\n", r, n)
		}
	}
	if st.Resumed > 0 {
		fmt.Fprintf(tw, "resumed\t%d source(s)\tcontinued after the last durable message\n", st.Resumed)
	}
	tw.Flush()
	if len(st.FirstRejects) > 0 {
		fmt.Fprintf(w, "first rejected lines (all of them with --log-level debug):\n")
		for _, r := range st.FirstRejects {
			fmt.Fprintf(w, "  %s:%d: %s", r.Source, r.Line, r.Reason)
			if r.Detail != "" {
				fmt.Fprintf(w, ": %s", escapeText(r.Detail, 120))
			}
			fmt.Fprintln(w)
		}
	}
	// Printed apart from the aligned counts so their layout does not depend on timing.
	fmt.Fprintf(w, "elapsed %s (%.0f messages/s)\n", st.Elapsed.Round(time.Millisecond), rate)
}
