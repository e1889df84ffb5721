package simulator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/feed"
)

// recordBufSize is the write buffer of recordings.
const recordBufSize = 4 << 20

// flushEvery is how often a paced recording is flushed to its writer, in clock time.
const flushEvery = 200 * time.Millisecond

// Record writes the feed of opts to w as recorded JSONL (SPEC §3): first the initial ADD of
// every instrument at opts.Start, then every message with a timestamp before Start+Duration.
// The timestamps are the model's virtual times, so the same Options always give a
// byte-identical recording, whatever the speed.
//
// With opts.Speed == SpeedMax it writes as fast as it can and needs a Duration; otherwise it
// paces the messages by clk (nil: the wall clock) at opts.Speed and a Duration of 0 records
// until ctx is done. It returns what it wrote; on ctx cancellation the buffered lines are
// flushed and the error wraps ctx.Err().
func Record(ctx context.Context, w io.Writer, opts Options, clk clock.Clock) (Stats, error) {
	if opts.Speed == SpeedMax && opts.Duration == 0 {
		return Stats{}, errors.New("simulator: Duration 0 (forever) cannot be recorded at SpeedMax")
	}
	model, err := NewModel(opts)
	if err != nil {
		return Stats{}, err
	}
	if clk == nil {
		clk = clock.New()
	}
	rec := newRecorder(w, clk)
	var stats Stats
	err = drive(ctx, model, opts, clk, func(m *feed.Message, reused bool) error {
		stats.count(m, reused)
		return rec.write(m)
	}, rec.idle, nil)
	if ferr := rec.flush(); err == nil {
		err = ferr
	}
	return stats, err
}

// recorder writes recorded lines through a large buffer.
type recorder struct {
	w         *bufio.Writer
	line      []byte
	clk       clock.Clock
	lastFlush time.Time
}

func newRecorder(w io.Writer, clk clock.Clock) *recorder {
	return &recorder{w: bufio.NewWriterSize(w, recordBufSize), line: make([]byte, 0, 256), clk: clk, lastFlush: clk.Now()}
}

func (r *recorder) write(m *feed.Message) error {
	r.line = feed.AppendRecordingLine(r.line[:0], m)
	if _, err := r.w.Write(r.line); err != nil {
		return fmt.Errorf("simulator: write recording: %w", err)
	}
	return nil
}

// idle is called before a paced run sleeps: it flushes at most every flushEvery, so that a
// real-time recording stays current on disk without a write per message.
func (r *recorder) idle() error {
	if now := r.clk.Now(); now.Sub(r.lastFlush) >= flushEvery {
		r.lastFlush = now
		return r.flush()
	}
	return nil
}

func (r *recorder) flush() error {
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("simulator: flush recording: %w", err)
	}
	return nil
}

// drive runs model from its start until Start+Duration (or forever when Duration is 0),
// calling emit for each message in order. With a real speed, each message is emitted when its
// virtual time is due on clk, and idle is called before every wait; at SpeedMax nothing
// waits. A paced run with a Duration returns only when the end of the duration is due.
// It returns nil at the end, ctx.Err() wrapped when ctx is done, or the first error of emit
// or idle.
func drive(ctx context.Context, model *Model, opts Options, clk clock.Clock,
	emit func(m *feed.Message, reused bool) error, idle func() error, skipped func(m *feed.Message)) error {
	start := opts.Start.UnixNano()
	end := int64(math.MaxInt64)
	if opts.Duration > 0 {
		end = start + int64(opts.Duration)
	}
	from := start + int64(opts.Skip)
	p := pacer{clk: clk, speed: opts.Speed, start: from, wall0: clk.Now()}
	p.now = p.wall0
	var m feed.Message // outside the loop: &m escapes to emit, allocate it once
	for i := 0; ; i++ {
		m = model.Next()
		if m.TS >= end {
			break
		}
		if m.TS < from { // Options.Skip: generated, not sent
			if i&4095 == 0 && ctx.Err() != nil {
				return fmt.Errorf("simulator: feed stopped: %w", ctx.Err())
			}
			if skipped != nil {
				skipped(&m)
			}
			continue
		}
		if p.speed == SpeedMax {
			if i&4095 == 0 && ctx.Err() != nil {
				return fmt.Errorf("simulator: feed stopped: %w", ctx.Err())
			}
		} else if err := p.wait(ctx, m.TS, idle); err != nil {
			return err
		}
		if err := emit(&m, model.LastReused()); err != nil {
			return err
		}
	}
	if p.speed != SpeedMax {
		return p.wait(ctx, end, idle)
	}
	return nil
}

// timerSlack is how late a pacing timer may fire because the clock moved while it was
// set; a later one is set again.
const timerSlack = 100 * time.Microsecond

// pacer maps virtual time to clock time: virtual start+d is due at wall0 + d/speed.
type pacer struct {
	clk   clock.Clock
	speed float64
	start int64     // virtual start, Unix ns
	wall0 time.Time // clock time of the virtual start
	now   time.Time // last clock reading
}

// wait returns when virtual time ts is due, calling idle first if it has to sleep.
func (p *pacer) wait(ctx context.Context, ts int64, idle func() error) error {
	target := p.wall0.Add(time.Duration(float64(ts-p.start) / p.speed))
	if !target.After(p.now) {
		return nil
	}
	p.now = p.clk.Now()
	if !target.After(p.now) {
		if ctx.Err() != nil {
			return fmt.Errorf("simulator: feed stopped: %w", ctx.Err())
		}
		return nil
	}
	if err := idle(); err != nil {
		return err
	}
	for {
		d := target.Sub(p.now)
		if d <= 0 {
			return nil
		}
		t := p.clk.Timer(d)
		// The clock may have moved on while the timer was set (a mock clock advanced by
		// another goroutine, a busy machine): then the timer may be due up to that much
		// later than target, or target may have passed. Set it again from the new time
		// when that lateness matters. A real clock always moves a little between two
		// readings, so a strict comparison here would spin instead of sleeping.
		if now := p.clk.Now(); now.Sub(p.now) > timerSlack {
			t.Stop()
			p.now = now
			if ctx.Err() != nil {
				return fmt.Errorf("simulator: feed stopped: %w", ctx.Err())
			}
			continue
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("simulator: feed stopped: %w", ctx.Err())
		case <-t.C:
		}
		p.now = p.clk.Now()
	}
}
