package simulator

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/coder/websocket"

	"github.com/quotesdev/quotes/feed"
)

// signal wakes a waiter: notify never blocks, and notifications coalesce.
type signal chan struct{}

func newSignal() signal { return make(signal, 1) }

func (s signal) notify() {
	select {
	case s <- struct{}{}:
	default:
	}
}

// testDeadline returns a channel that fires a little before the test binary's -timeout
// would panic, so that a wait that never ends fails with what it waited for; nil (never)
// without a timeout. Waits in these tests have no wall-clock limit of their own: under
// -race on a busy machine any fixed limit is a guess, and the test's deadline is the bound.
func testDeadline(t *testing.T) <-chan time.Time {
	d, ok := t.Deadline()
	if !ok {
		return nil
	}
	left := time.Until(d)
	return time.After(left - left/20)
}

// await waits until cond holds, re-checking it whenever sig fires.
//
// If mock is set, the wait needs the paced feed to move on, and it also nudges the clock
// (mock.Add(0)) and re-checks every millisecond: clock.Mock.Add can miss a timer that the
// feed's goroutine sets while Add is finishing (after Add last looked at the timers,
// before it sets the final time), and nothing but another Add fires it. That is the one
// poll here; everything else is woken by the server's and the clients' signals.
func await(t *testing.T, sig signal, mock *clock.Mock, what string, cond func() bool) {
	t.Helper()
	var tick <-chan time.Time
	if mock != nil {
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		tick = tk.C
	}
	deadline := testDeadline(t)
	for !cond() {
		select {
		case <-sig:
		case <-tick:
			mock.Add(0)
		case <-deadline:
			t.Fatalf("test deadline: still waiting for %s", what)
		}
	}
}

// client is a plain websocket client of one stream that decodes and keeps every message.
type client struct {
	sig    signal // notified on every message and when reading ends
	mu     sync.Mutex
	msgs   []feed.Message
	err    error // why reading ended
	closed chan struct{}
}

func (c *client) messages() []feed.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func (c *client) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func dial(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-testDeadline(t):
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

// connect dials url and reads it in the background until the connection ends, notifying
// sig on every message and at the end.
func connect(t *testing.T, url string, sig signal) *client {
	conn := dial(t, url, nil)
	c := &client{sig: sig, closed: make(chan struct{})}
	go func() {
		defer sig.notify()
		defer close(c.closed)
		dec := feed.NewDecoder(0)
		for {
			typ, data, err := conn.Read(context.Background())
			if err == nil && typ != websocket.MessageText {
				err = errors.New("binary frame")
			}
			var m feed.Message
			if err == nil {
				err = dec.Decode(data, &m)
			}
			c.mu.Lock()
			if err != nil {
				c.err = err
				c.mu.Unlock()
				return
			}
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
			sig.notify()
		}
	}()
	return c
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (s *Server) clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// activeCount is the number of instruments published as active.
func (s *Server) activeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active)
}

// dueQuotes counts the model's quotes up to a virtual time.
type dueQuotes struct {
	m       *Model
	next    feed.Message
	start   int64
	n       int // quotes up to the last time asked
	atStart int // quotes at the start: they may be published before a client connects
}

func newDueQuotes(t *testing.T, o Options) *dueQuotes {
	m := mustModel(t, o)
	return &dueQuotes{m: m, next: m.Next(), start: o.Start.UnixNano()}
}

// upTo returns the number of quotes with TS <= v.
func (d *dueQuotes) upTo(v int64) int {
	for d.next.TS <= v {
		if d.next.Kind == feed.KindQuote {
			d.n++
			if d.next.TS == d.start {
				d.atStart++
			}
		}
		d.next = d.m.Next()
	}
	return d.n
}

// runResult is what Run returned, valid once done is closed.
type runResult struct {
	done  chan struct{}
	stats Stats
	err   error
}

// startServer runs a server whose every change, and the end of Run, notify sig. Run starts
// the feed at once: wait for the initial instruments (activeCount) before moving a mock
// clock, or the feed starts its virtual time at a later clock reading than the test assumes.
func startServer(t *testing.T, cfg ServerConfig, sig signal) (*Server, *runResult, context.CancelFunc) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = quietLogger()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.onChange = sig.notify
	ctx, cancel := context.WithCancel(context.Background())
	res := &runResult{done: make(chan struct{})}
	go func() {
		defer sig.notify()
		defer close(res.done)
		res.stats, res.err = srv.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-res.done
	})
	return srv, res, cancel
}

// TestServerStreams connects plain websocket clients to a server paced by a mock clock and
// checks the streams against the model: the snapshot of ADDs on connect, every ADD and
// DELETE, quotes only for active instruments at the configured rate, never ahead of the
// clock, the same stream for every client, and a graceful close at the end of the feed.
func TestServerStreams(t *testing.T) {
	o := testOptions(50)
	o.QuoteInterval = time.Second
	o.Churn = 2
	o.Seed = 7
	o.Duration = 10 * time.Second
	mock := clock.NewMock()
	wall0 := mock.Now()
	sig := newSignal()
	srv, res, _ := startServer(t, ServerConfig{Options: o, Clock: mock}, sig)

	// What the model says, to compare with.
	model := mustModel(t, o)
	start, end := o.Start.UnixNano(), o.Start.Add(o.Duration).UnixNano()
	var initial, events, quotes []feed.Message
	atStart := 0 // quotes due at start, possibly published before the client connects
	activeSet := make(map[feed.ISIN]bool)
	for {
		m := model.Next()
		if m.TS >= end {
			break
		}
		switch {
		case len(initial) < o.Instruments:
			initial = append(initial, m)
			activeSet[m.ISIN] = true
		case m.Kind == feed.KindQuote:
			if !activeSet[m.ISIN] {
				t.Fatalf("model quotes inactive %s", m.ISIN)
			}
			quotes = append(quotes, m)
			if m.TS == start {
				atStart++
			}
		default:
			events = append(events, m)
			activeSet[m.ISIN] = m.Kind == feed.KindAdd
		}
	}
	if len(events) < 20 {
		t.Fatalf("model has only %d churn events in 10 s at 2/s", len(events))
	}

	// Connect once the initial ADDs are published, so that they come as the snapshot (and
	// the feed has read the clock it starts from).
	await(t, sig, nil, "the initial instruments", func() bool { return srv.activeCount() == o.Instruments })
	inst1 := connect(t, srv.URL()+"/instruments", sig)
	inst2 := connect(t, srv.URL()+"/instruments", sig)
	quo := connect(t, srv.URL()+"/quotes", sig)
	await(t, sig, nil, "3 clients", func() bool { return srv.clients() == 3 })
	await(t, sig, nil, "the snapshot", func() bool { return inst1.count() >= o.Instruments && inst2.count() >= o.Instruments })

	quotesDue := func(virtual int64) int {
		n, _ := slices.BinarySearchFunc(quotes, virtual+1, func(m feed.Message, ts int64) int { return int(m.TS - ts) })
		return n
	}
	for mock.Now().Sub(wall0) <= o.Duration+time.Second {
		mock.Add(50 * time.Millisecond)
		now := start + int64(mock.Now().Sub(wall0))
		if now > end {
			break
		}
		// Paced: quotes up to the clock arrive, none ahead of it.
		due := quotesDue(now)
		await(t, sig, mock, "the quotes due", func() bool { return quo.count() >= due-atStart })
		if got := quo.count(); got > due {
			t.Fatalf("at %v: %d quotes received, only %d due", time.Unix(0, now).UTC(), got, due)
		}
	}
	// The clock is past the duration: the feed ends.
	await(t, sig, mock, "Run to end after the duration", func() bool {
		select {
		case <-res.done:
			return true
		default:
			return false
		}
	})
	if res.err != nil {
		t.Fatalf("Run: %v", res.err)
	}
	if want := int64(len(initial) + len(events) + len(quotes)); res.stats.Messages != want {
		t.Errorf("Run sent %d messages, the model has %d", res.stats.Messages, want)
	}
	for _, c := range []*client{inst1, inst2, quo} {
		<-c.closed
		if st := websocket.CloseStatus(c.err); st != websocket.StatusGoingAway {
			t.Errorf("client ended with %v (status %v), want a close with status 1001", c.err, st)
		}
	}

	// /instruments: snapshot of the initial instruments sorted by ISIN, then every event.
	got1, got2 := inst1.messages(), inst2.messages()
	if !slices.EqualFunc(got1, got2, func(a, b feed.Message) bool { return a == b }) {
		t.Error("two /instruments clients got different streams")
	}
	snap := slices.Clone(initial)
	slices.SortFunc(snap, func(a, b feed.Message) int { return bytes.Compare(a.ISIN[:], b.ISIN[:]) })
	if len(got1) != len(snap)+len(events) {
		t.Fatalf("/instruments: %d messages, want %d snapshot ADDs + %d events", len(got1), len(snap), len(events))
	}
	for i, m := range got1 {
		want := snap[0]
		if i < len(snap) {
			want = snap[i]
		} else {
			want = events[i-len(snap)]
		}
		want.TS = 0
		if m != want {
			t.Fatalf("/instruments message %d: %+v, want %+v", i, m, want)
		}
	}

	// /quotes: the model's quotes, except those published before the client connected.
	gotQ := quo.messages()
	skip := len(quotes) - len(gotQ)
	if skip < 0 || skip > atStart {
		t.Fatalf("/quotes: %d quotes, the model has %d (%d at start)", len(gotQ), len(quotes), atStart)
	}
	for i, m := range gotQ {
		want := quotes[skip+i]
		want.TS = 0
		if m != want {
			t.Fatalf("/quotes message %d: %+v, want %+v", i, m, want)
		}
	}
	// Rate: 50 instruments quoting every second for 10 s.
	if n := len(gotQ); n < 450 || n > 550 {
		t.Errorf("%d quotes in 10 s from 50 instruments at 1/s, want about 500", n)
	}
}

// TestServerDropsSlowClient has a client that never reads: once its queue overflows it is
// disconnected, while a client that keeps up goes on receiving.
//
// Deterministic under load: the clock is a mock, moved 50 ms (1,000 quotes, half the queue
// limit) at a time, and only once the fast client has received everything due and the
// server has finished writing it (its queue is empty), so the fast client's queue never
// holds more than one step. The slow client's queue only grows once the kernel's socket
// buffers are full, after some tens of thousands of quotes; the test bounds that by a
// number of quotes, not by wall time.
func TestServerDropsSlowClient(t *testing.T) {
	o := testOptions(2000)
	o.QuoteInterval = 100 * time.Millisecond // 20,000 quotes/s of feed time
	o.Churn = 0
	const (
		queueLimit = 2000
		step       = 50 * time.Millisecond
		maxQuotes  = 1_000_000 // ~100 MB: far beyond what loopback socket buffers hold
	)
	mock := clock.NewMock()
	sig := newSignal()
	srv, res, cancel := startServer(t, ServerConfig{Options: o, Clock: mock, QueueLimit: queueLimit}, sig)
	await(t, sig, nil, "the feed to start", func() bool { return srv.activeCount() == o.Instruments })

	fast := connect(t, srv.URL()+"/quotes", sig)
	await(t, sig, nil, "the fast client", func() bool { return srv.clients() == 1 })
	var fastSub *subscriber
	srv.mu.Lock()
	for sub := range srv.subs {
		fastSub = sub
	}
	srv.mu.Unlock()
	// The slow client never reads: once the kernel's socket buffers are full, its queue grows.
	slow := dial(t, srv.URL()+"/quotes", nil)
	await(t, sig, nil, "2 clients", func() bool { return srv.clients() == 2 })

	due := newDueQuotes(t, o)
	wall0 := mock.Now()
	// keepUp advances the clock by one step and waits until the fast client has received
	// what is due and the server has written all it queued for it.
	keepUp := func() {
		mock.Add(step)
		want := due.upTo(due.start+int64(mock.Now().Sub(wall0))) - due.atStart
		await(t, sig, mock, "the fast client to receive what is due", func() bool {
			select {
			case <-fast.closed:
				t.Fatalf("the fast client was disconnected after %d quotes: %v", fast.count(), fast.err)
			default:
			}
			fastSub.mu.Lock()
			pending := fastSub.pending
			fastSub.mu.Unlock()
			return fast.count() >= want && pending == 0
		})
	}
	for srv.clients() == 2 {
		if due.n > maxQuotes {
			t.Fatalf("the slow client was not dropped after %d quotes", due.n)
		}
		keepUp()
	}
	if fast.count() < queueLimit {
		t.Errorf("the fast client got only %d quotes", fast.count())
	}
	if srv.clients() != 1 {
		t.Fatalf("%d clients left, want the fast one", srv.clients())
	}
	// The slow client's connection is gone: reading drains what the kernel holds, then fails.
	ctx, cancelRead := context.WithCancel(context.Background())
	defer cancelRead()
	go func() {
		select {
		case <-testDeadline(t):
			cancelRead()
		case <-ctx.Done():
		}
	}()
	for nread := 0; ; nread++ {
		if _, _, err := slow.Read(ctx); err != nil {
			t.Logf("slow client: %d messages, then %v", nread, err)
			if ctx.Err() != nil {
				t.Fatal("the slow client is still open at the test deadline")
			}
			break
		}
	}
	// The fast client is unaffected.
	before := fast.count()
	keepUp()
	if fast.count() == before {
		t.Error("the fast client receives nothing after the drop")
	}
	cancel()
	if <-res.done; res.err != nil {
		t.Fatalf("Run: %v", res.err)
	}
	<-fast.closed
	if st := websocket.CloseStatus(fast.err); st != websocket.StatusGoingAway {
		t.Errorf("fast client ended with %v, want a close with status 1001", fast.err)
	}
}

func TestNewServerErrors(t *testing.T) {
	o := testOptions(10)
	o.Speed = SpeedMax
	if _, err := NewServer(ServerConfig{Options: o, Addr: "127.0.0.1:0"}); err == nil {
		t.Error("NewServer accepted SpeedMax")
	}
	o.Speed = 1
	o.QuoteInterval = 0
	if _, err := NewServer(ServerConfig{Options: o, Addr: "127.0.0.1:0"}); err == nil {
		t.Error("NewServer accepted bad options")
	}
	o = testOptions(10)
	if _, err := NewServer(ServerConfig{Options: o, Addr: "256.0.0.1:99999"}); err == nil {
		t.Error("NewServer accepted a bad address")
	}
}

// TestServerRecords serves and records at once: the recording equals Record's.
func TestServerRecords(t *testing.T) {
	o := testOptions(20)
	o.Duration = 3 * time.Second
	o.Speed = 100
	var rec lockedBuffer
	srv, err := NewServer(ServerConfig{Options: o, Addr: "127.0.0.1:0", Logger: quietLogger(), Record: &rec})
	if err != nil {
		t.Fatal(err)
	}
	st, err := srv.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o.Speed = SpeedMax
	want, wst := record(t, o)
	if !bytes.Equal(rec.Bytes(), want) || st != wst {
		t.Errorf("served recording (%+v) differs from Record's (%+v)", st, wst)
	}
}

// TestServerSkip checks that a server started with Options.Skip has the model's active set
// of that moment (what a reconnecting client's snapshot shows): a restarted simulator with
// Skip continues its feed, churn included.
func TestServerSkip(t *testing.T) {
	o := testOptions(50)
	o.Churn = 2
	o.Seed = 11
	o.Skip = 40 * time.Second
	model := mustModel(t, o)
	want := map[feed.ISIN]string{}
	from := o.Start.Add(o.Skip).UnixNano()
	churned := 0
	for {
		m := model.Next()
		if m.TS >= from {
			break
		}
		switch m.Kind {
		case feed.KindAdd:
			want[m.ISIN] = m.Description
		case feed.KindDelete:
			delete(want, m.ISIN)
			churned++
		}
	}
	if churned < 20 {
		t.Fatalf("only %d deletes before the skip point", churned)
	}
	srv, _, _ := startServer(t, ServerConfig{Options: o, Clock: clock.NewMock()}, newSignal())
	same := func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return maps.Equal(srv.active, want)
	}
	for deadline := time.Now().Add(10 * time.Second); !same(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the active set is not the model's at Start+Skip")
		}
	}
}
