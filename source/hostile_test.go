package source

// The hostile-partner acceptance tests of SPEC §14 (issue 14): a real websocket server on
// loopback that misbehaves the way partners do — late, empty and stalled snapshots, garbage
// after a valid message, 10 MB frames, bursts of 100k ADDs, accept-then-close loops — and a
// client on a mock clock. They assert what must hold whatever the partner does: no history is
// lost (no synthetic DELETE of a live instrument), memory stays bounded, reconnects are rate
// limited, duplicate ADDs do not reach the consumer (the WAL), and rejects are counted.

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/quotesdev/quotes/feed"
)

// seedISIN is the i-th instrument of the tests' seeded registries.
func seedISIN(i int) string { return fmt.Sprintf("S%011d", i) }

// seeded returns n active instruments as recovered from a WAL: seedISIN(i) → "d<i>".
func seeded(t testing.TB, n int) map[feed.ISIN]string {
	m := make(map[feed.ISIN]string, n)
	for i := 0; i < n; i++ {
		m[isin(t, seedISIN(i))] = fmt.Sprintf("d%d", i)
	}
	return m
}

// snapshotFrames returns the ADD frames of seeded instruments from..to-1.
func snapshotFrames(from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, addFrame(seedISIN(i), fmt.Sprintf("d%d", i)))
	}
	return out
}

// kinds counts delivered messages by kind.
func kinds(msgs []feed.Message) map[feed.Kind]int {
	m := map[feed.Kind]int{}
	for _, x := range msgs {
		m[x.Kind]++
	}
	return m
}

// noHistoryLost fails if any DELETE was delivered: in these scenarios every instrument stays
// live at the partner, so any DELETE would be a synthetic one destroying history.
func noHistoryLost(t *testing.T, h *harness) {
	t.Helper()
	for _, m := range h.messages() {
		if m.Kind == feed.KindDelete {
			t.Fatalf("a live instrument was deleted: %+v", m)
		}
	}
	if st := h.c.Stats(); st.SyntheticDeletes != 0 {
		t.Fatalf("%d synthetic DELETEs", st.SyntheticDeletes)
	}
}

// snapshotSettles drains snapshot checks until one reports the snapshot over (0), advancing
// the clock by what each check asks for, at most n times.
func (h *harness) checksUntilSettled(n int) bool {
	h.t.Helper()
	for i := 0; i < n; i++ {
		d := h.nextSnapshotCheck()
		if d == 0 {
			return true
		}
		h.advance(d)
	}
	return false
}

func TestHostileLateSnapshot(t *testing.T) {
	const n, quiet = 50, time.Second
	s := newScript()
	h := newHarness(t, scripted(s), nil, func(_ *harness, o *Options) {
		o.SnapshotQuiet = quiet
		o.Active = seeded(t, n)
	}, true)
	eventually(t, "connected", h.c.Connected)
	// The partner says nothing for 10 s after connecting: the snapshot is waited for.
	for i := 0; i < 10; i++ {
		h.advance(quiet)
		if d := h.nextSnapshotCheck(); d != quiet {
			t.Fatalf("check %d during the silence: %v left, want %v (waiting)", i, d, quiet)
		}
	}
	for _, f := range snapshotFrames(0, n) {
		s.frames <- f
	}
	eventually(t, "snapshot read", func() bool { return h.c.Stats().DuplicateAdds == n })
	h.advance(quiet)
	if !h.checksUntilSettled(5) {
		t.Fatal("the late snapshot never settled")
	}
	st := h.c.Stats()
	if st.Snapshots != 1 || st.EmptySnapshots != 1 || st.Active != n {
		t.Fatalf("snapshots %d, empty %d, active %d; want 1, 1, %d", st.Snapshots, st.EmptySnapshots, st.Active, n)
	}
	noHistoryLost(t, h)
	if got := len(h.messages()); got != 0 {
		t.Fatalf("%d messages delivered for an unchanged snapshot, want 0", got)
	}
}

func TestHostileEmptySnapshot(t *testing.T) {
	const n, quiet = 50, time.Second
	h := newHarness(t, nil, nil, func(_ *harness, o *Options) {
		o.SnapshotQuiet = quiet
		o.SnapshotMaxDelete = 100 // even when every settled snapshot is trusted
		o.Active = seeded(t, n)
	}, true)
	eventually(t, "connected", h.c.Connected)
	for i := 0; i < 30; i++ {
		h.advance(quiet)
		if d := h.nextSnapshotCheck(); d == 0 {
			t.Fatalf("an empty snapshot settled after %v", time.Duration(i+1)*quiet)
		}
	}
	noHistoryLost(t, h)
	if st := h.c.Stats(); st.EmptySnapshots != 1 || st.Active != n || st.Snapshots != 0 {
		t.Fatalf("empty snapshots %d, active %d, settled %d; want 1, %d, 0", st.EmptySnapshots, st.Active, st.Snapshots, n)
	}
}

// TestHostileStalledSnapshot: half a snapshot, then silence while the connection stays up.
// The quiet settles it, and the delete bound keeps every instruments it did not mention.
func TestHostileStalledSnapshot(t *testing.T) {
	const n, quiet = 100, time.Second
	s := newScript()
	reg := prometheus.NewRegistry()
	h := newHarness(t, scripted(s), nil, func(_ *harness, o *Options) {
		o.SnapshotQuiet = quiet
		o.Active = seeded(t, n)
		o.Registerer = reg
	}, true)
	eventually(t, "connected", h.c.Connected)
	for _, f := range snapshotFrames(0, n/2) {
		s.frames <- f
	}
	eventually(t, "half a snapshot", func() bool { return h.c.Stats().DuplicateAdds == n/2 })
	h.advance(quiet)
	if !h.checksUntilSettled(5) {
		t.Fatal("snapshot never settled")
	}
	noHistoryLost(t, h)
	st := h.c.Stats()
	if st.WithheldSnapshots != 1 || st.DeletesWithheld != n/2 || st.Withheld != n/2 || st.Active != n {
		t.Fatalf("withheld snapshots %d, deletes withheld %d (now %d), active %d; want 1, %d, %d, %d",
			st.WithheldSnapshots, st.DeletesWithheld, st.Withheld, st.Active, n/2, n/2, n)
	}
	if v := metricValue(t, reg, "quotes_source_deletes_withheld_total", nil); v != n/2 {
		t.Fatalf("quotes_source_deletes_withheld_total = %v, want %d", v, n/2)
	}
	// The rest of the snapshot arrives late: nothing changes, nothing is delivered.
	for _, f := range snapshotFrames(n/2, n) {
		s.frames <- f
	}
	eventually(t, "rest of the snapshot", func() bool { return h.c.Stats().DuplicateAdds == n })
	noHistoryLost(t, h)
	if got := len(h.messages()); got != 0 {
		t.Fatalf("%d messages delivered, want 0", got)
	}
}

// TestHostileSnapshotPartnerHung: half a snapshot, then the partner process hangs (it reads
// nothing, so pings go unanswered). Even with every settled snapshot trusted (bound 100 %),
// the quiet of a dead connection does not settle it: the ping is not answered, the
// connection is dropped as stalled, the snapshot abandoned.
func TestHostileSnapshotPartnerHung(t *testing.T) {
	const n, quiet, timeout = 100, time.Second, 8 * time.Second
	instruments := func(ctx context.Context, conn *websocket.Conn, k int) {
		if k == 1 {
			if send(ctx, conn, snapshotFrames(0, n/2)...) == nil {
				<-ctx.Done() // hung: never reads, never answers a ping
			}
			return
		}
		idle(ctx, conn)
	}
	h := newHarness(t, instruments, nil, func(_ *harness, o *Options) {
		o.SnapshotQuiet = quiet
		o.ReadTimeout = timeout
		o.SnapshotMaxDelete = 100
		o.Active = seeded(t, n)
	}, true)
	eventually(t, "half a snapshot", func() bool { return h.c.Stats().DuplicateAdds == n/2 })
	h.advance(quiet) // rules 1 and 2 hold: the watchdog pings and waits for the pong
	eventually(t, "stall detected", func() bool {
		if h.c.Stats().Instruments.Stalls >= 1 {
			return true
		}
		h.advance(time.Second)
		return false
	})
	noHistoryLost(t, h)
	if st := h.c.Stats(); st.Snapshots != 0 {
		t.Fatalf("%d snapshots settled, want 0", st.Snapshots)
	}
}

// TestHostileGarbageAfterValid: every connection sends one valid quote, then garbage as fast
// as it can. Each connection is throttled after RejectBurst rejects, the backoff is not reset
// by the valid message, and every reject is counted.
func TestHostileGarbageAfterValid(t *testing.T) {
	const burst, conns = 20, 8
	quotes := func(ctx context.Context, conn *websocket.Conn, k int) {
		if send(ctx, conn, quoteFrame(isinA, "1")) != nil {
			return
		}
		for send(ctx, conn, "garbage{") == nil {
		}
	}
	h := newHarness(t, nil, quotes, func(_ *harness, o *Options) { o.RejectBurst = burst }, true)
	eventually(t, "connections", func() bool { return h.ms.count("/quotes") >= conns })
	h.stop()

	st := h.c.Stats()
	c := int(st.Quotes.Connects)
	if st.Quotes.Throttled < uint64(c-1) {
		t.Errorf("throttled %d of %d connections", st.Quotes.Throttled, c)
	}
	rej := st.Rejects[feed.ReasonMalformedJSON]
	if rej < uint64((c-1)*(burst+1)) || rej > uint64(c*(burst+1)) {
		t.Errorf("malformed rejects %d for %d connections, want %d per throttled connection", rej, c, burst+1)
	}
	if n := len(h.rejectCounts()); n != 1 {
		t.Errorf("reject reasons %v", h.rejectCounts())
	}
	if q := kinds(h.messages())[feed.KindQuote]; q > c {
		t.Errorf("%d quotes delivered for %d connections", q, c)
	}
	checkBackoffGrows(t, h, "quotes")
}

// checkBackoffGrows asserts that the reconnect delays of stream were never reset: attempt i
// waited at least min(BackoffMax, BackoffMin×2^i)/2, so the reconnect rate is bounded.
func checkBackoffGrows(t *testing.T, h *harness, stream string) {
	t.Helper()
	h.mu.Lock()
	delays := append([]time.Duration(nil), h.delays[stream]...)
	h.mu.Unlock()
	if len(delays) < 3 {
		t.Fatalf("%s: only %d reconnects", stream, len(delays))
	}
	var total time.Duration
	for i, d := range delays {
		b := DefaultBackoffMax
		if i < 20 {
			b = min(b, DefaultBackoffMin<<i)
		}
		if d < b/2 {
			t.Fatalf("%s: reconnect %d after %v, want at least %v (backoff reset?): %v", stream, i, d, b/2, delays)
		}
		total += d
	}
	// With the delays above, k reconnects take at least Σ b_i/2: e.g. 8 take ≥ 12.75 s.
	t.Logf("%s: %d reconnects over %v of backoff", stream, len(delays), total)
}

// TestHostileAcceptThenClose: both endpoints accept the handshake and close at once, forever.
func TestHostileAcceptThenClose(t *testing.T) {
	const n = 30
	closeAtOnce := func(context.Context, *websocket.Conn, int) {}
	h := newHarness(t, closeAtOnce, closeAtOnce, func(_ *harness, o *Options) { o.Active = seeded(t, n) }, true)
	eventually(t, "connections", func() bool {
		return h.ms.count("/instruments") >= 12 && h.ms.count("/quotes") >= 12
	})
	h.stop()
	checkBackoffGrows(t, h, "instruments")
	checkBackoffGrows(t, h, "quotes")
	// Rate: after the backoff reached its cap, at most one connection per BackoffMax/2 of
	// (mock) time; over the whole run at most attempts-to-cap + elapsed/(BackoffMax/2).
	elapsed := h.clk.Now().Sub(epoch())
	conns := h.c.Stats().Quotes.Connects
	toCap := uint64(8) // 100ms·2^7 > 10s
	if limit := toCap + uint64(elapsed/(DefaultBackoffMax/2)) + 1; conns > limit {
		t.Errorf("%d connections in %v of mock time, want at most %d", conns, elapsed, limit)
	}
	noHistoryLost(t, h)
	if st := h.c.Stats(); st.Active != n || st.Snapshots != 0 {
		t.Errorf("active %d, settled snapshots %d", st.Active, st.Snapshots)
	}
}

// peakHeap samples the in-use heap until stop is closed and returns the largest value.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-tk.C:
			}
		}
	}()
	return out
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestHostileHugeFrames: every connection sends a valid quote and then a 10 MB frame. The
// client never buffers more than its read limit, counts each frame as oversized, and backs
// off.
func TestHostileHugeFrames(t *testing.T) {
	const conns = 4
	huge := []byte(`{"type":"QUOTE","data":{"isin":"` + isinA + `","price":1,"pad":"` + strings.Repeat("x", 10<<20) + `"}}`)
	quotes := func(ctx context.Context, conn *websocket.Conn, k int) {
		if send(ctx, conn, quoteFrame(isinA, "1")) != nil {
			return
		}
		if conn.Write(ctx, websocket.MessageText, huge) != nil {
			return
		}
		idle(ctx, conn)
	}
	base := heapInuse()
	stop := make(chan struct{})
	peak := peakHeap(stop)
	h := newHarness(t, nil, quotes, nil, true)
	eventually(t, "oversized frames", func() bool { return h.c.Stats().Rejects[feed.ReasonOversized] >= conns })
	close(stop)
	grew := int64(<-peak) - int64(base)
	st := h.c.Stats()
	if q := uint64(kinds(h.messages())[feed.KindQuote]); q != st.Quotes.Connects && q != st.Quotes.Connects-1 {
		t.Errorf("%d quotes delivered over %d connections", q, st.Quotes.Connects)
	}
	// The frames themselves are 10 MB each; the client holds at most MaxFrame of one.
	if grew > 8<<20 {
		t.Errorf("heap grew by %d MB while %d frames of 10 MB arrived", grew>>20, conns)
	}
	t.Logf("heap peak +%d KB over %d connections", grew>>10, st.Quotes.Connects)
	checkBackoffGrows(t, h, "quotes")
}

// TestHostileAddBurst: each connection sends a burst of 100k ADDs (the same instruments every
// time) and drops. Only the first burst reaches the consumer: the reconnects' copies are
// duplicates of active instruments and are not delivered, so the WAL does not grow with
// reconnects.
func TestHostileAddBurst(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	const bursts = 3
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = []byte(addFrame(fmt.Sprintf("B%011d", i), "burst instrument"))
	}
	var sent atomic.Int64
	release := make(chan struct{})
	instruments := func(ctx context.Context, conn *websocket.Conn, k int) {
		if k > bursts {
			idle(ctx, conn)
			return
		}
		for _, f := range frames {
			if conn.Write(ctx, websocket.MessageText, f) != nil {
				return
			}
			sent.Add(1)
		}
		// A marker behind the burst; once the client delivered it, drop the connection.
		if send(ctx, conn, quoteFrame(isinA, fmt.Sprint(k))) != nil {
			return
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	base := heapInuse()
	stop := make(chan struct{})
	peak := peakHeap(stop)
	var delivered atomic.Int64
	h := newHarness(t, instruments, nil, nil, true)
	for k := 1; k <= bursts; k++ {
		eventually(t, fmt.Sprintf("burst %d", k), func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			last := len(h.got) - 1
			return last >= 0 && h.got[last].Kind == feed.KindQuote && h.got[last].Price == feed.Price(k*feed.PriceScale)
		})
		release <- struct{}{}
	}
	eventually(t, "reconnected", func() bool { return h.ms.count("/instruments") > bursts })
	close(stop)
	delivered.Store(int64(len(h.messages())))
	grew := int64(<-peak) - int64(base)
	st := h.c.Stats()
	if got := kinds(h.messages())[feed.KindAdd]; got != n {
		t.Logf("stats %+v", st)
		t.Fatalf("%d ADDs delivered after %d bursts of %d, want %d", got, bursts, n, n)
	}
	if st.DuplicateAdds != uint64((bursts-1)*n) || st.Active != n {
		t.Fatalf("duplicates %d, active %d", st.DuplicateAdds, st.Active)
	}
	noHistoryLost(t, h)
	// The harness keeps every delivered message (n × ~80 B); the client's own state is the
	// active set (n entries) and a bounded queue. The slack covers GC timing and the race
	// detector's shadow memory; keeping the duplicates would need several times more.
	if limit := int64(n)*400 + 32<<20; grew > limit {
		t.Errorf("heap grew by %d MB for %d instruments", grew>>20, n)
	}
	t.Logf("%d frames sent, %d delivered, heap peak +%d MB", sent.Load(), delivered.Load(), grew>>20)
}

// TestHealthyConnectionResetsBackoff: the backoff starts over only after a connection stayed
// up for HealthyAfter.
func TestHealthyConnectionResetsBackoff(t *testing.T) {
	const healthy = 30 * time.Second
	// Connection k stays up until released by the test, then drops.
	release := make(chan struct{}, 16)
	quotes := func(ctx context.Context, conn *websocket.Conn, k int) {
		if k <= 3 {
			return // three quick failures grow the backoff
		}
		closed := conn.CloseRead(ctx)
		select {
		case <-release:
		case <-closed.Done():
		}
	}
	h := newHarness(t, nil, quotes, func(_ *harness, o *Options) {
		o.ReadTimeout = time.Hour // no stall detection while the clock jumps
		o.HealthyAfter = healthy
	}, true)
	delays := func() []time.Duration {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]time.Duration(nil), h.delays["quotes"]...)
	}
	eventually(t, "4th connection", func() bool { return h.ms.count("/quotes") == 4 && h.c.Stats().Quotes.Connected })
	// Up for just under HealthyAfter: the next delay keeps growing (attempt 3).
	h.advance(healthy - time.Second)
	release <- struct{}{}
	eventually(t, "5th connection", func() bool { return h.ms.count("/quotes") == 5 && h.c.Stats().Quotes.Connected })
	d := delays()
	if len(d) != 4 || d[3] < DefaultBackoffMin<<3/2 {
		t.Fatalf("delays %v: the 4th should be attempt 3 (≥ %v)", d, DefaultBackoffMin<<3/2)
	}
	// Up for HealthyAfter: the backoff starts over.
	h.advance(healthy)
	release <- struct{}{}
	eventually(t, "6th connection", func() bool { return h.ms.count("/quotes") == 6 })
	d = delays()
	if len(d) != 5 || d[4] > DefaultBackoffMin {
		t.Fatalf("delays %v: the 5th should be attempt 0 (≤ %v)", d, DefaultBackoffMin)
	}
}

func TestPauseResume(t *testing.T) {
	var mu sync.Mutex
	var scripts []*connScript
	quotes := func(ctx context.Context, conn *websocket.Conn, k int) {
		s := newScript()
		mu.Lock()
		scripts = append(scripts, s)
		mu.Unlock()
		scripted(s)(ctx, conn, 1)
	}
	script := func(k int) *connScript {
		var s *connScript
		eventually(t, "connection script", func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(scripts) > k {
				s = scripts[k]
			}
			return s != nil
		})
		return s
	}
	reg := prometheus.NewRegistry()
	h := newHarness(t, nil, quotes, func(_ *harness, o *Options) { o.Registerer = reg }, true)
	eventually(t, "connected", h.c.Connected)
	script(0).frames <- quoteFrame(isinA, "1")
	h.waitMessages(1)

	h.c.Pause("disk full")
	eventually(t, "disconnected", func() bool {
		st := h.c.Stats()
		return !st.Instruments.Connected && !st.Quotes.Connected
	})
	if p, why := h.c.Paused(); !p || why != "disk full" {
		t.Fatalf("Paused() = %v, %q", p, why)
	}
	if v := metricValue(t, reg, "quotes_source_paused", nil); v != 1 {
		t.Fatalf("quotes_source_paused = %v", v)
	}
	for i := 0; i < 5; i++ {
		h.advance(DefaultBackoffMax)
	}
	if c := h.ms.count("/quotes"); c != 1 {
		t.Fatalf("%d connections while paused", c)
	}
	st := h.c.Stats()
	if st.Quotes.Disconnects != 0 || st.Instruments.Disconnects != 0 {
		t.Fatalf("a pause counted as a disconnect: %+v", st)
	}
	h.c.Resume()
	eventually(t, "reconnected", h.c.Connected)
	script(1).frames <- quoteFrame(isinA, "2")
	got := h.waitMessages(2)
	if got[1].Price.String() != "2" {
		t.Fatalf("after resume got %+v", got[1])
	}
	if v := metricValue(t, reg, "quotes_source_paused", nil); v != 0 {
		t.Fatalf("quotes_source_paused = %v after Resume", v)
	}
	if v := metricValue(t, reg, "quotes_source_connects_total", map[string]string{"stream": "quotes"}); v != 2 {
		t.Fatalf("quotes_source_connects_total{stream=quotes} = %v, want 2", v)
	}
}

func TestDeleteLimit(t *testing.T) {
	for _, tc := range []struct {
		active  int
		percent float64
		want    int
	}{
		{0, 10, 1}, {1, 10, 1}, {9, 10, 1}, {10, 10, 1}, {19, 10, 1}, {20, 10, 2},
		{5000, 10, 500}, {5000, 100, 5000}, {3, 100, 3}, {1000, 0.5, 5}, {30, 10, 3},
	} {
		if got := deleteLimit(tc.active, tc.percent); got != tc.want {
			t.Errorf("deleteLimit(%d, %v) = %d, want %d", tc.active, tc.percent, got, tc.want)
		}
	}
}

// TestSnapshotDeletesWithinBound: a snapshot missing no more than the bound is reconciled.
func TestSnapshotDeletesWithinBound(t *testing.T) {
	const n, quiet = 100, time.Second
	s := newScript()
	h := newHarness(t, scripted(s), nil, func(_ *harness, o *Options) {
		o.SnapshotQuiet = quiet
		o.Active = seeded(t, n)
	}, true)
	eventually(t, "connected", h.c.Connected)
	for _, f := range snapshotFrames(10, n) { // 0..9 were deleted while we were away: 10 %
		s.frames <- f
	}
	eventually(t, "snapshot", func() bool { return h.c.Stats().DuplicateAdds == n-10 })
	h.advance(quiet)
	if !h.checksUntilSettled(5) {
		t.Fatal("not settled")
	}
	got := h.waitMessages(10)
	for i, m := range got {
		if m.Kind != feed.KindDelete || m.ISIN.String() != seedISIN(i) || m.Description != fmt.Sprintf("d%d", i) {
			t.Fatalf("message %d: %+v, want the synthetic DELETE of %s", i, m, seedISIN(i))
		}
	}
	if st := h.c.Stats(); st.SyntheticDeletes != 10 || st.Active != n-10 || st.WithheldSnapshots != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// stop ends Run and checks its result (the cleanup then finds it returned).
func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Fatalf("Run: %v", err)
	}
	h.done <- nil
}

// metricValue returns the value of the series name{labels} in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == k && lp.GetValue() == v {
			return true
		}
	}
	return false
}
