package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
)

// LiveSource is a live partner connection (source.Client): Run delivers batches of
// messages, stamped with their arrival time, until ctx ends, and returns only when it will
// deliver no more. A batch whose deliver call fails was not acknowledged.
type LiveSource interface {
	Run(ctx context.Context, deliver func([]feed.Message) error) error
}

// IngestOptions configure Ingest.
type IngestOptions struct {
	// Record, if set, receives every message that arrives as JSONL (SPEC §3), each batch
	// after its WAL append, flushed with it: a kill -9 loses at most the batch in flight
	// from the recording (the WAL, not the recording, is the complete log).
	Record io.Writer
	// Started, if set, is called once the source and the tick loop run.
	Started func()
}

// Ingest appends what src delivers to the WAL and applies it, and writes a tick record
// whenever a minute is due to close (minute end + grace, aligned to the clock; after a
// stall one tick closes everything that became due). It runs until ctx ends or either
// loop fails, and returns only after both stopped: nothing is appended after it returns.
// A canceled ctx is a clean stop (nil error).
func (e *Engine) Ingest(ctx context.Context, src LiveSource, opts IngestOptions) error {
	ctx, err := e.begin(ctx)
	if err != nil {
		return err
	}
	defer e.end()
	var rec *feed.RecordingWriter
	if opts.Record != nil {
		rec = feed.NewRecordingWriter(opts.Record)
	}
	in := &ingestion{e: e, rec: rec, ctx: ctx}
	if p, ok := src.(Pauser); ok {
		e.disk.attach(p)
		defer e.disk.attach(nil)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- in.tickLoop(ctx) }()
	go func() { errs <- src.Run(ctx, in.deliver) }()
	if opts.Started != nil {
		opts.Started()
	}
	// The first loop to end stops the other; both are waited for.
	err = <-errs
	cancel()
	if err2 := <-errs; err == nil || errors.Is(err, context.Canceled) {
		err = err2
	}
	if rec != nil {
		if ferr := rec.Flush(); ferr != nil {
			e.opts.Logger.Error("record", "err", ferr)
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// ingestion is one Ingest run.
type ingestion struct {
	e   *Engine
	rec *feed.RecordingWriter
	ctx context.Context // the run's: waiting for disk space ends with it
}

// deliver appends a batch from the source; it fails with ErrClosed once Close began. While
// disk space is low it waits (the source is paused meanwhile, so little is queued).
func (in *ingestion) deliver(batch []feed.Message) error {
	e := in.e
	if in.ctx != nil {
		if err := e.disk.wait(in.ctx); err != nil {
			return err
		}
	}
	batch = e.keepShard(batch)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.appendLocked(batch); err != nil {
		return err
	}
	if e.durable != nil {
		now := e.opts.Clock.Now().UnixNano()
		for i := range batch {
			e.durable.Observe(float64(now-batch[i].TS) / 1e9)
		}
	}
	if in.rec != nil {
		// Written after the WAL append and flushed with every batch: a kill -9 loses at most
		// the batch in flight from the recording (the WAL has it).
		for i := range batch {
			if err := in.rec.Write(&batch[i]); err != nil {
				e.opts.Logger.Error("record", "err", err)
				break
			}
		}
		if err := in.rec.Flush(); err != nil {
			e.opts.Logger.Error("record", "err", err)
		}
	}
	return nil
}

// tickLoop writes a tick when each minute is due to close (minute end + grace), aligned to
// the clock. After a stall it ticks once with the current time, which closes every minute
// that became due meanwhile.
func (in *ingestion) tickLoop(ctx context.Context) error {
	e := in.e
	grace := e.settings.Grace
	for {
		now := e.opts.Clock.Now()
		due := time.Unix(0, aggregate.MinuteOf(now.UnixNano())+int64(grace)+int64(time.Millisecond))
		for !due.After(now) {
			due = due.Add(time.Minute)
		}
		if err := e.sleep(ctx, due.Sub(now)); err != nil {
			return nil
		}
		if err := in.tick(); err != nil {
			return err
		}
	}
}

func (in *ingestion) tick() error {
	e := in.e
	if in.ctx != nil {
		if err := e.disk.wait(in.ctx); err != nil {
			return nil // stopped while waiting for space
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return ErrClosed
	}
	if err := e.p.TickAsync(feed.ArrivalTime(e.opts.Clock.Now())); err != nil {
		return fmt.Errorf("tick: %w", err)
	}
	if in.rec != nil {
		if err := in.rec.Flush(); err != nil {
			e.opts.Logger.Error("record", "err", err)
		}
	}
	return nil
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
