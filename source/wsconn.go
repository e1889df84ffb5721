package source

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn is a client websocket connection (gorilla/websocket) with a ping that waits for
// its pong. gorilla/websocket reads a frame without locks or channel operations: at
// 200,000 one-quote frames a second, coder/websocket's read mutex (a channel select,
// three times a frame) took 13 % of a live ingest's CPU. Pongs are handled, and the
// partner's pings answered, by the reading goroutine (read's NextReader), as before.
type wsConn struct {
	*websocket.Conn
	seq   atomic.Uint64
	mu    sync.Mutex
	pongs map[string]chan struct{} // pings in flight, by payload
}

// wsReadBuffer is the connection's read buffer: 64 KiB, ~1,500 quotes a read system call
// when they queue up (gorilla's default is 4 KiB).
const wsReadBuffer = 64 << 10

// newDialer returns the dialer of a Client: proxies from the environment, its own dials.
func newDialer() *websocket.Dialer {
	return &websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		NetDialContext:   (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   wsReadBuffer,
	}
}

// dialURL returns rawURL with an http or https scheme as ws or wss (the partner's base URL
// may be given either way; gorilla/websocket dials only the latter).
func dialURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL // endpoints parsed it already
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	return u.String()
}

// dialWS connects to rawURL.
func dialWS(ctx context.Context, d *websocket.Dialer, rawURL string) (*wsConn, error) {
	conn, _, err := d.DialContext(ctx, dialURL(rawURL), nil)
	if err != nil {
		return nil, err
	}
	w := &wsConn{Conn: conn, pongs: make(map[string]chan struct{})}
	conn.SetPongHandler(w.pong)
	return w, nil
}

// pong is the pong handler: it releases the ping that sent the payload.
func (w *wsConn) pong(payload string) error {
	w.mu.Lock()
	ch, ok := w.pongs[payload]
	delete(w.pongs, payload)
	w.mu.Unlock()
	if ok {
		close(ch)
	}
	return nil
}

// Ping sends a ping and waits for its pong, until ctx is done. The pong arrives only while
// another goroutine reads the connection.
func (w *wsConn) Ping(ctx context.Context) error {
	payload := strconv.FormatUint(w.seq.Add(1), 10)
	ch := make(chan struct{})
	w.mu.Lock()
	w.pongs[payload] = ch
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.pongs, payload)
		w.mu.Unlock()
	}()
	// The write itself is bounded by the wall clock (a socket's deadline); the wait, by ctx.
	if err := w.WriteControl(websocket.PingMessage, []byte(payload), time.Now().Add(10*time.Second)); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CloseNow closes the connection without a close handshake.
func (w *wsConn) CloseNow() error { return w.Conn.Close() }
