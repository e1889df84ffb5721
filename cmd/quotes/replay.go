package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/simulator"
	"github.com/quotesdev/quotes/wal"
)

// replayOptions are the flags of `quotes replay`.
type replayOptions struct {
	data     dataOptions
	sinks    sinkOptions
	speed    string
	progress string
	batch    int
	clock    clock.Clock // injected by tests; real clock otherwise
}

func newReplayCmd() *cobra.Command {
	o := &replayOptions{}
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
changes nothing.

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

Broken lines are rejected with a counted reason (see the summary) and do not stop the
replay.`,
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
	o.data.bindPipeline(f)
	f.StringVar(&o.speed, "speed", "max", "pace against the wall clock: max, 1x, 10x, …")
	f.StringVar(&o.progress, "progress", "auto", "progress bar: auto (on a terminal), always, never")
	f.IntVar(&o.batch, "batch", 32768, "messages per WAL append (one fsync each with --sync batch|always)")
	o.sinks.bind(f, 5*time.Minute, "at the end, how long to wait for the sinks to receive everything (the rest goes on the next run)")
	return cmd
}

// replaySource is one SOURCE argument.
type replaySource struct {
	arg     string
	name    string // key of its resumable position in the WAL
	path    string
	wal     bool // a data directory's WAL rather than a JSONL file
	archive bool // a Parquet archive (directory or s3:// prefix)
	size    int64
}

func (o *replayOptions) sources(args []string) ([]replaySource, error) {
	var out []replaySource
	for _, a := range args {
		if export.IsS3URL(a) {
			if a == o.sinks.archive.target {
				return nil, usagef("source %q is the --archive itself", a)
			}
			out = append(out, replaySource{arg: a, path: a, archive: true})
			continue
		}
		abs, err := filepath.Abs(a)
		if err != nil {
			return nil, usagef("source %q: %v", a, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return nil, usagef("source %q: %v", a, errors.Unwrap(err))
		}
		s := replaySource{arg: a, path: abs, size: st.Size()}
		if st.IsDir() && isArchiveSource(abs) {
			if t := o.sinks.archive.target; t != "" && !export.IsS3URL(t) {
				if same, _ := filepath.Abs(t); same == abs {
					return nil, usagef("source %q is the --archive itself", a)
				}
			}
			s.archive, s.path, s.size = true, abs, 0
		} else if st.IsDir() {
			walDir := filepath.Join(abs, "wal")
			if _, err := os.Stat(filepath.Join(walDir, "MANIFEST")); err != nil {
				return nil, usagef("source %q: a directory but not a quotes data directory (no wal/MANIFEST)", a)
			}
			if same, _ := filepath.Abs(o.data.dir); same == abs {
				return nil, usagef("source %q is the --data directory itself", a)
			}
			s.wal, s.path, s.name = true, walDir, "wal:"+walDir
		} else {
			s.name = "file:" + abs
		}
		out = append(out, s)
	}
	return out, nil
}

// replayStats is what the summary prints.
type replayStats struct {
	messages, quotes, instrumentEvents, ticks uint64
	rejects                                   map[feed.Reason]uint64
	resumed                                   int
}

func (o *replayOptions) run(ctx context.Context, cmd *cobra.Command, args []string) error {
	speed, err := simulator.ParseSpeed(o.speed)
	if err != nil {
		return usagef("--speed %q: want max or a factor like 1x, 10x", o.speed)
	}
	if o.batch <= 0 {
		return usagef("--batch %d: must be positive", o.batch)
	}
	switch o.progress {
	case "auto", "always", "never":
	default:
		return usagef("--progress %q: want auto, always or never", o.progress)
	}
	srcs, err := o.sources(args)
	if err != nil {
		return err
	}
	if err := o.sinks.validate(); err != nil {
		return err
	}
	if o.clock == nil {
		o.clock = clock.New()
	}
	logger := slog.Default()
	o.data.consumers = o.sinks.retention()
	log, p, err := o.data.open(logger)
	if err != nil {
		return err
	}
	defer log.Close()
	sinks, err := o.sinks.start(p, log, &o.data, o.clock, logger, nil)
	if err != nil {
		p.Close()
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			p.Close()
			sinks.stop(0)
		}
	}()
	remove, err := writeRunning(o.data.dir, runningProcess{PID: os.Getpid(), Command: "replay"})
	if err != nil {
		return err
	}
	defer remove()

	var total int64
	for _, s := range srcs {
		total += s.size
	}
	bar := o.progressBar(cmd, total)
	st := &replayStats{rejects: map[feed.Reason]uint64{}}
	statsBefore := p.Stats()
	hotBefore := p.HotEventsDerived()
	start := o.clock.Now()
	pacer := newPacer(o.clock, speed)
	w := p.NewWriter(8)
	for _, s := range srcs {
		var err error
		switch {
		case s.archive:
			err = o.replayArchive(ctx, w, log, s, st, pacer)
		case s.wal:
			err = o.replayWAL(ctx, w, log, s, st, pacer, bar)
		default:
			err = o.replayFile(ctx, w, log, s, st, pacer, bar)
		}
		if err != nil {
			w.Close()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(cmd.ErrOrStderr())
	}
	if err := p.Finish(); err != nil {
		return err
	}
	elapsed := o.clock.Since(start)
	stats := p.Stats()
	o.printSummary(cmd.OutOrStdout(), st, statsBefore, stats, p.HotEventsDerived()-hotBefore, elapsed)
	stopped = true
	if err := p.Close(); err != nil {
		sinks.stop(0)
		return err
	}
	if !sinks.active() {
		return nil
	}
	left := sinks.stop(o.sinks.sinkTimeout)
	for _, s := range sinks.stats() {
		fmt.Fprintf(cmd.OutOrStdout(), "sink %s: %d items delivered in %d flushes (%d failed attempts)\n", s.Sink, s.Delivered, s.Flushes, s.Failures)
	}
	if a := sinks.archive; a != nil {
		s := a.a.Stats()
		fmt.Fprintf(cmd.OutOrStdout(), "archive %s: %d files (%d quotes, %d events, %d candle states) in %d cuts (%d failed attempts)\n",
			a.target, s.Files, s.Quotes, s.Events, s.Candles, s.Cuts, s.Failures)
	}
	if len(left) > 0 {
		var b strings.Builder
		for _, l := range left {
			fmt.Fprintf(&b, "; %s: %d items pending (%v)", l.sink, l.items, l.err)
		}
		return fmt.Errorf("the replay is complete in %s, but not everything reached the sinks within --sink-timeout %s%s: re-run the same command to deliver the rest", o.data.dir, o.sinks.sinkTimeout, b.String())
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

// filePos is the resumable position in a JSONL source: byte offset and line number.
func encodeFilePos(offset, line int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(offset))
	return binary.BigEndian.AppendUint64(b, uint64(line))
}

func decodeFilePos(b []byte) (offset, line int64, ok bool) {
	if len(b) != 16 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), true
}

// fileBatch is a batch of decoded messages and where in the file it ends.
type fileBatch struct {
	msgs         []feed.Message
	offset, line int64
	rejects      []*feed.DecodeError
	err          error
}

func (o *replayOptions) replayFile(ctx context.Context, w *pipeline.Writer, log *wal.Log, s replaySource, st *replayStats, pacer *pacer, bar *progressbar.ProgressBar) error {
	f, err := os.Open(s.path)
	if err != nil {
		return usagef("source %q: %v", s.arg, err)
	}
	defer f.Close()
	var offset, line int64
	if pos, ok, err := log.SourcePosition(s.name); err != nil {
		return fmt.Errorf("read position of %s: %w", s.arg, err)
	} else if ok {
		if offset, line, ok = decodeFilePos(pos); !ok {
			return fmt.Errorf("position of %s in the WAL is corrupt (%d bytes)", s.arg, len(pos))
		}
		if offset > s.size {
			return usagef("source %q is shorter (%d bytes) than what was already replayed from it (%d bytes): a different file?", s.arg, s.size, offset)
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return fmt.Errorf("seek %s to %d: %w", s.arg, offset, err)
		}
		st.resumed++
		slog.Info("resuming replay", "source", s.arg, "offset", offset, "line", line)
	}
	if bar != nil {
		bar.Add64(offset)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *fileBatch, 2)
	const buffers = 16 // reading, and up to 8 queued per stage of the pipeline.Writer
	free := make(chan *fileBatch, buffers)
	for i := 0; i < buffers; i++ {
		free <- &fileBatch{msgs: make([]feed.Message, 0, o.batch)}
	}
	go readBatches(ctx, feed.NewRecordingReaderAt(f, offset, line), o.batch, pacer.span(), batches, free)
	last := offset
	for b := range batches {
		if b.err != nil {
			return fmt.Errorf("read %s: %w", s.arg, b.err)
		}
		for _, r := range b.rejects {
			st.rejects[r.Reason]++
			slog.Debug("rejected line", "source", s.arg, "err", r)
		}
		if err := pacer.wait(ctx, b.msgs); err != nil {
			return err
		}
		st.count(b.msgs)
		if bar != nil {
			bar.Add64(b.offset - last)
		}
		release := func() {
			b.msgs, b.rejects = b.msgs[:0], b.rejects[:0]
			free <- b
		}
		if b.offset == last {
			release()
			continue
		}
		last = b.offset
		if err := w.Write(b.msgs, s.name, encodeFilePos(b.offset, b.line), release); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// readBatches decodes rr into batches of up to size messages. A paced replay (span > 0)
// also starts a new batch when a message is more than span of event time after its batch's
// first, so that the pacer, which holds each batch until its first message is due, releases
// no message more than span early (span is 10 ms of wall time at the replay's speed).
func readBatches(ctx context.Context, rr *feed.RecordingReader, size int, span int64, out chan<- *fileBatch, free chan *fileBatch) {
	defer close(out)
	send := func(b *fileBatch) bool {
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var b *fileBatch
	for {
		if b == nil {
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
		}
		offset, line := rr.Offset(), rr.Line()
		var m feed.Message
		err := rr.Next(&m)
		var de *feed.DecodeError
		switch {
		case err == nil:
			if span > 0 && len(b.msgs) > 0 && m.TS-b.msgs[0].TS > span {
				b.offset, b.line = offset, line
				if !send(b) {
					return
				}
				select {
				case b = <-free:
				case <-ctx.Done():
					return
				}
			}
			b.msgs = append(b.msgs, m)
		case errors.As(err, &de):
			b.rejects = append(b.rejects, de)
		case errors.Is(err, io.EOF):
			b.offset, b.line = rr.Offset(), rr.Line()
			if len(b.msgs) > 0 || len(b.rejects) > 0 {
				send(b)
			}
			return
		default:
			b.err = err
			send(b)
			return
		}
		if len(b.msgs) >= size || len(b.rejects) >= size {
			b.offset, b.line = rr.Offset(), rr.Line()
			if !send(b) {
				return
			}
			b = nil
		}
	}
}

func (o *replayOptions) replayWAL(ctx context.Context, w *pipeline.Writer, log *wal.Log, s replaySource, st *replayStats, pacer *pacer, bar *progressbar.ProgressBar) error {
	var next uint64 = 1
	if pos, ok, err := log.SourcePosition(s.name); err != nil {
		return fmt.Errorf("read position of %s: %w", s.arg, err)
	} else if ok {
		if len(pos) != 8 {
			return fmt.Errorf("position of %s in the WAL is corrupt (%d bytes)", s.arg, len(pos))
		}
		next = binary.BigEndian.Uint64(pos) + 1
		st.resumed++
	}
	wopts := wal.DefaultOptions(s.path)
	wopts.Logger = slog.Default()
	src, err := wal.Open(wopts)
	if err != nil {
		if isLockError(err) {
			return usagef("source %q is in use by a running quotes process", s.arg)
		}
		return fmt.Errorf("open source WAL %s: %w", s.arg, err)
	}
	defer src.Close()
	if first := src.FirstSeq(); first > next {
		return fmt.Errorf("source %s: its WAL starts at seq %d, retention removed %d…%d", s.arg, first, next, first-1)
	}
	last := src.LastSeq()
	r := src.NewReader(next)
	msgs := make([]feed.Message, 0, o.batch)
	var seq uint64
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		if err := pacer.wait(ctx, msgs); err != nil {
			return err
		}
		st.count(msgs)
		if bar != nil && last > 0 {
			bar.Add64(int64(uint64(len(msgs)) * uint64(s.size) / last))
		}
		if err := w.Write(msgs, s.name, binary.BigEndian.AppendUint64(nil, seq), nil); err != nil {
			return err
		}
		msgs = make([]feed.Message, 0, o.batch)
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read source WAL %s: %w", s.arg, err)
		}
		seq = rec.Seq
		msgs = append(msgs, rec.Message)
		if len(msgs) == o.batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// replayArchive replays the raw messages of a Parquet archive (see replayArchive in
// archive.go), resumable after the last archived sequence replayed.
func (o *replayOptions) replayArchive(ctx context.Context, w *pipeline.Writer, log *wal.Log, s replaySource, st *replayStats, pacer *pacer) error {
	tmp := filepath.Join(o.data.dir, "archive-tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("replay archive: %w", err)
	}
	if _, ok, err := log.SourcePosition(archiveSourceName(s.path)); err == nil && ok {
		st.resumed++
	}
	src := archiveOptions{target: s.path, s3Endpoint: o.sinks.archive.s3Endpoint}
	return replayArchive(ctx, w, log, s.path, src.s3Options(tmp), o.batch, pacer.wait, st.count)
}

func (st *replayStats) count(msgs []feed.Message) {
	for i := range msgs {
		st.messages++
		switch msgs[i].Kind {
		case feed.KindQuote:
			st.quotes++
		case wal.KindTick:
			st.ticks++
		default:
			st.instrumentEvents++
		}
	}
}

func (o *replayOptions) printSummary(w io.Writer, st *replayStats, before, after aggregate.Stats, hotEvents uint64, elapsed time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rate := 0.0
	if secs := elapsed.Seconds(); secs > 0 {
		rate = float64(st.messages) / secs
	}
	var rejected uint64
	for _, n := range st.rejects {
		rejected += n
	}
	fmt.Fprintf(tw, "messages\t%d\t(%d quotes, %d instrument events, %d ticks)\n", st.messages, st.quotes, st.instrumentEvents, st.ticks)
	fmt.Fprintf(tw, "quotes aggregated\t%d\t(%d late corrections, %d released from grace hold)\n", after.Aggregated-before.Aggregated, after.Late-before.Late, after.Released-before.Released)
	fmt.Fprintf(tw, "quotes dropped\t%d\t(inactive_expired %d, inactive_at_end %d)\n",
		after.DroppedExpired-before.DroppedExpired+after.DroppedAtEnd-before.DroppedAtEnd,
		after.DroppedExpired-before.DroppedExpired, after.DroppedAtEnd-before.DroppedAtEnd)
	fmt.Fprintf(tw, "deletes of inactive ISINs\t%d\t\n", after.DeletesUnknown-before.DeletesUnknown)
	fmt.Fprintf(tw, "candles closed\t%d\t\n", after.CandlesClosed-before.CandlesClosed)
	fmt.Fprintf(tw, "hot events\t%d\t\n", hotEvents)
	fmt.Fprintf(tw, "active instruments\t%d\t\n", after.Active)
	fmt.Fprintf(tw, "rejected lines\t%d\t\n", rejected)
	for _, r := range feed.Reasons {
		if n := st.rejects[r]; n > 0 {
			fmt.Fprintf(tw, "  %s\t%d\t\n", r, n)
		}
	}
	if st.resumed > 0 {
		fmt.Fprintf(tw, "resumed\t%d source(s)\tcontinued after the last durable message\n", st.resumed)
	}
	tw.Flush()
	// Printed apart from the aligned counts so their layout does not depend on timing.
	fmt.Fprintf(w, "elapsed %s (%.0f messages/s)\n", elapsed.Round(time.Millisecond), rate)
}

// pacer holds batches back so that event time advances at speed × wall time.
type pacer struct {
	clock   clock.Clock
	speed   float64 // 0: as fast as possible
	started bool
	wall0   time.Time
	event0  int64
}

func newPacer(c clock.Clock, speed float64) *pacer { return &pacer{clock: c, speed: speed} }

// span is how much event time one paced batch may cover: 10 ms of wall time at the speed
// (0 when not paced). Batches of a fixed event-time span would be tiny at high speeds, and
// each costs a WAL write.
func (p *pacer) span() int64 {
	if p.speed <= 0 {
		return 0
	}
	return int64(float64(10*time.Millisecond) * p.speed)
}

func (p *pacer) wait(ctx context.Context, msgs []feed.Message) error {
	if p.speed <= 0 || len(msgs) == 0 {
		return ctx.Err()
	}
	ts := msgs[0].TS
	if !p.started {
		p.started, p.wall0, p.event0 = true, p.clock.Now(), ts
		return ctx.Err()
	}
	due := p.wall0.Add(time.Duration(float64(ts-p.event0) / p.speed))
	d := due.Sub(p.clock.Now())
	if d <= 0 {
		return ctx.Err()
	}
	t := p.clock.Timer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
