package simulator

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// maxHeld is how many bytes of frames a held connection gathers before it writes them.
const maxHeld = 64 << 10

// heldConn is a stream's hijacked connection. coder/websocket flushes every frame with a
// write of its own, so a feed of 50,000 quotes a second would reach the client as 50,000
// TCP segments, each waking it for one read: what a busy server does not do. While held
// (hold … release, around a batch of frames), writes are gathered and leave in writes of
// up to maxHeld bytes; outside, they go straight through (control frames: pongs, close).
type heldConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	buf     []byte
}

// Write sends p, or gathers it while the connection is held.
func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.holding {
		return c.Conn.Write(p)
	}
	if len(c.buf)+len(p) > maxHeld {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// hold starts gathering writes.
func (c *heldConn) hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// release writes what was gathered and stops gathering.
func (c *heldConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	return c.flushLocked()
}

func (c *heldConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if err != nil {
		return fmt.Errorf("simulator: write: %w", err)
	}
	return nil
}

// holdingWriter is the ResponseWriter a stream's websocket.Accept sees: its Hijack hands
// out the connection wrapped in a heldConn, kept in conn.
type holdingWriter struct {
	http.ResponseWriter
	conn *heldConn
}

func (w *holdingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("simulator: %T cannot be hijacked", w.ResponseWriter)
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// coder/websocket writes a server's frames through brw.Writer, which net/http made
	// over the raw connection.
	if err := brw.Writer.Flush(); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("simulator: flush hijacked connection: %w", err)
	}
	w.conn = &heldConn{Conn: c}
	brw.Writer.Reset(w.conn)
	return w.conn, brw, nil
}
