package source

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/coder/websocket"

	"github.com/quotesdev/quotes/feed"
)

// testDeadline returns a channel that fires a little before the test binary's -timeout
// would panic, so that a wait that never ends fails naming what it waited for; nil (never)
// without a timeout. Waits here have no wall-clock limit of their own: they depend on
// loopback network I/O, and under -race on a busy machine any fixed limit is a guess.
func testDeadline(t testing.TB) <-chan time.Time {
	tt, ok := t.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return nil
	}
	d, ok := tt.Deadline()
	if !ok {
		return nil
	}
	left := time.Until(d)
	return time.After(left - left/20)
}

// eventually polls cond until it holds (the conditions are on connections and counters
// that have no signal of their own), failing at the test's deadline.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := testDeadline(t)
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("test deadline: still waiting for %s", what)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// handler serves the n-th (1-based) connection of one path until ctx is done (test end) or
// it returns.
type handler func(ctx context.Context, conn *websocket.Conn, n int)

// mockServer is a misbehaving partner on 127.0.0.1:0.
type mockServer struct {
	srv    *httptest.Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  map[string]*atomic.Int32
	// refuse, while set, answers handshakes with 503 (server "not up yet").
	refuse atomic.Bool
	once   sync.Once
}

func newMockServer(t *testing.T, instruments, quotes handler) *mockServer {
	t.Helper()
	ms := &mockServer{conns: map[string]*atomic.Int32{"/instruments": {}, "/quotes": {}}}
	ms.ctx, ms.cancel = context.WithCancel(context.Background())
	handlers := map[string]handler{"/instruments": instruments, "/quotes": quotes}
	ms.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Counted before Accept hijacks the connection: httptest's Close waits for the
		// handlers of requests not yet hijacked, so every Add happens before close's Wait
		// (an Add after the hijack would race with it).
		ms.wg.Add(1)
		defer ms.wg.Done()
		h, ok := handlers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if ms.refuse.Load() {
			http.Error(w, "not up yet", http.StatusServiceUnavailable)
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		conn.SetReadLimit(-1)
		n := int(ms.conns[r.URL.Path].Add(1))
		if h != nil {
			h(ms.ctx, conn, n)
		} else {
			<-conn.CloseRead(ms.ctx).Done()
		}
	}))
	return ms
}

func (ms *mockServer) url() string { return "ws" + strings.TrimPrefix(ms.srv.URL, "http") }

func (ms *mockServer) count(path string) int { return int(ms.conns[path].Load()) }

func (ms *mockServer) close() {
	ms.once.Do(func() {
		ms.cancel()
		ms.srv.CloseClientConnections()
		ms.srv.Close()
		ms.wg.Wait()
	})
}

// idle keeps a connection open, answering pings, until the test ends or the peer leaves.
func idle(ctx context.Context, conn *websocket.Conn) {
	<-conn.CloseRead(ctx).Done()
}

// send writes text frames; errors (peer gone) end the handler's script.
func send(ctx context.Context, conn *websocket.Conn, frames ...string) error {
	for _, f := range frames {
		if err := conn.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
			return err
		}
	}
	return nil
}

func isin(t testing.TB, s string) feed.ISIN {
	t.Helper()
	i, ok := feed.ParseISIN(s)
	if !ok {
		t.Fatalf("bad test ISIN %q", s)
	}
	return i
}

func addFrame(isin, desc string) string {
	return `{"type":"ADD","data":{"isin":"` + isin + `","description":"` + desc + `"}}`
}

func delFrame(isin, desc string) string {
	return `{"type":"DELETE","data":{"isin":"` + isin + `","description":"` + desc + `"}}`
}

func quoteFrame(isin, price string) string {
	return `{"type":"QUOTE","data":{"isin":"` + isin + `","price":` + price + `}}`
}

// lockedMock is a clock.Mock whose timers are created under mu, the lock its user moves
// the clock under. clock.Mock.Timer runs the timers that are due, and while another
// goroutine's Add runs them too, both can fire the same timer: the second send on its full
// channel, under the mock's lock, deadlocks the clock (TestServerDown hung that way, its two
// streams backing off at once).
type lockedMock struct {
	*clock.Mock
	mu *sync.Mutex
}

// Timer is clock.Mock.Timer under m.mu.
func (m lockedMock) Timer(d time.Duration) *clock.Timer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Mock.Timer(d)
}

// After is Timer's channel.
func (m lockedMock) After(d time.Duration) <-chan time.Time { return m.Timer(d).C }

// harness runs a Client with a mock clock against a mock server and records everything.
type harness struct {
	t   *testing.T
	ms  *mockServer
	c   *Client
	clk *clock.Mock

	clkMu sync.Mutex // serialises moves of the mock clock (tests and backoff hook)

	mu        sync.Mutex
	got       []feed.Message
	batches   int
	rejects   []feed.Reason
	delays    map[string][]time.Duration
	snapshots chan time.Duration
	ticks     chan string

	cancel context.CancelFunc
	done   chan error
}

// epoch is where the mock clock of every test starts.
func epoch() time.Time { return time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC) }

// newHarness starts the server and a running client. autoBackoff makes every backoff
// wait elapse at once by advancing the mock clock by exactly the delay.
func newHarness(t *testing.T, instruments, quotes handler, mod func(*harness, *Options), autoBackoff bool) *harness {
	t.Helper()
	h := &harness{
		t: t, clk: clock.NewMock(),
		delays:    map[string][]time.Duration{},
		snapshots: make(chan time.Duration, 1024),
		ticks:     make(chan string, 1024),
	}
	h.clk.Set(epoch())
	h.ms = newMockServer(t, instruments, quotes)
	opts := Options{
		URL:   h.ms.url(),
		Clock: lockedMock{h.clk, &h.clkMu},
		Rand:  rand.New(rand.NewPCG(1, 2)),
		OnReject: func(err *feed.DecodeError) {
			h.mu.Lock()
			h.rejects = append(h.rejects, err.Reason)
			h.mu.Unlock()
		},
	}
	if mod != nil {
		mod(h, &opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	c.hooks.backoff = func(stream string, attempt int, d time.Duration) {
		h.mu.Lock()
		h.delays[stream] = append(h.delays[stream], d)
		h.mu.Unlock()
		if autoBackoff {
			h.advance(d)
		}
	}
	c.hooks.snapshot = func(d time.Duration) {
		select {
		case h.snapshots <- d:
		default:
		}
	}
	c.hooks.tick = func(stream string) {
		select {
		case h.ticks <- stream:
		default:
		}
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() {
		h.done <- c.Run(ctx, h.deliver)
	}()
	t.Cleanup(func() {
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-testDeadline(t):
			t.Errorf("Run did not return after cancel")
		}
		h.ms.close()
		checkNoLeaks(t, before)
	})
	return h
}

func (h *harness) deliver(batch []feed.Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, batch...)
	h.batches++
	return nil
}

func (h *harness) advance(d time.Duration) {
	h.clkMu.Lock()
	defer h.clkMu.Unlock()
	h.clk.Add(d)
}

func (h *harness) messages() []feed.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]feed.Message(nil), h.got...)
}

func (h *harness) waitMessages(n int) []feed.Message {
	h.t.Helper()
	eventually(h.t, "delivered messages", func() bool { return len(h.messages()) >= n })
	return h.messages()
}

func (h *harness) rejectCounts() map[feed.Reason]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := map[feed.Reason]int{}
	for _, r := range h.rejects {
		m[r]++
	}
	return m
}

// checkNoLeaks waits until no goroutine of this package's Client is left and the goroutine
// count is back to what it was before the client started.
func checkNoLeaks(t *testing.T, before int) {
	t.Helper()
	deadline := testDeadline(t)
	for {
		leaked := clientGoroutines()
		n := runtime.NumGoroutine()
		if leaked == "" && n <= before {
			return
		}
		select {
		case <-deadline:
			t.Errorf("goroutines: %d now, %d before; client goroutines left:\n%s", n, before, leaked)
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// clientGoroutines returns the stacks of goroutines running Client or stream code.
func clientGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "quotes/source.(*stream)") || strings.Contains(g, "quotes/source.(*Client)") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
