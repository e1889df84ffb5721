package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/quotesdev/quotes/feed"
)

// stream is one of the two partner streams: its connection loop and counters.
type stream struct {
	c             *Client
	name          string
	url           string
	isInstruments bool

	dec *feed.Decoder
	buf bytes.Buffer     // frame buffer, reused
	lim io.LimitedReader // the frame's reader, limited to MaxFrame+1; reused (io.LimitReader allocates)

	connected atomic.Bool
	// lastActivity is the clock time (Unix ns) of the last frame, pong or consumer hand-off;
	// lastFrame of the last data frame or hand-off (for the snapshot end).
	lastActivity atomic.Int64
	lastFrame    atomic.Int64
	// busy is set while the reader waits to hand a message to the consumer.
	busy    atomic.Bool
	pinging atomic.Bool

	connects, connectFailures, disconnects, stalls, throttled, frames, accepted atomic.Uint64
	// backoff is the current or last reconnect delay (ns).
	backoff atomic.Int64
}

// errThrottled ends a connection that sent more rejected frames than its budget.
var errThrottled = errors.New("too many rejected frames: throttled")

// sessionEnd is how a connection ended, for the backoff.
type sessionEnd int

const (
	endFailed  sessionEnd = iota // failed early: the backoff grows
	endHealthy                   // stayed up for HealthyAfter: the backoff starts over
	endPaused                    // closed by Pause: reconnect at once after Resume
)

func newStream(c *Client, name, url string, isInstruments bool) *stream {
	return &stream{
		c: c, name: name, url: url, isInstruments: isInstruments,
		dec: &feed.Decoder{MaxSize: int(c.opts.MaxFrame)},
	}
}

func (s *stream) stats() StreamStats {
	return StreamStats{
		Connected:       s.connected.Load(),
		Connects:        s.connects.Load(),
		ConnectFailures: s.connectFailures.Load(),
		Disconnects:     s.disconnects.Load(),
		Stalls:          s.stalls.Load(),
		Throttled:       s.throttled.Load(),
		Backoff:         time.Duration(s.backoff.Load()),
		Frames:          s.frames.Load(),
		Accepted:        s.accepted.Load(),
	}
}

// run connects, reads, and reconnects with backoff until ctx is done; while the client is
// paused it waits.
func (s *stream) run(ctx context.Context) {
	bo := s.c.newBackoff()
	for {
		if !s.c.waitResumed(ctx) {
			return
		}
		end := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		switch end {
		case endPaused:
			continue
		case endHealthy:
			bo.Reset()
		}
		attempt := bo.Attempt()
		d := bo.Next()
		s.backoff.Store(int64(d))
		if !s.c.wait(ctx, s.name, attempt, d) {
			return
		}
	}
}

// session runs one connection from dial to its end and reports how it ended.
func (s *stream) session(ctx context.Context) sessionEnd {
	c := s.c
	_, pausedCh := c.pause.state()
	dctx, cancelDial := context.WithCancel(ctx)
	dt := c.clk.AfterFunc(c.opts.ReadTimeout, cancelDial) // not clk.WithTimeout: see watchdog
	conn, err := dialWS(dctx, c.dialer, s.url)
	dt.Stop()
	cancelDial()
	if err != nil {
		if ctx.Err() == nil {
			s.connectFailures.Add(1)
			c.connLog.log(slog.LevelWarn, "source: connect failed", "stream", s.name, "url", s.url, "err", err)
		}
		return endFailed
	}
	// Frames up to 16×MaxFrame are discarded in place; beyond, gorilla/websocket closes.
	conn.SetReadLimit(16 * c.opts.MaxFrame)

	start := c.clk.Now()
	s.lastActivity.Store(start.UnixNano())
	s.lastFrame.Store(start.UnixNano())

	cctx, cancel := context.WithCancel(ctx)
	var snap *clock.Timer
	if s.isInstruments {
		c.state.beginSnapshot()
		snap = c.clk.Timer(c.opts.SnapshotQuiet)
	}
	// Timers exist before the stream reports connected, so a test that waits for
	// Connected and then moves a mock clock is sure to hit them.
	ticker := c.clk.Ticker(max(c.opts.ReadTimeout/4, time.Millisecond))
	var stalled, paused atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.watchdog(cctx, cancel, conn, ticker, snap, pausedCh, &stalled, &paused)
	}()
	s.connects.Add(1)
	s.connected.Store(true)
	c.connLog.log(slog.LevelInfo, "source: connected", "stream", s.name, "url", s.url)

	// The reads take no context: closing the connection when the session ends ends a
	// blocked read.
	stopClose := context.AfterFunc(cctx, func() { _ = conn.CloseNow() })
	err = s.read(cctx, conn)
	stopClose()

	s.connected.Store(false)
	cancel()
	_ = conn.CloseNow() // already closed in most cases; nothing to report
	wg.Wait()
	ticker.Stop()
	if s.isInstruments {
		c.state.abandonSnapshot() // no-op if it settled
	}
	if ctx.Err() != nil {
		return endFailed
	}
	if paused.Load() {
		return endPaused
	}
	s.disconnects.Add(1)
	if stalled.Load() {
		err = fmt.Errorf("stalled: no frame and no pong within %v", c.opts.ReadTimeout)
	}
	c.connLog.log(slog.LevelWarn, "source: disconnected", "stream", s.name, "err", err,
		"up", c.clk.Since(start).String())
	if errors.Is(err, errThrottled) || c.clk.Since(start) < c.opts.HealthyAfter {
		return endFailed
	}
	return endHealthy
}

// watchdog detects stalls (pinging when idle), ends the connection on Pause, and, on
// /instruments, settles the snapshot.
func (s *stream) watchdog(ctx context.Context, cancel context.CancelFunc, conn *wsConn,
	ticker *clock.Ticker, snap *clock.Timer, pausedCh <-chan struct{}, stalled, paused *atomic.Bool) {
	c := s.c
	var pings sync.WaitGroup
	defer pings.Wait()
	var snapC <-chan time.Time
	if snap != nil {
		snapC = snap.C
	}
	defer func() {
		if snap != nil {
			snap.Stop()
		}
	}()
	timeout := c.opts.ReadTimeout
	stall := func() {
		stalled.Store(true)
		s.stalls.Add(1)
		cancel()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-pausedCh:
			paused.Store(true)
			cancel()
			return
		case <-ticker.C:
			if s.busy.Load() {
				continue // waiting for the consumer is not a stall
			}
			idle := time.Duration(c.clk.Now().UnixNano() - s.lastActivity.Load())
			if idle >= timeout {
				stall()
				return
			}
			if idle >= timeout/2 && s.pinging.CompareAndSwap(false, true) {
				pings.Add(1)
				go func() {
					defer pings.Done()
					defer s.pinging.Store(false)
					if conn.Ping(ctx) == nil {
						s.lastActivity.Store(c.clk.Now().UnixNano())
					}
				}()
			}
			if c.hooks.tick != nil {
				c.hooks.tick(s.name)
			}
		case <-snapC:
			snap.Stop()
			snap, snapC = nil, nil
			d, mark, ready := c.checkSnapshot(s)
			if ready {
				// Rule 3: the partner must answer a ping before its quiet counts.
				// (A clock timer cancels a plain context: the mock clock's own contexts
				// are not safe for concurrent use of Err.)
				pctx, pcancel := context.WithCancel(ctx)
				pt := c.clk.AfterFunc(timeout, pcancel)
				err := conn.Ping(pctx)
				pt.Stop()
				pcancel()
				switch {
				case ctx.Err() != nil:
					return
				case err == nil:
					s.lastActivity.Store(c.clk.Now().UnixNano())
					d = c.settleSnapshot(ctx, s, mark)
				case s.lastFrame.Load() != mark:
					d = c.opts.SnapshotQuiet // frames came (the pong waited behind them): start over
				default:
					stall()
					return
				}
			}
			if d > 0 {
				snap = c.clk.Timer(d)
				snapC = snap.C
			}
			if c.hooks.snapshot != nil {
				c.hooks.snapshot(d)
			}
		}
	}
}

// read reads frames until the connection fails or ctx is done.
func (s *stream) read(ctx context.Context, conn *wsConn) error {
	c := s.c
	maxFrame := c.opts.MaxFrame
	budget := rate.NewLimiter(rate.Limit(c.opts.RejectRate), c.opts.RejectBurst)
	reject := func(de *feed.DecodeError) error {
		c.reject(s.name, de)
		if !budget.AllowN(c.clk.Now(), 1) {
			s.throttled.Add(1)
			return fmt.Errorf("read %s: %w (more than %d, then %v per second)", s.name, errThrottled, c.opts.RejectBurst, c.opts.RejectRate)
		}
		return nil
	}
	for {
		typ, r, err := conn.NextReader()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err() // the session ended and closed the connection
			} else if errors.Is(err, websocket.ErrReadLimit) {
				s.frames.Add(1) // a frame whose header announced too much
				return s.frameError(err, 0, "text frame")
			}
			return fmt.Errorf("read %s frame: %w", s.name, err)
		}
		now := c.clk.Now().UnixNano()
		s.lastActivity.Store(now)
		s.lastFrame.Store(now)
		s.frames.Add(1)

		if typ != websocket.TextMessage {
			n, err := io.Copy(io.Discard, r)
			if err != nil {
				return s.frameError(err, n, "binary frame")
			}
			if err := reject(&feed.DecodeError{Reason: feed.ReasonBinaryFrame, Detail: strconv.FormatInt(n, 10) + " bytes"}); err != nil {
				return err
			}
			continue
		}

		s.buf.Reset()
		s.lim = io.LimitedReader{R: r, N: maxFrame + 1}
		n, err := s.buf.ReadFrom(&s.lim)
		if err == nil && n > maxFrame {
			var rest int64
			rest, err = io.Copy(io.Discard, r)
			n += rest
			if err == nil {
				if err := reject(&feed.DecodeError{Reason: feed.ReasonOversized,
					Detail: fmt.Sprintf("frame of %d bytes exceeds %d", n, maxFrame)}); err != nil {
					return err
				}
				continue
			}
		}
		if err != nil {
			return s.frameError(err, n, "text frame")
		}

		var m feed.Message
		if err := s.dec.Decode(s.buf.Bytes(), &m); err != nil {
			var de *feed.DecodeError
			if !errors.As(err, &de) {
				de = &feed.DecodeError{Reason: feed.ReasonMalformedJSON, Detail: err.Error()}
			}
			if err := reject(de); err != nil {
				return err
			}
			continue
		}
		m.TS = feed.ArrivalTime(time.Unix(0, now))
		s.busy.Store(true)
		queued, err := c.accept(ctx, m)
		after := c.clk.Now().UnixNano()
		s.lastFrame.Store(after)
		s.lastActivity.Store(after)
		s.busy.Store(false)
		if err != nil {
			return fmt.Errorf("queue %s message: %w", s.name, err)
		}
		if queued {
			s.accepted.Add(1)
		}
	}
}

// frameError handles a failure while reading the body of a frame: a frame beyond the
// connection's read limit is counted as oversized; either way the connection is over.
func (s *stream) frameError(err error, n int64, what string) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		s.c.reject(s.name, &feed.DecodeError{Reason: feed.ReasonOversized,
			Detail: fmt.Sprintf("%s over the connection limit of %d bytes (closing)", what, 16*s.c.opts.MaxFrame)})
	}
	return fmt.Errorf("read %s %s (%d bytes read): %w", s.name, what, n, err)
}
