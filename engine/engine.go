package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/diskguard"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/store"
	"github.com/quotesdev/quotes/wal"
)

// Engine owns a data directory: its WAL, the pipeline over it and the sinks that follow it.
// Open it, feed it with Ingest or Replay (one at a time), query it through Pipeline or
// Backend, and Close it.
type Engine struct {
	opts     Options
	settings Settings
	log      *wal.Log
	p        *pipeline.Pipeline
	sinks    *sinks
	disk     *disk // nil without Options.MinFreeDisk

	// mu serialises appends (source batches, ticks, replay batches) with Close: once
	// closing is set nothing is appended.
	mu      sync.Mutex
	closing bool
	stopRun context.CancelFunc // stops the running Ingest or Replay; nil when none runs
	runDone chan struct{}      // closed when it has stopped

	// durable observes clock.Now() − ts of each ingested message once its WAL append
	// returned (nil without a Registerer).
	durable prometheus.Histogram

	token      string // of Options.Announce
	unannounce func()

	foreign atomic.Uint64 // messages dropped for another shard (shard.go)

	closeOnce sync.Once
	closeErr  error
}

// Open opens the data directory opts.Dir (creating it unless ReadOnly), recovers the
// pipeline from the WAL and starts the configured sinks.
func Open(opts Options) (*Engine, error) {
	opts.defaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		if st, err := os.Stat(opts.Dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%w at %s: run `quotes ingest` or `quotes replay` first, or pass --data", ErrNoDataDir, opts.Dir)
		}
	} else {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		// A full disk is one clear error here, not a crash inside Badger.
		if err := diskguard.CheckOpenStat(opts.Dir, opts.MinFreeDisk, opts.DiskStat); err != nil {
			return nil, err
		}
	}
	wopts := wal.DefaultOptions(filepath.Join(opts.Dir, "wal"))
	wopts.Sync = opts.Sync
	wopts.Logger = opts.Logger
	log, err := wal.Open(wopts)
	if err != nil {
		if isLockError(err) {
			if rp, ok := ReadRunning(opts.Dir); ok {
				return nil, fmt.Errorf("data directory %s is in use by `quotes %s` (pid %d%s): %w", opts.Dir, rp.Command, rp.PID, rp.httpNote(), ErrLocked)
			}
			return nil, fmt.Errorf("data directory %s is in use by another process: %w", opts.Dir, ErrLocked)
		}
		return nil, fmt.Errorf("open WAL in %s: %w", opts.Dir, err)
	}
	// Settings are checked once the lock is ours, so two processes cannot race on them.
	settings, err := settle(opts.Dir, opts.Settings, opts.UseStoredSettings || opts.ReadOnly, opts.ResetSettings)
	if err == nil {
		err = opts.settleShard()
	}
	if err != nil {
		log.Close()
		return nil, err
	}
	e := &Engine{opts: opts, settings: settings, log: log, unannounce: func() {}}
	if opts.Announce != nil {
		if e.token, e.unannounce, err = announce(opts.Dir, *opts.Announce, opts.Token); err != nil {
			log.Close()
			return nil, err
		}
	}
	e.sinks = &sinks{e: e}
	// The disk is watched from here on: a recovery that takes long (minutes of WAL after a
	// crash) still reports a low disk (quotes_disk_low). Appends and the live source it
	// holds back come after.
	if !opts.ReadOnly {
		if e.disk, err = e.startDisk(); err != nil {
			e.unannounce()
			log.Close()
			return nil, err
		}
	}
	popts := pipeline.DefaultOptions()
	popts.Aggregate.Grace = settings.Grace
	popts.Hot.Threshold = settings.HotThreshold
	popts.Hot.Window = settings.HotWindow
	popts.CheckpointEvery = opts.CheckpointEvery
	popts.CheckpointRecords = opts.CheckpointRecords
	if opts.WALRetention > 0 {
		popts.WALRetention = opts.WALRetention
	}
	popts.Logger = opts.Logger
	if opts.Registerer != nil {
		popts.Metrics = pipeline.NewMetrics(opts.Registerer)
	}
	popts.Consumers = e.sinks.needed
	popts.RecoveryProgress = opts.RecoveryProgress
	popts.TrimOutbox = e.trimOutbox
	if opts.CandleRetention > 0 {
		popts.CandleRetention = opts.CandleRetention
	}
	p, err := pipeline.Open(log, popts)
	if err != nil {
		e.disk.stop()
		e.unannounce()
		log.Close()
		return nil, fmt.Errorf("recover state in %s: %w", opts.Dir, err)
	}
	e.p = p
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(api.NewPipelineCollector(p))
		e.durable = newDurableLatency(opts.Registerer)
	}
	if !opts.ReadOnly {
		if err := e.sinks.start(); err != nil {
			e.disk.stop()
			p.Close()
			e.unannounce()
			log.Close()
			return nil, err
		}
	}
	return e, nil
}

// Dir returns the data directory.
func (e *Engine) Dir() string { return e.opts.Dir }

// Settings returns the settings in force (the recorded ones for a read-only engine).
func (e *Engine) Settings() Settings { return e.settings }

// Pipeline returns the pipeline, for queries.
func (e *Engine) Pipeline() *pipeline.Pipeline { return e.p }

// Store returns the embedded store.
func (e *Engine) Store() *store.Store { return e.p.Store() }

// Backend returns the HTTP API's view of the engine.
func (e *Engine) Backend() api.Backend { return api.PipelineBackend{P: e.p} }

// WALLastSeq returns the last sequence in the WAL.
func (e *Engine) WALLastSeq() uint64 { return e.log.LastSeq() }

// begin marks the start of an Ingest or Replay; the returned context ends with ctx or
// when Close begins.
func (e *Engine) begin(ctx context.Context) (context.Context, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closing:
		return nil, ErrClosed
	case e.opts.ReadOnly:
		return nil, errors.New("engine opened read-only")
	case e.stopRun != nil:
		return nil, errors.New("engine: an ingest or replay is already running")
	}
	ctx, e.stopRun = context.WithCancel(ctx)
	e.runDone = make(chan struct{})
	return ctx, nil
}

// end marks the end of the running Ingest or Replay.
func (e *Engine) end() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopRun()
	e.stopRun = nil
	close(e.runDone)
}

// appendLocked appends msgs and applies them, leaving the commit half to the pipeline's
// commit goroutine (pipeline.AppendAsync); e.mu must be held.
func (e *Engine) appendLocked(msgs []feed.Message) error {
	if e.closing {
		return ErrClosed
	}
	return e.p.AppendAsync(msgs)
}

// Close stops intake, flushes and checkpoints the pipeline, delivers to the sinks for at
// most Options.SinkTimeout, stops every goroutine the engine started and closes the WAL.
// What the sinks did not receive is delivered on the next Open; PendingError reports it.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closing = true
		stop, done := e.stopRun, e.runDone
		e.mu.Unlock()
		if stop != nil {
			stop()
			<-done
		}
		var errs []error
		if err := e.p.Close(); err != nil {
			errs = append(errs, fmt.Errorf("final flush: %w", err))
		}
		if err := e.sinks.stop(e.opts.SinkTimeout); err != nil {
			errs = append(errs, err)
		}
		e.disk.stop()
		e.unannounce()
		if err := e.log.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close WAL: %w", err))
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

// SinkStats returns the sinks' delivery statistics.
func (e *Engine) SinkStats() ([]export.ConsumerStats, *export.ArchiveStats) { return e.sinks.stats() }

// HasSinks reports whether a sink besides the embedded store runs.
func (e *Engine) HasSinks() bool { return e.sinks.active() }

func isLockError(err error) bool {
	return strings.Contains(err.Error(), "Cannot acquire directory lock") ||
		errors.Is(err, syscall.EWOULDBLOCK)
}

// sleep waits d on the engine's clock, or until ctx ends.
func (e *Engine) sleep(ctx context.Context, d time.Duration) error {
	t := e.opts.Clock.Timer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
