package source

import (
	"context"
	"sync"
	"sync/atomic"
)

// gate is the pause state of a Client: while paused, streams do not connect, and connected
// streams end their connection.
type gate struct {
	mu     sync.Mutex
	reason string
	// resumed is closed while not paused; paused is closed while paused. Each is replaced
	// by a fresh open channel when the state flips the other way.
	resumedCh, pausedCh chan struct{}
	paused              atomic.Bool
}

func (g *gate) init() {
	g.resumedCh = make(chan struct{})
	close(g.resumedCh)
	g.pausedCh = make(chan struct{})
}

// state returns the channels to wait on: closed resumed means running, closed paused means
// paused.
func (g *gate) state() (resumed, paused <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.resumedCh, g.pausedCh
}

// Pause closes both partner connections and keeps them closed until Resume; reason is
// logged. Messages already queued are still delivered. Pausing a paused client only updates
// the reason. Safe for concurrent use, before or during Run.
func (c *Client) Pause(reason string) {
	g := &c.pause
	g.mu.Lock()
	g.reason = reason
	if g.paused.Load() {
		g.mu.Unlock()
		return
	}
	g.paused.Store(true)
	g.resumedCh = make(chan struct{})
	close(g.pausedCh)
	g.mu.Unlock()
	c.opts.Logger.Warn("source: input paused: partner connections closed until resumed", "reason", reason)
}

// Resume lets the streams connect again after Pause (at once, without backoff). Resuming a
// running client does nothing.
func (c *Client) Resume() {
	g := &c.pause
	g.mu.Lock()
	if !g.paused.Load() {
		g.mu.Unlock()
		return
	}
	g.paused.Store(false)
	g.pausedCh = make(chan struct{})
	close(g.resumedCh)
	reason := g.reason
	g.reason = ""
	g.mu.Unlock()
	c.opts.Logger.Info("source: input resumed", "was", reason)
}

// Paused reports whether the client is paused, and why.
func (c *Client) Paused() (bool, string) {
	g := &c.pause
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused.Load(), g.reason
}

// waitResumed blocks while the client is paused; false if ctx ended first.
func (c *Client) waitResumed(ctx context.Context) bool {
	resumed, _ := c.pause.state()
	select {
	case <-resumed:
		return true
	case <-ctx.Done():
		return false
	}
}
