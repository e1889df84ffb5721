package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/record"
)

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// Speed paces event time against the clock: 1 as recorded, 10 ten times faster; 0 as
	// fast as possible.
	Speed float64
	// Batch is the number of messages per WAL append (default 32768).
	Batch int
	// Progress, if set, is called after each batch with the units of Source.Size it covered.
	Progress func(n int64)
	// KeepRejects is how many rejected lines ReplayStats.FirstRejects keeps (default 5).
	KeepRejects int
}

// ReplayStats is what a Replay did.
type ReplayStats struct {
	Messages, Quotes, InstrumentEvents, Ticks uint64
	// Foreign counts the messages dropped because another shard owns their ISIN
	// (Options.Shard); they are not in Messages.
	Foreign uint64
	// Rejects counts rejected lines by reason; FirstRejects keeps the first few, with
	// their source and line number.
	Rejects      map[feed.Reason]uint64
	FirstRejects []Reject
	// Resumed counts the sources that continued after a recorded position.
	Resumed int
	// Before and After are the aggregator's counters around the replay; HotEvents the hot
	// events it derived.
	Before, After aggregate.Stats
	HotEvents     uint64
	Elapsed       time.Duration
}

// Reject is one rejected line.
type Reject struct {
	Source string
	*feed.DecodeError
}

// Rejected returns the number of rejected lines.
func (s *ReplayStats) Rejected() uint64 {
	var n uint64
	for _, c := range s.Rejects {
		n += c
	}
	return n
}

func (s *ReplayStats) count(msgs []feed.Message) {
	for i := range msgs {
		s.Messages++
		switch msgs[i].Kind {
		case feed.KindQuote:
			s.Quotes++
		case record.KindTick:
			s.Ticks++
		default:
			s.InstrumentEvents++
		}
	}
}

// Replay runs srcs, in order, through the pipeline: each batch is appended to the WAL with
// the source's position (so a re-run resumes after the last durable batch), aggregated and
// checked for hot moves; at the end every open minute is closed and flushed. If ctx ends
// first, Replay stops at a batch boundary: what was handed to the pipeline is appended,
// nothing after it, and it returns ctx's error with the stats so far.
func (e *Engine) Replay(ctx context.Context, srcs []Source, opts ReplayOptions) (*ReplayStats, error) {
	if opts.Batch <= 0 {
		opts.Batch = 32768
	}
	if opts.KeepRejects <= 0 {
		opts.KeepRejects = 5
	}
	ctx, err := e.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer e.end()
	st := &ReplayStats{Rejects: map[feed.Reason]uint64{}, Before: e.p.Stats()}
	hotBefore := e.p.HotEventsDerived()
	start := e.opts.Clock.Now()
	pacer := newPacer(e.opts.Clock, opts.Speed)
	w := e.p.NewWriter(8)
	for _, s := range srcs {
		if err = e.replaySource(ctx, w, s, st, pacer, opts); err != nil {
			break
		}
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = e.p.Finish()
	}
	st.After = e.p.Stats()
	st.HotEvents = e.p.HotEventsDerived() - hotBefore
	st.Elapsed = e.opts.Clock.Since(start)
	return st, err
}

// replaySource runs one source from its recorded position.
func (e *Engine) replaySource(ctx context.Context, w *pipeline.Writer, s Source, st *ReplayStats, pacer *pacer, opts ReplayOptions) error {
	key := s.Key()
	pos, ok, err := e.log.SourcePosition(key)
	if err != nil {
		return fmt.Errorf("read position of %s: %w", s, err)
	}
	if !ok {
		if fs, isFile := s.(*FileSource); isFile {
			// positions of older versions were keyed by the absolute path
			if pos, ok, err = e.log.SourcePosition(fs.legacyKey); err != nil {
				return fmt.Errorf("read position of %s: %w", s, err)
			}
		}
	}
	if ok {
		st.Resumed++
		e.opts.Logger.Info("resuming replay", "source", s.String(), "key", key)
	} else {
		pos = nil
	}
	return s.Read(ctx, pos, opts.Batch, pacer.span(), func(b *Batch) error {
		for _, r := range b.Rejects {
			st.Rejects[r.Reason]++
			if len(st.FirstRejects) < opts.KeepRejects {
				st.FirstRejects = append(st.FirstRejects, Reject{Source: s.String(), DecodeError: r})
			}
			e.opts.Logger.Debug("rejected line", "source", s.String(), "err", r)
		}
		n := len(b.Msgs)
		b.Msgs = e.keepShard(b.Msgs)
		st.Foreign += uint64(n - len(b.Msgs))
		if err := pacer.wait(ctx, b.Msgs); err != nil {
			if b.Release != nil {
				b.Release()
			}
			return err
		}
		if len(b.Msgs) == 0 && len(b.Rejects) == 0 && b.Progress == 0 {
			if b.Release != nil {
				b.Release()
			}
			return nil
		}
		if err := e.disk.wait(ctx); err != nil {
			if b.Release != nil {
				b.Release()
			}
			return err
		}
		st.count(b.Msgs)
		if opts.Progress != nil {
			opts.Progress(b.Progress)
		}
		return w.Write(b.Msgs, key, b.Pos, b.Release)
	})
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
