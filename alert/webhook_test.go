package alert

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
)

var secret = []byte("s3cret")

// attempt is one request the receiver got.
type attempt struct {
	id, body, sig, key string
	status             int // 0: the connection was dropped
}

// receiver is a webhook endpoint on loopback whose behaviour the test scripts: decide
// returns the status for a request (0: drop the connection, as a server that is down).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	all    []attempt
	ok     map[string]int // id → 2xx answers
	want   int            // 2xx answers after which done is closed
	done   chan struct{}
	decide func(n int, id string) int
}

func newReceiver(t *testing.T, want int, decide func(n int, id string) int) *receiver {
	r := &receiver{ok: map[string]int{}, want: want, done: make(chan struct{}), decide: decide}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	a := attempt{id: string(body), body: string(body), sig: req.Header.Get(HeaderSignature), key: req.Header.Get(HeaderIdempotencyKey)}
	if e, err := hot.ParseEventJSON(body); err == nil {
		a.id = strconv.FormatUint(e.ID, 10)
	}
	r.mu.Lock()
	a.status = r.decide(len(r.all), a.id)
	r.all = append(r.all, a)
	if a.status >= 200 && a.status < 300 {
		if r.ok[a.id]++; len(r.ok) == r.want && r.ok[a.id] == 1 {
			close(r.done)
		}
	}
	r.mu.Unlock()
	if a.status == 0 {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.WriteHeader(a.status)
	io.WriteString(w, "answer "+strconv.Itoa(a.status))
}

func (r *receiver) attempts() []attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]attempt(nil), r.all...)
}

// ids returns the ids of evs that pass f.
func ids(evs []hot.Event, f Filter) []string {
	var out []string
	for i := range evs {
		if f.Match(&evs[i]) {
			out = append(out, strconv.FormatUint(evs[i].ID, 10))
		}
	}
	return out
}

// TestWebhookRetriesRejectsAndOutage: the receiver fails the first requests (503, then a
// 429), is down (connections dropped) for ten minutes of the consumer's mock clock, and
// refuses one event with a 400. Every other event arrives, each attempt at an id carries
// the same body and key and a valid signature, the 400 is counted rejected and not
// retried, events are sent in outbox order, and the backoff between attempts grows to its
// cap with jitter.
func TestWebhookRetriesRejectsAndOutage(t *testing.T) {
	log, p := openPipeline(t, t.TempDir())
	defer log.Close()
	defer p.Close()
	holdOutbox(t, p)
	appendAll(t, p, hotFeed(t, 6, 40), 400)
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	evs := storedEvents(t, p)
	all := ids(evs, Filter{})
	if len(all) < 10 {
		t.Fatalf("only %d hot events", len(all))
	}
	refused := all[4]
	clk := newTimerClock()
	// The receiver goes down at its 12th request, for ten minutes of the consumer's clock.
	const failFirst, downAt, outage = 3, 12, 10 * time.Minute
	var downUntil time.Time
	rcv := newReceiver(t, len(all)-1, func(n int, id string) int {
		now := clk.Now()
		if n == downAt {
			downUntil = now.Add(outage)
		}
		switch {
		case n < failFirst:
			return http.StatusServiceUnavailable
		case n == failFirst:
			return http.StatusTooManyRequests
		case id == refused:
			return http.StatusBadRequest
		case n >= downAt && now.Before(downUntil):
			return 0
		case n%7 == 0:
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	sink, err := NewWebhookSink(WebhookOptions{URL: rcv.srv.URL + "/hook", Secret: secret, Timeout: 5 * time.Second, Clock: clk, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	const minB, maxB = 500 * time.Millisecond, 30 * time.Second
	c, err := export.NewConsumer(p.Store(), sink, export.ConsumerOptions{FlushItems: 30, MinBackoff: minB, MaxBackoff: maxB,
		Poll: time.Second, Clock: clk, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	// Advance the mock clock by each timer the consumer sets (backoffs, polls) until every
	// event arrived.
	var waits []time.Duration
	idle := 0 // consecutive polls: the consumer has nothing left to do
loop:
	for {
		select {
		case d := <-clk.timers:
			waits = append(waits, d)
			if idle++; d != time.Second {
				idle = 0
			}
			if idle > 100 {
				rcv.mu.Lock()
				t.Fatalf("the consumer is idle with %d of %d events delivered; attempts %+v; stats %+v", len(rcv.ok), len(all)-1, rcv.all, sink.Stats())
			}
			clk.Add(d)
		case <-rcv.done:
			break loop
		}
	}
	cancel()
	for {
		select {
		case <-clk.timers: // let Run see ctx while it sets timers
			continue
		case <-done:
		}
		break
	}

	if downUntil.IsZero() || clk.Now().Before(downUntil) {
		t.Errorf("delivery finished at %v, before the outage ended (%v)", clk.Now(), downUntil)
	}
	// Every event but the refused one arrived with a 2xx, once.
	for _, id := range all {
		n := rcv.ok[id]
		switch {
		case id == refused && n != 0, id != refused && n != 1:
			t.Errorf("event %s: %d 2xx answers", id, n)
		}
	}
	// Attempts: the same body, key and a valid signature per id; ids in outbox order (a
	// retry repeats an id, the next id comes only after a success or a rejection); the
	// refused one asked once.
	bodies := map[string]string{}
	var failed, refusedTries int
	prev := uint64(0)
	for _, a := range rcv.attempts() {
		if a.key != a.id {
			t.Errorf("Idempotency-Key %q for event %s", a.key, a.id)
		}
		if !Verify(secret, []byte(a.body), a.sig) {
			t.Errorf("event %s: signature %q does not verify", a.id, a.sig)
		}
		if b, ok := bodies[a.id]; ok && b != a.body {
			t.Errorf("event %s: body changed between attempts:\n%s\n%s", a.id, b, a.body)
		}
		bodies[a.id] = a.body
		id, _ := strconv.ParseUint(a.id, 10, 64)
		if id < prev {
			t.Errorf("event %d sent after event %d", id, prev)
		}
		prev = id
		if a.status == 0 || a.status == 429 || a.status >= 500 {
			failed++
		}
		if a.id == refused {
			refusedTries++
		}
	}
	for _, e := range evs {
		if b := bodies[strconv.FormatUint(e.ID, 10)]; b != string(e.AppendJSON(nil)) {
			t.Errorf("event %d: body %s, want the §4.5 JSON %s", e.ID, b, e.AppendJSON(nil))
		}
	}
	if refusedTries != 1 {
		t.Errorf("the refused event was sent %d times", refusedTries)
	}
	st := sink.Stats()
	// The transport may itself retry a dropped request once (it carries an Idempotency-Key),
	// so the receiver can see more failures than the sink counts.
	if st.Delivered != uint64(len(all)-1) || st.Rejected != 1 || st.Retried < failFirst+1 || st.Retried > uint64(failed) {
		t.Errorf("stats %+v; %d failed attempts seen by the receiver", st, failed)
	}
	if st.LastSuccess.Before(downUntil) {
		t.Errorf("last success %v, before the outage ended", st.LastSuccess)
	}
	// Backoffs: capped, jittered, and reaching the cap during the outage.
	distinct := map[time.Duration]bool{}
	reached := false
	for _, d := range waits {
		if d == time.Second { // polls
			continue
		}
		if d > maxB || d < minB/2 {
			t.Errorf("backoff %v outside [%v, %v]", d, minB/2, maxB)
		}
		reached = reached || d >= maxB/2
		distinct[d] = true
	}
	if !reached || len(distinct) < 5 {
		t.Errorf("backoffs %v: want growth to the cap with jitter", waits)
	}

	// Metrics: per sink.
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(p.Store(), Delivery{Sink: sink, Consumer: c}))
	got := gather(t, reg)
	for name, v := range map[string]float64{
		"quotes_alert_backlog_events":                 0,
		"quotes_alert_delivered_total":                float64(len(all) - 1),
		"quotes_alert_rejected_total":                 1,
		"quotes_alert_retried_total":                  float64(st.Retried),
		"quotes_alert_filtered_total":                 0,
		"quotes_alert_duplicates_total":               0,
		"quotes_alert_last_success_timestamp_seconds": float64(st.LastSuccess.UnixNano()) / 1e9,
	} {
		if g, ok := got[name+"{sink="+sink.Name()+"}"]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
	if len(got) != 7 {
		t.Errorf("metrics %v", got)
	}
}

// gather returns the registry's metrics as name{label=value} → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + "{"
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue()
			}
			key += "}"
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestWebhookBacklogStaysOnDisk: with the receiver down, ingest goes on, the undelivered
// events stay in the outbox (retention keeps them) and the sink keeps nothing but its
// position; a new process (a new sink and consumer over the same data) delivers them all
// once the receiver is back, in order.
func TestWebhookBacklogStaysOnDisk(t *testing.T) {
	dir := t.TempDir()
	log, p := openPipeline(t, dir)
	msgs := hotFeed(t, 8, 60)
	var up sync.Mutex // guards isDown
	isDown := true
	rcv := newReceiver(t, -1, func(n int, id string) int {
		up.Lock()
		defer up.Unlock()
		if isDown {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	url := rcv.srv.URL
	newSink := func() *WebhookSink {
		s, err := NewWebhookSink(WebhookOptions{URL: url, Secret: secret, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	sink := newSink()
	c := newConsumer(t, p, sink, 100)
	ctx := context.Background()
	for i := 0; i < len(msgs); i += 500 {
		if err := p.Append(msgs[i:min(i+500, len(msgs))]); err != nil {
			t.Fatal(err)
		}
		c.Step(ctx) // fails once there are hot events
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 3; k++ {
		if _, err := c.Step(ctx); err == nil {
			t.Fatal("delivered with the receiver down")
		}
	}
	evs := storedEvents(t, p)
	if st := sink.Stats(); st.Delivered != 0 || st.Retried == 0 {
		t.Fatalf("stats while down: %+v", st)
	}
	if _, err := p.Store().TrimDelivered(); err != nil {
		t.Fatal(err)
	}
	backlog, err := Backlog(p.Store(), c)
	if err != nil || backlog != len(evs) {
		t.Fatalf("backlog = %d, %v; %d events", backlog, err, len(evs))
	}
	// The process ends; the events are only on disk.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	log.Close()

	up.Lock()
	isDown = false
	up.Unlock()
	log, p = openPipeline(t, dir)
	defer log.Close()
	defer p.Close()
	sink = newSink()
	c = newConsumer(t, p, sink, 100)
	if n, err := c.Drain(ctx); err != nil || n != 0 {
		t.Fatalf("drain: %d pending, %v", n, err)
	}
	if got := sink.Stats().Delivered; got != uint64(len(evs)) {
		t.Errorf("delivered %d of %d", got, len(evs))
	}
	var got []string
	for _, a := range rcv.attempts() {
		if a.status == http.StatusNoContent {
			got = append(got, a.id)
		}
	}
	if want := ids(evs, Filter{}); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if b, err := Backlog(p.Store(), c); err != nil || b != 0 {
		t.Errorf("backlog after drain = %d, %v", b, err)
	}
}

// TestWebhookFilter: only the allow-listed ISINs' events with a move above the minimum are
// sent; the others are counted as filtered.
func TestWebhookFilter(t *testing.T) {
	log, p := openPipeline(t, t.TempDir())
	defer log.Close()
	defer p.Close()
	msgs := hotFeed(t, 6, 40)
	// Instrument 5 moves by 12 % only: 125 → 140 would be 12 %; make its high price 112.
	for i := range msgs {
		if msgs[i].ISIN.String() == "HOT000000005" && msgs[i].Price > 110_000_000 {
			msgs[i].Price = 112_000_000
		}
	}
	holdOutbox(t, p)
	appendAll(t, p, msgs, 500)
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	isins, err := ParseISINList(strings.NewReader("# routed to this hook\nHOT000000001\n\n  HOT000000005  # small mover\nHOT000000001\n"))
	if err != nil {
		t.Fatal(err)
	}
	min15, err := hot.ParseThreshold("15")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFilter(min15, isins)
	evs := storedEvents(t, p)
	want := ids(evs, f)
	var five int
	for _, e := range evs {
		if e.ISIN.String() == "HOT000000005" {
			five++
		}
	}
	if len(want) == 0 || five == 0 || len(want) == len(evs) {
		t.Fatalf("filter selects %d of %d events (%d of the small mover): the test proves little", len(want), len(evs), five)
	}
	rcv := newReceiver(t, -1, func(int, string) int { return http.StatusOK })
	sink, err := NewWebhookSink(WebhookOptions{URL: rcv.srv.URL, Secret: secret, Filter: f, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	c := newConsumer(t, p, sink, 1000)
	if n, err := c.Drain(context.Background()); err != nil || n != 0 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	var got []string
	for _, a := range rcv.attempts() {
		got = append(got, a.id)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("sent %v, want %v", got, want)
	}
	if st := sink.Stats(); st.Filtered != uint64(len(evs)-len(want)) || st.Delivered != uint64(len(want)) {
		t.Errorf("stats %+v, %d events, %d selected", st, len(evs), len(want))
	}
}

func TestParseISINList(t *testing.T) {
	got, err := ParseISINList(strings.NewReader("AAAAAAAAAAA1\n# c\nBBBBBBBBBBB2 # x\r\n"))
	if err != nil || len(got) != 2 || got[0].String() != "AAAAAAAAAAA1" || got[1].String() != "BBBBBBBBBBB2" {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "# only comments\n", "AAAAAAAAAAA1\nshort\n", "aaaaaaaaaaa1\n"} {
		if _, err := ParseISINList(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ReadISINFile("/nonexistent/isins.txt"); err == nil {
		t.Error("missing file accepted")
	}
}

// TestMinChangeExact: the minimum is compared exactly, like the hot threshold.
func TestMinChangeExact(t *testing.T) {
	th, _ := hot.ParseThreshold("12.5")
	f := NewFilter(th, nil)
	ev := func(p feed.Price) *hot.Event { return &hot.Event{Price: p, ReferencePrice: 100_000_000} }
	if f.Match(ev(112_500_000)) || !f.Match(ev(112_500_001)) || !f.Match(ev(87_499_999)) || f.Match(ev(87_500_000)) {
		t.Error("12.5 % is not compared exactly")
	}
	if !(Filter{}).Match(ev(100_000_001)) {
		t.Error("the zero filter does not select everything")
	}
}

// TestSendTest: one signed sample event; the answer is returned whatever its status.
func TestSendTest(t *testing.T) {
	var got http.Header
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r.Header.Clone(), must(io.ReadAll(r.Body))
		if r.URL.Path == "/bad" {
			http.Error(w, "no such hook", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "thanks")
	}))
	defer srv.Close()
	clk := newTimerClock()
	resp, err := SendTest(context.Background(), WebhookOptions{URL: srv.URL + "/hook", Secret: secret, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusAccepted || !resp.Delivered || string(resp.Body) != "thanks" || string(resp.Payload) != string(body) {
		t.Errorf("response %+v", resp)
	}
	if !Verify(secret, body, got.Get(HeaderSignature)) || got.Get(HeaderIdempotencyKey) != "0" || got.Get(HeaderTest) != "true" || got.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", got)
	}
	e, err := hot.ParseEventJSON(body)
	if err != nil || e.ID != 0 || e.TS != t0.UnixNano() || e.ChangePercent.String() != "10.5" {
		t.Errorf("sample event %s: %v", body, err)
	}
	resp, err = SendTest(context.Background(), WebhookOptions{URL: srv.URL + "/bad", Secret: secret})
	if err != nil || resp.Status != http.StatusNotFound || resp.Delivered {
		t.Errorf("404: %+v, %v", resp, err)
	}
	srv.Close()
	if _, err := SendTest(context.Background(), WebhookOptions{URL: srv.URL, Secret: secret, Timeout: time.Second}); err == nil {
		t.Error("no error from a closed server")
	}
	if _, err := SendTest(context.Background(), WebhookOptions{URL: "ftp://x", Secret: secret}); err == nil {
		t.Error("ftp URL accepted")
	}
	if _, err := NewWebhookSink(WebhookOptions{URL: "http://x"}); err == nil {
		t.Error("no secret accepted")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
