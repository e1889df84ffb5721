package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/coder/websocket"

	"github.com/quotesdev/quotes/feed"
)

const (
	isinA = "AAAAAAAAAAA1"
	isinB = "BBBBBBBBBBB2"
	isinC = "CCCCCCCCCCC3"
	isinD = "DDDDDDDDDDD4"
	isinE = "EEEEEEEEEEE5"
	isinX = "XXXXXXXXXXX9"
)

func checkMonotonic(t *testing.T, msgs []feed.Message) {
	t.Helper()
	for i := 1; i < len(msgs); i++ {
		if msgs[i].TS < msgs[i-1].TS {
			t.Fatalf("TS decreases at %d: %d after %d", i, msgs[i].TS, msgs[i-1].TS)
		}
	}
}

func TestBadFramesSurvived(t *testing.T) {
	big := `{"type":"QUOTE","data":{"isin":"` + isinA + `","price":1,"pad":"` + strings.Repeat("x", 3000) + `"}}`
	huge := strings.Repeat("y", 20000) // beyond 16×MaxFrame: the connection is closed
	quotes := func(ctx context.Context, conn *websocket.Conn, n int) {
		if n == 1 {
			if send(ctx, conn, "garbage") != nil {
				return
			}
			if conn.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}) != nil {
				return
			}
			if send(ctx, conn, quoteFrame(isinA, "1.5"), big, quoteFrame(isinA, "2"),
				`{"type":"FOO","data":{}}`, quoteFrame("bad", "1"), huge) != nil {
				return
			}
		} else if send(ctx, conn, quoteFrame(isinA, "3")) != nil {
			return
		}
		idle(ctx, conn)
	}
	h := newHarness(t, nil, quotes, func(_ *harness, o *Options) { o.MaxFrame = 1024 }, true)

	got := h.waitMessages(3)
	var prices []string
	for _, m := range got {
		if m.Kind != feed.KindQuote || m.ISIN != isin(t, isinA) {
			t.Fatalf("unexpected message %+v", m)
		}
		prices = append(prices, m.Price.String())
	}
	if strings.Join(prices, " ") != "1.5 2 3" {
		t.Fatalf("prices %v, want 1.5 2 3", prices)
	}
	want := map[feed.Reason]int{
		feed.ReasonMalformedJSON: 1, feed.ReasonBinaryFrame: 1, feed.ReasonOversized: 2,
		feed.ReasonUnknownType: 1, feed.ReasonBadISIN: 1,
	}
	eventually(t, "all rejects", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.rejects) == 6
	})
	if got := h.rejectCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("OnReject reasons %v, want %v", got, want)
	}
	st := h.c.Stats()
	for r, n := range want {
		if st.Rejects[r] != uint64(n) {
			t.Errorf("Stats.Rejects[%s] = %d, want %d", r, st.Rejects[r], n)
		}
	}
	if st.Rejected() != 6 {
		t.Errorf("Rejected() = %d, want 6", st.Rejected())
	}
	if st.Quotes.Connects != 2 || st.Quotes.Disconnects != 1 {
		t.Errorf("quotes connects %d disconnects %d, want 2 and 1", st.Quotes.Connects, st.Quotes.Disconnects)
	}
	if st.Quotes.Frames != 9 || st.Quotes.Accepted != 3 {
		t.Errorf("quotes frames %d accepted %d, want 9 and 3", st.Quotes.Frames, st.Quotes.Accepted)
	}
}

// waitTicks waits until the watchdogs of the named streams handled a tick.
func (h *harness) waitTicks(streams ...string) {
	h.t.Helper()
	want := map[string]bool{}
	for _, s := range streams {
		want[s] = true
	}
	timeout := testDeadline(h.t)
	for len(want) > 0 {
		select {
		case s := <-h.ticks:
			delete(want, s)
		case <-timeout:
			h.t.Fatalf("test deadline: still waiting for watchdog ticks of %v", want)
		}
	}
}

func TestStallReconnects(t *testing.T) {
	// Neither handler reads, so pings go unanswered; /quotes talks once per reconnect.
	silent := func(ctx context.Context, conn *websocket.Conn, n int) { <-ctx.Done() }
	quotes := func(ctx context.Context, conn *websocket.Conn, n int) {
		if send(ctx, conn, quoteFrame(isinA, strconv.Itoa(n))) == nil {
			<-ctx.Done()
		}
	}
	h := newHarness(t, silent, quotes, func(_ *harness, o *Options) { o.ReadTimeout = 4 * time.Second }, true)
	eventually(t, "connected", h.c.Connected)
	h.waitMessages(1)

	// Just short of ReadTimeout: pings went out, nothing is declared stalled.
	for i := 0; i < 3; i++ {
		h.advance(time.Second)
		h.waitTicks("instruments", "quotes")
	}
	if st := h.c.Stats(); st.Instruments.Stalls != 0 || st.Quotes.Stalls != 0 {
		t.Fatalf("stalled before ReadTimeout: %+v", st)
	}
	h.advance(time.Second)
	eventually(t, "stalls detected", func() bool {
		st := h.c.Stats()
		return st.Instruments.Stalls == 1 && st.Quotes.Stalls == 1
	})
	eventually(t, "reconnected", func() bool {
		return h.ms.count("/instruments") == 2 && h.ms.count("/quotes") == 2 && h.c.Connected()
	})
	got := h.waitMessages(2)
	if got[1].Price.String() != "2" {
		t.Fatalf("after reconnect got %+v", got[1])
	}
	st := h.c.Stats()
	if st.Instruments.Disconnects != 1 || st.Quotes.Disconnects != 1 {
		t.Fatalf("disconnects %d/%d, want 1/1", st.Instruments.Disconnects, st.Quotes.Disconnects)
	}
}

func TestPingKeepsQuietConnection(t *testing.T) {
	// Default handlers answer pings but never send a frame.
	h := newHarness(t, nil, nil, func(_ *harness, o *Options) { o.ReadTimeout = 4 * time.Second }, true)
	eventually(t, "connected", h.c.Connected)
	for i := 0; i < 12; i++ { // 3×ReadTimeout
		h.advance(time.Second)
		h.waitTicks("instruments", "quotes")
		eventually(t, "pongs", func() bool {
			return !h.c.streams[0].pinging.Load() && !h.c.streams[1].pinging.Load()
		})
	}
	st := h.c.Stats()
	if st.Instruments.Stalls+st.Quotes.Stalls+st.Instruments.Disconnects+st.Quotes.Disconnects != 0 {
		t.Fatalf("a responsive quiet partner was dropped: %+v", st)
	}
	if h.ms.count("/instruments") != 1 || h.ms.count("/quotes") != 1 {
		t.Fatalf("reconnected: %d/%d connections", h.ms.count("/instruments"), h.ms.count("/quotes"))
	}
}

func TestDisconnectMidStream(t *testing.T) {
	quotes := func(ctx context.Context, conn *websocket.Conn, n int) {
		for i := 1; i <= 5; i++ {
			if send(ctx, conn, quoteFrame(isinA, strconv.Itoa((n-1)*5+i))) != nil {
				return
			}
		}
		if n == 1 {
			return // abrupt: the deferred CloseNow drops the TCP connection
		}
		idle(ctx, conn)
	}
	h := newHarness(t, nil, quotes, nil, true)
	got := h.waitMessages(10)
	for i, m := range got {
		if m.Price.String() != strconv.Itoa(i+1) {
			t.Fatalf("message %d has price %s", i, m.Price)
		}
	}
	checkMonotonic(t, got)
	if got[0].TS != epoch().UnixNano() {
		t.Errorf("first arrival stamped %v, want the mock clock %v", got[0].Time(), epoch())
	}
	st := h.c.Stats()
	if st.Quotes.Connects != 2 || st.Quotes.Disconnects != 1 || st.Quotes.Stalls != 0 {
		t.Fatalf("quotes stats %+v", st.Quotes)
	}
	h.mu.Lock()
	delays := h.delays["quotes"]
	h.mu.Unlock()
	if len(delays) != 1 || delays[0] < DefaultBackoffMin/2 || delays[0] > DefaultBackoffMin {
		t.Fatalf("reconnect delays %v, want one in [%v, %v]", delays, DefaultBackoffMin/2, DefaultBackoffMin)
	}
}

// connScript lets a test drive one server connection: frames to send, and a close.
type connScript struct {
	frames chan string
	close  chan struct{}
}

// scripted returns a handler whose n-th connection follows scripts[n-1].
func scripted(scripts ...*connScript) handler {
	return func(ctx context.Context, conn *websocket.Conn, n int) {
		if n > len(scripts) {
			idle(ctx, conn)
			return
		}
		sc := scripts[n-1]
		closed := conn.CloseRead(ctx)
		for {
			select {
			case f := <-sc.frames:
				if send(ctx, conn, f) != nil {
					return
				}
			case <-sc.close:
				return
			case <-closed.Done():
				return
			}
		}
	}
}

func newScript() *connScript {
	return &connScript{frames: make(chan string, 100), close: make(chan struct{})}
}

func (h *harness) nextSnapshotCheck() time.Duration {
	h.t.Helper()
	select {
	case d := <-h.snapshots:
		return d
	case <-testDeadline(h.t):
		h.t.Fatal("test deadline: still waiting for a snapshot check")
		return 0
	}
}

func TestSnapshotTruth(t *testing.T) {
	const quiet = 500 * time.Millisecond
	s1, s2 := newScript(), newScript()
	h := newHarness(t, scripted(s1, s2), nil, func(_ *harness, o *Options) {
		o.SnapshotQuiet = quiet
		o.Active = map[feed.ISIN]string{isin(t, isinX): "x"} // e.g. recovered from the WAL
	}, true)

	// First connect: A, B, C; the seeded X is not in the snapshot.
	s1.frames <- addFrame(isinA, "a")
	s1.frames <- addFrame(isinB, "b")
	s1.frames <- addFrame(isinC, "c")
	h.waitMessages(3)
	h.advance(quiet)
	if d := h.nextSnapshotCheck(); d != 0 {
		t.Fatalf("snapshot not over after %v of quiet: %v left", quiet, d)
	}
	got := h.waitMessages(4)
	want := feed.Message{TS: epoch().Add(quiet).UnixNano(), Kind: feed.KindDelete, ISIN: isin(t, isinX), Description: "x"}
	if got[3] != want {
		t.Fatalf("synthetic delete %+v, want %+v", got[3], want)
	}

	// Reconnect: the snapshot has A (unchanged: not delivered again), C (new description),
	// D, and a DELETE of unknown E.
	close(s1.close)
	eventually(t, "reconnect", func() bool { return h.c.Stats().Instruments.Connects == 2 })
	s2.frames <- addFrame(isinA, "a")
	s2.frames <- addFrame(isinC, "c2")
	if got := h.waitMessages(5); got[4].ISIN != isin(t, isinC) || got[4].Description != "c2" {
		t.Fatalf("after reconnect got %+v, want the ADD of C with its new description", got[4])
	}
	h.advance(quiet / 2)
	s2.frames <- delFrame(isinE, "e")
	s2.frames <- addFrame(isinD, "d")
	h.waitMessages(7)
	// quiet after the connect, but only quiet/2 after the last frame: not over yet.
	h.advance(quiet / 2)
	if d := h.nextSnapshotCheck(); d != quiet/2 {
		t.Fatalf("snapshot check: %v left, want %v", d, quiet/2)
	}
	if n := len(h.messages()); n != 7 {
		t.Fatalf("%d messages before the snapshot ended, want 7", n)
	}
	h.advance(quiet / 2)
	if d := h.nextSnapshotCheck(); d != 0 {
		t.Fatalf("snapshot not over: %v left", d)
	}
	got = h.waitMessages(8)
	end := h.clk.Now()
	want = feed.Message{TS: feed.ArrivalTime(end), Kind: feed.KindDelete, ISIN: isin(t, isinB), Description: "b"}
	if got[7] != want {
		t.Fatalf("synthetic delete %+v, want %+v", got[7], want)
	}
	checkMonotonic(t, got)
	// Nothing else comes: exactly one synthetic DELETE per missing ISIN.
	h.advance(quiet)
	st := h.c.Stats()
	if st.SyntheticDeletes != 2 || st.Snapshots != 2 || st.Active != 3 || st.DuplicateAdds != 1 {
		t.Fatalf("stats: synthetic deletes %d, snapshots %d, active %d, duplicate ADDs %d; want 2, 2, 3, 1",
			st.SyntheticDeletes, st.Snapshots, st.Active, st.DuplicateAdds)
	}
	if n := len(h.messages()); n != 8 {
		t.Fatalf("%d messages, want 8", n)
	}
}

func TestSnapshotAbandonedOnDisconnect(t *testing.T) {
	const quiet = 500 * time.Millisecond
	s1, s2, s3 := newScript(), newScript(), newScript()
	h := newHarness(t, scripted(s1, s2, s3), nil, func(_ *harness, o *Options) { o.SnapshotQuiet = quiet }, true)
	s1.frames <- addFrame(isinA, "a")
	s1.frames <- addFrame(isinB, "b")
	h.waitMessages(2)
	h.advance(quiet)
	if d := h.nextSnapshotCheck(); d != 0 {
		t.Fatalf("first snapshot not over: %v", d)
	}
	// Second connection drops in the middle of its snapshot (only A sent, unchanged, so
	// not delivered): no DELETE of B.
	close(s1.close)
	eventually(t, "reconnect", func() bool { return h.c.Stats().Instruments.Connects == 2 })
	s2.frames <- addFrame(isinA, "a")
	eventually(t, "duplicate ADD seen", func() bool { return h.c.Stats().DuplicateAdds == 1 })
	close(s2.close)
	eventually(t, "reconnect", func() bool { return h.c.Stats().Instruments.Connects == 3 })
	s3.frames <- addFrame(isinB, "b")
	eventually(t, "duplicate ADD seen", func() bool { return h.c.Stats().DuplicateAdds == 2 })
	h.advance(quiet)
	if d := h.nextSnapshotCheck(); d != 0 {
		t.Fatalf("third snapshot not over: %v", d)
	}
	got := h.waitMessages(3)
	if got[2].Kind != feed.KindDelete || got[2].ISIN != isin(t, isinA) {
		t.Fatalf("want the synthetic DELETE of A, got %+v", got[2])
	}
	if st := h.c.Stats(); st.SyntheticDeletes != 1 {
		t.Fatalf("synthetic deletes %d, want 1", st.SyntheticDeletes)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, time.Second
	h := newHarness(t, nil, nil, func(h *harness, o *Options) {
		o.BackoffMin, o.BackoffMax = lo, hi
		h.ms.refuse.Store(true) // the server is not up yet
	}, false)
	// Each backoff is released by hand, so the delays are exactly what the client asked for.
	var delays []time.Duration
	for len(delays) < 10 {
		eventually(t, "next backoff", func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return len(h.delays["quotes"]) > len(delays)
		})
		h.mu.Lock()
		d := h.delays["quotes"][len(delays)]
		h.mu.Unlock()
		delays = append(delays, d)
		h.advance(d)
	}
	for i, d := range delays {
		b := min(hi, lo<<i)
		if d < b/2 || d > b {
			t.Errorf("attempt %d: delay %v outside [%v, %v]", i, d, b/2, b)
		}
	}
	if delays[len(delays)-1] > hi || delays[len(delays)-1] < hi/2 {
		t.Errorf("not capped: %v", delays)
	}
	if st := h.c.Stats(); st.Quotes.ConnectFailures < 10 || st.Quotes.Connects != 0 {
		t.Errorf("quotes stats %+v", st.Quotes)
	}
	// The server comes up: both streams connect (advancing the clock releases any backoff).
	h.ms.refuse.Store(false)
	eventually(t, "connected", func() bool {
		if h.c.Connected() {
			return true
		}
		h.advance(hi)
		return false
	})
}

func TestBackoffBounds(t *testing.T) {
	c, err := New(Options{URL: "ws://127.0.0.1:1", BackoffMin: 10 * time.Millisecond, BackoffMax: 5 * time.Second,
		Rand: rand.New(rand.NewPCG(7, 7))})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Duration]bool{}
	bo := c.newBackoff()
	for attempt := 0; attempt < 200; attempt++ {
		b := 5 * time.Second
		if attempt < 10 {
			b = min(b, 10*time.Millisecond<<attempt)
		}
		d := bo.Next()
		if d < b/2 || d > b {
			t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, b/2, b)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct delays: no jitter?", len(seen))
	}
}

func TestServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	clk := clock.NewMock()
	var mu sync.Mutex // both streams back off at once: see lockedMock
	c, err := New(Options{URL: "ws://" + addr, Clock: lockedMock{clk, &mu}})
	if err != nil {
		t.Fatal(err)
	}
	c.hooks.backoff = func(_ string, _ int, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		clk.Add(d)
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func([]feed.Message) error { return nil }) }()
	eventually(t, "failed connects", func() bool {
		st := c.Stats()
		return st.Instruments.ConnectFailures >= 3 && st.Quotes.ConnectFailures >= 3
	})
	if c.Connected() {
		t.Fatal("Connected with no server")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkNoLeaks(t, before)
}

func TestClockBackwardsIsClamped(t *testing.T) {
	s := newScript()
	// A GroupInterval, which must not make the delivery after the step back wait.
	h := newHarness(t, nil, scripted(s), func(_ *harness, o *Options) { o.GroupInterval = time.Minute }, true)
	s.frames <- quoteFrame(isinA, "1")
	h.waitMessages(1)
	h.clkMu.Lock()
	h.clk.Set(epoch().Add(-time.Hour))
	h.clkMu.Unlock()
	s.frames <- quoteFrame(isinA, "2")
	h.waitMessages(2)
	h.clkMu.Lock()
	h.clk.Set(epoch().Add(time.Second))
	h.clkMu.Unlock()
	s.frames <- quoteFrame(isinA, "3")
	got := h.waitMessages(3)
	e := epoch().UnixNano()
	if got[0].TS != e || got[1].TS != e || got[2].TS != e+int64(time.Second) {
		t.Fatalf("TS %d %d %d, want %d %d %d", got[0].TS, got[1].TS, got[2].TS, e, e, e+int64(time.Second))
	}
}

// manual runs a Client over ms with deliver, outside the harness.
func manual(t *testing.T, ms *mockServer, mod func(*Options)) *Client {
	t.Helper()
	opts := Options{URL: ms.url(), Clock: clock.NewMock()}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBackpressureKeepsOrderAndEverything(t *testing.T) {
	const nQuotes, nAdds = 3000, 300
	quotes := func(ctx context.Context, conn *websocket.Conn, n int) {
		for i := 1; i <= nQuotes; i++ {
			if send(ctx, conn, quoteFrame(isinA, strconv.Itoa(i))) != nil {
				return
			}
		}
		idle(ctx, conn)
	}
	instruments := func(ctx context.Context, conn *websocket.Conn, n int) {
		for i := 0; i < nAdds; i++ {
			if send(ctx, conn, addFrame(fmt.Sprintf("I%011d", i), "d")) != nil {
				return
			}
		}
		idle(ctx, conn)
	}
	ms := newMockServer(t, instruments, quotes)
	defer ms.close()
	c := manual(t, ms, func(o *Options) { o.BatchSize = 16 })

	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []feed.Message
	var mu sync.Mutex
	maxBatch := 0
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(batch []feed.Message) error {
			time.Sleep(50 * time.Microsecond) // a slow consumer: the readers must wait
			_ = c.Stats()                     // must not deadlock with a waiting reader
			mu.Lock()
			defer mu.Unlock()
			got = append(got, batch...)
			maxBatch = max(maxBatch, len(batch))
			return nil
		})
	}()
	eventually(t, "everything delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == nQuotes+nAdds
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if maxBatch > 16 {
		t.Errorf("batch of %d > BatchSize 16", maxBatch)
	}
	q, a := 0, 0
	for _, m := range got {
		switch m.Kind {
		case feed.KindQuote:
			q++
			if m.Price.String() != strconv.Itoa(q) {
				t.Fatalf("quote %d has price %s", q, m.Price)
			}
		case feed.KindAdd:
			if m.ISIN.String() != fmt.Sprintf("I%011d", a) {
				t.Fatalf("ADD %d is %s", a, m.ISIN)
			}
			a++
		}
	}
	checkMonotonic(t, got)
	if st := c.Stats(); st.Delivered != nQuotes+nAdds {
		t.Errorf("Delivered %d", st.Delivered)
	}
	ms.close()
	checkNoLeaks(t, before)
}

func TestShutdownDeliversEverythingAccepted(t *testing.T) {
	quotes := func(ctx context.Context, conn *websocket.Conn, n int) {
		for i := 1; ; i++ {
			if send(ctx, conn, quoteFrame(isinA, strconv.Itoa(i))) != nil {
				return
			}
		}
	}
	ms := newMockServer(t, nil, quotes)
	defer ms.close()
	c := manual(t, ms, func(o *Options) { o.BatchSize = 4 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // a failed assertion must not leave Run stuck in deliver
	var delivered int
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(batch []feed.Message) error {
			<-release
			for _, m := range batch {
				delivered++
				if m.Price.String() != strconv.Itoa(delivered) {
					return fmt.Errorf("message %d has price %s", delivered, m.Price)
				}
			}
			return nil
		})
	}()
	// The queue (8 batches of 4) fills up while deliver is stuck on the first batch (1 to 4
	// messages): the reader then waits for room.
	eventually(t, "queue full", func() bool { return c.Stats().Quotes.Accepted >= 1+32 })
	cancel()
	unblock()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := c.Stats()
	if uint64(delivered) != st.Quotes.Accepted || st.Delivered != st.Quotes.Accepted {
		t.Fatalf("accepted %d, delivered %d (stats %d)", st.Quotes.Accepted, delivered, st.Delivered)
	}
}

func TestDeliverErrorStopsRun(t *testing.T) {
	quotes := func(ctx context.Context, conn *websocket.Conn, n int) {
		if send(ctx, conn, quoteFrame(isinA, "1")) == nil {
			idle(ctx, conn)
		}
	}
	ms := newMockServer(t, nil, quotes)
	defer ms.close()
	c := manual(t, ms, nil)
	before := runtime.NumGoroutine()
	errBoom := errors.New("wal is full")
	err := c.Run(context.Background(), func([]feed.Message) error { return errBoom })
	if !errors.Is(err, errBoom) {
		t.Fatalf("Run = %v, want %v wrapped", err, errBoom)
	}
	if err := c.Run(context.Background(), func([]feed.Message) error { return nil }); err == nil {
		t.Fatal("second Run succeeded")
	}
	checkNoLeaks(t, before)
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"empty URL", Options{}},
		{"bad scheme", Options{URL: "ftp://x"}},
		{"no host", Options{URL: "ws://"}},
		{"unparsable", Options{URL: "ws://%zz"}},
		{"negative frame", Options{URL: "ws://h", MaxFrame: -1}},
		{"huge frame", Options{URL: "ws://h", MaxFrame: 1 << 40}},
		{"negative timeout", Options{URL: "ws://h", ReadTimeout: -1}},
		{"min > max", Options{URL: "ws://h", BackoffMin: time.Second, BackoffMax: time.Millisecond}},
		{"negative quiet", Options{URL: "ws://h", SnapshotQuiet: -1}},
		{"negative batch", Options{URL: "ws://h", BatchSize: -1}},
	} {
		if _, err := New(tc.opts); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	c, err := New(Options{URL: "ws://example.com:8032/partner/"})
	if err != nil {
		t.Fatal(err)
	}
	if c.streams[0].url != "ws://example.com:8032/partner/instruments" || c.streams[1].url != "ws://example.com:8032/partner/quotes" {
		t.Errorf("stream URLs %s %s", c.streams[0].url, c.streams[1].url)
	}
	if c.opts.MaxFrame != DefaultMaxFrame || c.opts.ReadTimeout != DefaultReadTimeout || c.opts.BatchSize != DefaultBatchSize {
		t.Errorf("defaults not applied: %+v", c.opts)
	}
	if err := c.Run(context.Background(), nil); err == nil {
		t.Error("Run with nil deliver succeeded")
	}
}

func TestLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	clk := clock.NewMock()
	l := newLimitedLog(slog.New(slog.NewTextHandler(&buf, nil)), clk)
	for i := 0; i < 100; i++ {
		l.log(slog.LevelWarn, "reject")
	}
	if n := strings.Count(buf.String(), "\n"); n != logBurst {
		t.Fatalf("%d lines, want %d", n, logBurst)
	}
	clk.Add(time.Second)
	l.log(slog.LevelWarn, "reject")
	if !strings.Contains(buf.String(), "suppressed=90") {
		t.Fatalf("no suppressed count in:\n%s", buf.String())
	}
}

// TestArrivalStampedInMilliseconds: a frame is stamped with the clock at its arrival,
// rounded down to a whole millisecond (feed.ArrivalTime).
func TestArrivalStampedInMilliseconds(t *testing.T) {
	advanced := make(chan struct{})
	quotes := func(ctx context.Context, conn *websocket.Conn, n int) {
		select {
		case <-advanced:
		case <-ctx.Done():
			return
		}
		if send(ctx, conn, quoteFrame(isinA, "1")) == nil {
			idle(ctx, conn)
		}
	}
	h := newHarness(t, nil, quotes, nil, true)
	h.advance(1234567 * time.Nanosecond)
	close(advanced)
	got := h.waitMessages(1)
	if want := epoch().Add(time.Millisecond).UnixNano(); got[0].TS != want {
		t.Fatalf("arrival at epoch + 1.234567 ms stamped %v, want %v", got[0].Time(), time.Unix(0, want).UTC())
	}
}

// TestGroupInterval: with a GroupInterval, a delivery waits until that long after the
// previous one began (on the client's clock), so what arrives meanwhile goes in one batch,
// unless a full batch is queued sooner; the first delivery does not wait. (A clock that
// steps back does not make it wait: TestClockBackwardsIsClamped.)
func TestGroupInterval(t *testing.T) {
	const interval = 5 * time.Millisecond
	step := make(chan struct{})
	quotes := func(ctx context.Context, conn *websocket.Conn, n int) {
		price := 0
		sendN := func(k int) bool {
			for range k {
				price++
				if send(ctx, conn, quoteFrame(isinA, strconv.Itoa(price))) != nil {
					return false
				}
			}
			return true
		}
		// The first batch, a partial one, then a full one in two parts (the last quote
		// arrives while the delivery waits for the clock).
		for _, k := range []int{1, 2, 3, 1} {
			if !sendN(k) {
				return
			}
			select {
			case <-step:
			case <-ctx.Done():
				return
			}
		}
		idle(ctx, conn)
	}
	ms := newMockServer(t, nil, quotes)
	defer ms.close()
	clk := clock.NewMock()
	c := manual(t, ms, func(o *Options) { o.Clock, o.BatchSize, o.GroupInterval = clk, 4, interval })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches := make(chan []string, 16)
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(batch []feed.Message) error {
			var prices []string
			for _, m := range batch {
				prices = append(prices, m.Price.String())
			}
			batches <- prices
			return nil
		})
	}()
	next := func() []string {
		t.Helper()
		select {
		case b := <-batches:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery")
			return nil
		}
	}
	if b := next(); !slices.Equal(b, []string{"1"}) {
		t.Fatalf("first batch %v, want [1] at once", b)
	}
	step <- struct{}{}
	// Quotes 2 and 3 are queued; the clock has not moved since the first delivery, so
	// neither can go before it does: they go together.
	eventually(t, "quotes 2 and 3 queued", func() bool { return c.Stats().Quotes.Accepted == 3 })
	clk.Add(interval)
	if b := next(); !slices.Equal(b, []string{"2", "3"}) {
		t.Fatalf("second batch %v, want [2 3]", b)
	}
	// A full batch goes without waiting for the clock.
	step <- struct{}{}
	eventually(t, "quotes 4 to 6 queued", func() bool { return c.Stats().Quotes.Accepted == 6 })
	step <- struct{}{}
	if b := next(); !slices.Equal(b, []string{"4", "5", "6", "7"}) {
		t.Fatalf("third batch %v, want [4 5 6 7]", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case b := <-batches:
		t.Fatalf("an extra batch %v", b)
	default:
	}
}
