package main

// The Parquet archive's command-line side (SPEC §5 --archive, replay of an archive):
// flags, opening the store with the standard AWS configuration, running the archiver next
// to the pipeline, and replaying an archive as a source. The commands wire it in through
// archiveOptions (see the comments on each function for where it plugs in).

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/spf13/pflag"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

// archiveOptions are the archive flags of ingest and replay (and the S3 ones of replay and
// backfill reading an archive).
type archiveOptions struct {
	target     string // --archive DIR | s3://bucket/prefix
	s3Endpoint string // --s3-endpoint URL
}

// bind binds --archive and --s3-endpoint (ingest, replay).
func (o *archiveOptions) bind(f *pflag.FlagSet) {
	f.StringVar(&o.target, "archive", "", "also write hourly Parquet files of the raw feed and the candles to a directory or s3://bucket/prefix (credentials and region from the standard AWS environment)")
	o.bindS3(f)
}

// bindS3 binds --s3-endpoint only (commands that read an s3:// source).
func (o *archiveOptions) bindS3(f *pflag.FlagSet) {
	f.StringVar(&o.s3Endpoint, "s3-endpoint", "", "S3-compatible endpoint URL for s3:// archives (e.g. http://127.0.0.1:7070; path-style addressing); default AWS")
}

// s3Options returns the S3 client options for target from the flags and the standard AWS
// environment: credentials through the AWS chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, ~/.aws/credentials with AWS_PROFILE, instance roles), the region from
// AWS_REGION or AWS_DEFAULT_REGION. cmd is the only place that reads the environment.
func (o *archiveOptions) s3Options(tempDir string) export.S3Options {
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	return export.S3Options{
		Endpoint:    o.s3Endpoint,
		Region:      region,
		Credentials: export.AWSCredentials(),
		TempDir:     tempDir,
	}
}

// validate checks the flags (usage errors).
func (o *archiveOptions) validate() error {
	if o.target == "" {
		return nil // --s3-endpoint alone is harmless (it serves s3:// sources too)
	}
	if _, err := o.store(os.TempDir()); err != nil {
		return usagef("--archive %q: %v", o.target, err)
	}
	return nil
}

// store opens the store of --archive.
func (o *archiveOptions) store(tempDir string) (export.ArchiveStore, error) {
	return openArchive(o.target, o.s3Options(tempDir))
}

func openArchive(target string, s3 export.S3Options) (export.ArchiveStore, error) {
	st, err := export.OpenArchiveStore(target, s3)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// runningArchive is the archiver of --archive, following the WAL in the background.
type runningArchive struct {
	target string
	a      *export.Archiver
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error
	done   bool // stopped
}

// start runs the archiver over log (nil when --archive is not set). grace must be the
// pipeline's. Wiring: ingest and replay call it after opening the data directory; its
// needed method goes into pipeline.Options.Consumers (with the other consumers', by min)
// so that WAL retention keeps the archive's backlog.
func (o *archiveOptions) start(log *wal.Log, dataDir string, grace time.Duration, clk clock.Clock, logger *slog.Logger) (*runningArchive, error) {
	if o.target == "" {
		return nil, nil
	}
	tmp := filepath.Join(dataDir, "archive-tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	st, err := o.store(tmp)
	if err != nil {
		return nil, usagef("--archive %q: %v", o.target, err)
	}
	aggOpts := aggregate.DefaultOptions()
	aggOpts.Grace = grace
	ctx, cancel := context.WithCancel(context.Background())
	a, err := export.NewArchiver(ctx, log, export.ArchiveOptions{
		Store: st, Aggregate: aggOpts, TempDir: tmp, Clock: clk, Logger: logger,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	ra := &runningArchive{target: o.target, a: a, cancel: cancel}
	ra.wg.Add(1)
	go func() {
		defer ra.wg.Done()
		if err := a.Run(ctx); err != nil {
			logger.Error("archive stopped", "err", err)
			ra.err = err
		}
	}()
	return ra, nil
}

// needed is the lowest WAL sequence the archive still needs; with no archive,
// math.MaxUint64 (nothing: pipeline retention takes the min over its consumers).
func (ra *runningArchive) needed() uint64 {
	if ra == nil {
		return math.MaxUint64
	}
	return ra.a.Needed()
}

// stop ends the background archiving and writes the partial hour (a final cut), retrying
// failures within timeout; what it cannot write is written on the next start (the cut is
// recorded).
func (ra *runningArchive) stop(timeout time.Duration) error {
	if ra == nil || ra.done {
		return nil
	}
	ra.done = true
	ra.cancel()
	ra.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Retry failures (S3 down) with back-off until the timeout, as the other sinks' drain.
	var err error
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		if err = ra.a.Flush(ctx); err == nil || ctx.Err() != nil {
			break
		}
		slog.Warn("archive: final write failed, retrying", "archive", ra.target, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	ra.a.Close()
	if err == nil {
		err = ra.err
	}
	if err != nil {
		return fmt.Errorf("archive: not everything was written (the rest is written on the next start): %w", err)
	}
	return nil
}

// isArchiveSource reports whether a replay SOURCE is a Parquet archive: an s3:// URL, or a
// directory holding quotes/ or events/ (and no wal/).
func isArchiveSource(abs string) bool {
	if export.IsS3URL(abs) {
		return true
	}
	if dirExists(filepath.Join(abs, "wal")) {
		return false
	}
	return dirExists(filepath.Join(abs, export.DatasetQuotes)) || dirExists(filepath.Join(abs, export.DatasetEvents))
}

// archiveSourceName is the key of an archive source's resumable position in the WAL.
func archiveSourceName(target string) string { return "archive:" + target }

// replayArchive replays the raw messages of an archive (quotes and instrument events, in
// their original WAL order) through w, resumable: the position recorded with every batch is
// the last archived sequence replayed, and a re-run continues after it. Wiring: replay's
// source loop calls it for a source where isArchiveSource holds (the s3:// case must skip
// the os.Stat of replay's sources()).
func replayArchive(ctx context.Context, w *pipeline.Writer, log *wal.Log, target string, s3 export.S3Options, batch int,
	wait func(context.Context, []feed.Message) error, count func([]feed.Message)) error {
	st, err := openArchive(target, s3)
	if err != nil {
		return usagef("source %q: %v", target, err)
	}
	name := archiveSourceName(st.String())
	var after uint64
	if pos, ok, err := log.SourcePosition(name); err != nil {
		return fmt.Errorf("read position of %s: %w", target, err)
	} else if ok {
		if len(pos) != 8 {
			return fmt.Errorf("position of %s in the WAL is corrupt (%d bytes)", target, len(pos))
		}
		after = binary.BigEndian.Uint64(pos)
		slog.Info("resuming replay", "source", target, "after_seq", after)
	}
	msgs := make([]feed.Message, 0, batch)
	var last uint64
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		if err := wait(ctx, msgs); err != nil {
			return err
		}
		count(msgs)
		if err := w.Write(msgs, name, binary.BigEndian.AppendUint64(nil, last), nil); err != nil {
			return err
		}
		msgs = make([]feed.Message, 0, batch)
		return nil
	}
	err = export.ReadArchiveMessages(ctx, st, export.TimeRange{}, after, func(r wal.Record) error {
		msgs = append(msgs, r.Message)
		last = r.Seq
		if len(msgs) == batch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay archive %s: %w", target, err)
	}
	return flush()
}
