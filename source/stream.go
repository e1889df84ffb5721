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
	"github.com/coder/websocket"

	"github.com/quotesdev/quotes/feed"
)

// stream is one of the two partner streams: its connection loop and counters.
type stream struct {
	c             *Client
	name          string
	url           string
	isInstruments bool

	dec *feed.Decoder
	buf bytes.Buffer // frame buffer, reused

	connected atomic.Bool
	// lastActivity is the clock time (Unix ns) of the last frame, pong or consumer hand-off;
	// lastFrame of the last data frame or hand-off (for the snapshot end).
	lastActivity atomic.Int64
	lastFrame    atomic.Int64
	// busy is set while the reader waits to hand a message to the consumer.
	busy    atomic.Bool
	pinging atomic.Bool

	connects, connectFailures, disconnects, stalls, frames, accepted atomic.Uint64
}

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
		Frames:          s.frames.Load(),
		Accepted:        s.accepted.Load(),
	}
}

// run connects, reads, and reconnects with backoff until ctx is done.
func (s *stream) run(ctx context.Context) {
	attempt := 0
	for {
		healthy := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if healthy {
			attempt = 0
		}
		d := s.c.backoff(attempt)
		if !s.c.wait(ctx, s.name, attempt, d) {
			return
		}
		if attempt < 64 {
			attempt++
		}
	}
}

// session runs one connection from dial to its end. It reports whether the connection was
// healthy (accepted a message or lasted BackoffMax), which resets the backoff.
func (s *stream) session(ctx context.Context) (healthy bool) {
	c := s.c
	dctx, cancelDial := c.clk.WithTimeout(ctx, c.opts.ReadTimeout)
	conn, _, err := websocket.Dial(dctx, s.url, &websocket.DialOptions{HTTPClient: c.http})
	cancelDial()
	if err != nil {
		if ctx.Err() == nil {
			s.connectFailures.Add(1)
			c.connLog.log(slog.LevelWarn, "source: connect failed", "stream", s.name, "url", s.url, "err", err)
		}
		return false
	}
	// Frames up to 16×MaxFrame are discarded in place; beyond, coder/websocket closes.
	conn.SetReadLimit(16 * c.opts.MaxFrame)

	start := c.clk.Now()
	s.lastActivity.Store(start.UnixNano())
	s.lastFrame.Store(start.UnixNano())
	acceptedBefore := s.accepted.Load()

	cctx, cancel := context.WithCancel(ctx)
	var snap *clock.Timer
	if s.isInstruments {
		c.state.beginSnapshot()
		snap = c.clk.Timer(c.opts.SnapshotQuiet)
	}
	// Timers exist before the stream reports connected, so a test that waits for
	// Connected and then moves a mock clock is sure to hit them.
	ticker := c.clk.Ticker(max(c.opts.ReadTimeout/4, time.Millisecond))
	var stalled atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.watchdog(cctx, cancel, conn, ticker, snap, &stalled)
	}()
	s.connects.Add(1)
	s.connected.Store(true)
	c.connLog.log(slog.LevelInfo, "source: connected", "stream", s.name, "url", s.url)

	err = s.read(cctx, conn)

	s.connected.Store(false)
	cancel()
	_ = conn.CloseNow() // already closed in most cases; nothing to report
	wg.Wait()
	ticker.Stop()
	if s.isInstruments {
		c.state.abandonSnapshot() // no-op if it ended
	}
	if ctx.Err() == nil {
		s.disconnects.Add(1)
		if stalled.Load() {
			err = fmt.Errorf("stalled: no frame and no pong within %v", c.opts.ReadTimeout)
		}
		c.connLog.log(slog.LevelWarn, "source: disconnected", "stream", s.name, "err", err)
	}
	return s.accepted.Load() > acceptedBefore || c.clk.Since(start) >= c.opts.BackoffMax
}

// watchdog detects stalls (pinging when idle) and, on /instruments, ends the snapshot.
func (s *stream) watchdog(ctx context.Context, cancel context.CancelFunc, conn *websocket.Conn,
	ticker *clock.Ticker, snap *clock.Timer, stalled *atomic.Bool) {
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
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if s.busy.Load() {
				continue // waiting for the consumer is not a stall
			}
			idle := time.Duration(c.clk.Now().UnixNano() - s.lastActivity.Load())
			if idle >= timeout {
				stalled.Store(true)
				s.stalls.Add(1)
				cancel()
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
			d := c.finishSnapshot(ctx, s)
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
func (s *stream) read(ctx context.Context, conn *websocket.Conn) error {
	c := s.c
	maxFrame := c.opts.MaxFrame
	for {
		typ, r, err := conn.Reader(ctx)
		if err != nil {
			return fmt.Errorf("read %s frame: %w", s.name, err)
		}
		now := c.clk.Now().UnixNano()
		s.lastActivity.Store(now)
		s.lastFrame.Store(now)
		s.frames.Add(1)

		if typ != websocket.MessageText {
			n, err := io.Copy(io.Discard, r)
			if err != nil {
				return s.frameError(err, n, "binary frame")
			}
			c.reject(s.name, &feed.DecodeError{Reason: feed.ReasonBinaryFrame, Detail: strconv.FormatInt(n, 10) + " bytes"})
			continue
		}

		s.buf.Reset()
		n, err := s.buf.ReadFrom(io.LimitReader(r, maxFrame+1))
		if err == nil && n > maxFrame {
			var rest int64
			rest, err = io.Copy(io.Discard, r)
			n += rest
			if err == nil {
				c.reject(s.name, &feed.DecodeError{Reason: feed.ReasonOversized,
					Detail: fmt.Sprintf("frame of %d bytes exceeds %d", n, maxFrame)})
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
			c.reject(s.name, de)
			continue
		}
		m.TS = now
		s.busy.Store(true)
		err = c.accept(ctx, m)
		after := c.clk.Now().UnixNano()
		s.lastFrame.Store(after)
		s.lastActivity.Store(after)
		s.busy.Store(false)
		if err != nil {
			return fmt.Errorf("queue %s message: %w", s.name, err)
		}
		s.accepted.Add(1)
	}
}

// frameError handles a failure while reading the body of a frame: a frame beyond the
// connection's read limit is counted as oversized; either way the connection is over.
func (s *stream) frameError(err error, n int64, what string) error {
	if errors.Is(err, websocket.ErrMessageTooBig) {
		s.c.reject(s.name, &feed.DecodeError{Reason: feed.ReasonOversized,
			Detail: fmt.Sprintf("%s over the connection limit of %d bytes (closing)", what, 16*s.c.opts.MaxFrame)})
	}
	return fmt.Errorf("read %s %s (%d bytes read): %w", s.name, what, n, err)
}
