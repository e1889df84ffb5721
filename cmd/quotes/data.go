package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

// dataOptions are the flags that open a data directory and configure the pipeline over it:
// shared by ingest, replay, serve, query and backfill.
type dataOptions struct {
	dir          string
	sync         string
	grace        time.Duration
	hotThreshold hot.Threshold
	hotWindow    time.Duration
	checkpoint   time.Duration
	walRetention time.Duration
	// metrics, if set by the command, receives the pipeline's timings.
	metrics *pipeline.Metrics
	// consumers, if set by the command, returns the lowest WAL sequence its sinks still
	// need (sinkOptions.retention): WAL retention keeps it.
	consumers func() uint64
}

func (o *dataOptions) bindDir(f *pflag.FlagSet) {
	f.StringVar(&o.dir, "data", "./data", "data directory (WAL and embedded store)")
}

// bindPipeline binds the flags that change what is derived; they must be the same for every
// command run on one data directory.
func (o *dataOptions) bindPipeline(f *pflag.FlagSet) {
	o.hotThreshold = hot.DefaultThreshold()
	f.StringVar(&o.sync, "sync", "batch", "WAL durability: always (fsync before each ack), batch (group fsync every few ms), none (OS page cache)")
	f.DurationVar(&o.grace, "grace", aggregate.DefaultGrace, "how long a quote for an inactive ISIN waits for its ADD; minutes also stay open this long")
	f.Var(&o.hotThreshold, "hot-threshold", "hot when the move against the reference price exceeds this many percent")
	f.DurationVar(&o.hotWindow, "hot-window", 5*time.Minute, "the reference price is the latest one at or before this long ago")
	f.DurationVar(&o.checkpoint, "checkpoint-every", 5*time.Minute, "event time between state checkpoints (shorter: faster restart, more writes)")
	f.DurationVar(&o.walRetention, "wal-retention", 24*time.Hour, "keep WAL records this long (event time) for backfill --source wal and replay DATA_DIR, besides what sinks need")
}

// validate checks the pipeline flags; it returns usage errors.
func (o *dataOptions) validate() error {
	if o.dir == "" {
		return usagef("--data must not be empty")
	}
	if o.sync != "" {
		if _, err := wal.ParseSyncMode(o.sync); err != nil {
			return usagef("--sync %q: want always, batch or none", o.sync)
		}
	}
	if o.grace < 0 {
		return usagef("--grace %s: must not be negative", o.grace)
	}
	if o.walRetention < 0 {
		return usagef("--wal-retention %s: must be positive", o.walRetention)
	}
	if o.hotWindow < 0 {
		return usagef("--hot-window %s: must be positive", o.hotWindow)
	}
	return nil
}

func (o *dataOptions) pipelineOptions(logger *slog.Logger) pipeline.Options {
	opts := pipeline.DefaultOptions()
	opts.Aggregate.Grace = o.grace
	if !o.hotThreshold.IsZero() {
		opts.Hot.Threshold = o.hotThreshold
	}
	if o.hotWindow > 0 {
		opts.Hot.Window = o.hotWindow
	}
	if o.checkpoint > 0 {
		opts.CheckpointEvery = o.checkpoint
	}
	if o.walRetention > 0 {
		opts.WALRetention = o.walRetention
	}
	opts.Logger = logger
	opts.Metrics = o.metrics
	if c := o.consumers; c != nil {
		if prev := opts.Consumers; prev != nil {
			opts.Consumers = func() uint64 { return min(prev(), c()) }
		} else {
			opts.Consumers = c
		}
	}
	return opts
}

// openData opens the WAL under --data and recovers the pipeline over it. When another
// process holds the directory, the error says which (see runningProcess).
func (o *dataOptions) open(logger *slog.Logger) (*wal.Log, *pipeline.Pipeline, error) {
	if err := o.validate(); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create data directory: %w", err)
	}
	wopts := wal.DefaultOptions(filepath.Join(o.dir, "wal"))
	if o.sync != "" {
		wopts.Sync, _ = wal.ParseSyncMode(o.sync)
	}
	wopts.Logger = logger
	log, err := wal.Open(wopts)
	if err != nil {
		if isLockError(err) {
			if rp, ok := readRunning(o.dir); ok {
				return nil, nil, fmt.Errorf("data directory %s is in use by `quotes %s` (pid %d%s): %w", o.dir, rp.Command, rp.PID, rp.httpNote(), errDataLocked)
			}
			return nil, nil, fmt.Errorf("data directory %s is in use by another process: %w", o.dir, errDataLocked)
		}
		return nil, nil, fmt.Errorf("open WAL in %s: %w", o.dir, err)
	}
	p, err := pipeline.Open(log, o.pipelineOptions(logger))
	if err != nil {
		log.Close()
		return nil, nil, fmt.Errorf("recover state in %s: %w", o.dir, err)
	}
	return log, p, nil
}

// errDataLocked means another process holds the data directory.
var errDataLocked = errors.New("data directory locked")

func isLockError(err error) bool {
	return strings.Contains(err.Error(), "Cannot acquire directory lock") ||
		errors.Is(err, syscall.EWOULDBLOCK)
}

// runningProcess is what a process holding a data directory writes to <data>/running.json
// so that `query` and `serve` can find it and ask it over HTTP instead of failing on
// Badger's directory lock.
type runningProcess struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
	HTTP    string `json:"http,omitempty"`
}

func (rp runningProcess) httpNote() string {
	if rp.HTTP == "" {
		return ", no HTTP API"
	}
	return ", HTTP API on " + rp.HTTP
}

func runningPath(dir string) string { return filepath.Join(dir, "running.json") }

// writeRunning records this process in dir; the returned func removes the record.
func writeRunning(dir string, rp runningProcess) (func(), error) {
	b, _ := json.Marshal(rp)
	tmp := runningPath(dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, runningPath(dir)); err != nil {
		return nil, fmt.Errorf("write %s: %w", runningPath(dir), err)
	}
	return func() { os.Remove(runningPath(dir)) }, nil
}

// readRunning returns the process recorded in dir if it is still alive.
func readRunning(dir string) (runningProcess, bool) {
	var rp runningProcess
	b, err := os.ReadFile(runningPath(dir))
	if err != nil || json.Unmarshal(b, &rp) != nil || rp.PID <= 0 {
		return rp, false
	}
	if err := syscall.Kill(rp.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return rp, false
	}
	return rp, true
}

func dirExists(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && st.IsDir()
}
