package alert

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/internal/natstest"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/store"
)

const subject = "quotes.hot"

func newNATSSink(t testing.TB, srv *natstest.Server, timeout time.Duration) *NATSSink {
	t.Helper()
	s, err := NewNATSSink(NATSOptions{URL: srv.URL + "/" + subject, Timeout: timeout, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newConsumer(t testing.TB, p *pipeline.Pipeline, sink export.Sink, flush int) *export.Consumer {
	t.Helper()
	c, err := export.NewConsumer(p.Store(), sink, export.ConsumerOptions{FlushItems: flush, Logger: quietLogger(),
		MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// streamEvents reads every message of the stream capturing subject, in stream order,
// checking that each carries its event id as Nats-Msg-Id.
func streamEvents(t *testing.T, srv *natstest.Server) ([]hot.Event, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := srv.JetStream(t)
	st, err := js.Stream(ctx, DefaultNATSStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Duplicates != DefaultDuplicateWindow || len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != subject {
		t.Errorf("stream config: duplicates %v, subjects %v", info.Config.Duplicates, info.Config.Subjects)
	}
	var (
		evs    []hot.Event
		bodies []string
	)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		e, err := hot.ParseEventJSON(m.Data)
		if err != nil {
			t.Fatalf("message %d: %v: %s", seq, err, m.Data)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != strconv.FormatUint(e.ID, 10) {
			t.Errorf("message %d: Nats-Msg-Id %q for event %d", seq, got, e.ID)
		}
		evs = append(evs, e)
		bodies = append(bodies, string(m.Data))
	}
	return evs, bodies
}

// checkStream verifies that the stream holds exactly the store's hot events, once each, as
// their §4.5 JSON, in id order per instrument.
func checkStream(t *testing.T, srv *natstest.Server, want []hot.Event) {
	t.Helper()
	got, bodies := streamEvents(t, srv)
	if len(want) == 0 {
		t.Fatal("the store has no hot events: the test proves nothing")
	}
	byID := map[uint64]int{}
	last := map[feed.ISIN]uint64{}
	for i, e := range got {
		if byID[e.ID]++; byID[e.ID] > 1 {
			t.Errorf("event %d is %d times in the stream", e.ID, byID[e.ID])
		}
		if e.ID <= last[e.ISIN] {
			t.Errorf("event %d of %s after event %d: out of order", e.ID, e.ISIN, last[e.ISIN])
		}
		last[e.ISIN] = e.ID
		_ = i
	}
	wantBody := map[uint64]string{}
	for _, e := range want {
		wantBody[e.ID] = string(e.AppendJSON(nil))
		if byID[e.ID] == 0 {
			t.Errorf("event %d is not in the stream", e.ID)
		}
	}
	for i, e := range got {
		if b, ok := wantBody[e.ID]; !ok {
			t.Errorf("event %d in the stream is not in the store", e.ID)
		} else if b != bodies[i] {
			t.Errorf("event %d: stream has %s, the store's JSON is %s", e.ID, bodies[i], b)
		}
	}
	if len(got) != len(want) {
		t.Errorf("the stream has %d messages, the store %d events", len(got), len(want))
	}
}

// crashingSink delivers through the real sink but fails after `after` events of the flush
// have been published (then it behaves like a process killed mid-flush: the test abandons
// the consumer with its intent on disk).
type crashingSink struct {
	*NATSSink
	after int
}

var errCrash = errors.New("simulated crash")

func (c *crashingSink) Write(ctx context.Context, flushID uint64, items []store.OutboxItem) error {
	n := 0
	for i := range items {
		if items[i].Kind == store.OutboxHot {
			if n++; n > c.after {
				if err := c.NATSSink.Write(ctx, flushID, items[:i]); err != nil {
					return err
				}
				return errCrash
			}
		}
	}
	return c.NATSSink.Write(ctx, flushID, items)
}

// TestNATSReplayExactlyOnce replays a feed with hot events through the pipeline into a
// real nats-server while the pipeline is abandoned and reopened (a crash), flushes are cut
// off half way (a crash mid-flush: the intent is redone by a new consumer and sink), and
// finally the consumer is rewound to the start (everything published again): the stream
// holds exactly the store's events, once each, in order per instrument.
func TestNATSReplayExactlyOnce(t *testing.T) {
	srv := natstest.Start(t)
	msgs := hotFeed(t, 10, 60)
	dir := filepath.Join(t.TempDir(), "data")
	log, p := openPipeline(t, dir)
	holdOutbox(t, p) // for the rewind below
	const flush = 40 // items per flush: many flushes, most with a few hot events
	c := newConsumer(t, p, newNATSSink(t, srv, 10*time.Second), flush)
	ctx := context.Background()
	crashes, redone := 0, uint64(0)
	for i, n := 0, 0; i < len(msgs); i += 300 {
		if err := p.Append(msgs[i:min(i+300, len(msgs))]); err != nil {
			t.Fatal(err)
		}
		n++
		if n%4 == 0 {
			// A crash in the middle of a flush: the sink published two of its events, then
			// the process died (the intent stays on disk).
			redone += c.Stats().Redone
			cs := &crashingSink{NATSSink: newNATSSink(t, srv, 10*time.Second), after: 2}
			cc := newConsumer(t, p, cs, flush)
			for {
				k, err := cc.Step(ctx)
				if errors.Is(err, errCrash) {
					crashes++
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if k == 0 {
					break
				}
			}
			redone += cc.Stats().Redone
		}
		if n%4 == 0 || n%3 == 0 {
			// The process dies: pipeline and consumer abandoned without a flush.
			redone += c.Stats().Redone
			log.Close()
			log, p = openPipeline(t, dir)
			c = newConsumer(t, p, newNATSSink(t, srv, 10*time.Second), flush)
			continue
		}
		// Deliver part of what is there.
		for k := 0; k < 3; k++ {
			if _, err := c.Step(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Drain(ctx); err != nil || n != 0 {
		t.Fatalf("drain: %d pending, %v", n, err)
	}
	redone += c.Stats().Redone
	if crashes == 0 || redone == 0 {
		t.Fatalf("%d crashes mid-flush, %d flushes redone: the test proves little", crashes, redone)
	}
	want := storedEvents(t, p)
	checkStream(t, srv, want)
	if b, err := Backlog(p.Store(), c); err != nil || b != 0 {
		t.Errorf("backlog after drain = %d, %v", b, err)
	}

	// Rewind the consumer to the start: every event still in the outbox is published again,
	// JetStream drops them all as duplicates.
	if err := p.Store().CompleteIntent(NATSConsumerName, 0); err != nil {
		t.Fatal(err)
	}
	sink := newNATSSink(t, srv, 10*time.Second)
	c = newConsumer(t, p, sink, flush)
	inOutbox, err := p.Store().CountOutboxHot(1, p.Applied())
	if err != nil || inOutbox == 0 {
		t.Fatalf("hot events in the outbox: %d, %v", inOutbox, err)
	}
	if n, err := c.Drain(ctx); err != nil || n != 0 {
		t.Fatalf("drain after rewind: %d pending, %v", n, err)
	}
	st := sink.Stats()
	if st.Delivered != uint64(inOutbox) || st.Duplicates != st.Delivered {
		t.Errorf("after rewind: %d delivered, %d duplicates, %d in the outbox", st.Delivered, st.Duplicates, inOutbox)
	}
	checkStream(t, srv, want)
	p.Close()
	log.Close()
}

// TestNATSServerDownThenUp: with the server killed, Write fails (counted as retried), the
// backlog stays in the outbox and ingest goes on; after a restart delivery catches up,
// exactly once.
func TestNATSServerDownThenUp(t *testing.T) {
	srv := natstest.Start(t)
	msgs := hotFeed(t, 6, 40)
	log, p := openPipeline(t, t.TempDir())
	defer log.Close()
	defer p.Close()
	sink := newNATSSink(t, srv, 500*time.Millisecond)
	c := newConsumer(t, p, sink, 50)
	ctx := context.Background()
	half := len(msgs) / 2
	appendAll(t, p, msgs[:half], 500)
	for k := 0; k < 5; k++ { // deliver some
		if _, err := c.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	delivered := sink.Stats().Delivered
	if delivered == 0 {
		t.Fatal("nothing delivered before the outage")
	}

	srv.Kill()
	appendAll(t, p, msgs[half:], 500) // ingest is not held up
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := c.Step(ctx)
		if err != nil {
			break
		}
		if n == 0 {
			t.Fatal("everything delivered with the server down")
		}
	}
	st := sink.Stats()
	if st.Retried == 0 || st.Delivered != delivered || st.LastError == "" {
		t.Errorf("while down: %+v", st)
	}
	backlog, err := Backlog(p.Store(), c)
	if err != nil {
		t.Fatal(err)
	}
	want := storedEvents(t, p)
	if backlog == 0 || backlog > len(want) {
		t.Fatalf("backlog while down = %d of %d events", backlog, len(want))
	}

	srv.Restart(t)
	// The client reconnects on its own; until it has, attempts time out.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := c.Step(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery after the restart: %v", err)
		}
	}
	if n, err := c.Drain(ctx); err != nil || n != 0 {
		t.Fatalf("drain: %d pending, %v", n, err)
	}
	checkStream(t, srv, want)
	if st := sink.Stats(); st.LastSuccess.IsZero() || st.LastError != "" {
		t.Errorf("after catching up: %+v", st)
	}
}

func TestParseNATSURL(t *testing.T) {
	for _, tc := range []struct{ in, server, subject string }{
		{"nats://127.0.0.1:4333/quotes.hot", "nats://127.0.0.1:4333", "quotes.hot"},
		{"nats://broker/alerts", "nats://broker:4222", "alerts"},
		{"tls://u:p@broker:4443/a.b.c", "tls://u:p@broker:4443", "a.b.c"},
	} {
		server, subject, err := ParseNATSURL(tc.in)
		if err != nil || server != tc.server || subject != tc.subject {
			t.Errorf("ParseNATSURL(%q) = %q, %q, %v", tc.in, server, subject, err)
		}
	}
	for _, bad := range []string{"", "nats://host:4222", "nats://host:4222/", "http://host/x", "nats:///x", "nats://h/a.*", "nats://h/a.>", "nats://h/a..b", "nats://h/a/b", "nats://h/x?y=1"} {
		if _, _, err := ParseNATSURL(bad); err == nil {
			t.Errorf("ParseNATSURL(%q) accepted", bad)
		}
	}
	if _, err := NewNATSSink(NATSOptions{URL: "nats://h/x", Stream: "a.b"}); err == nil {
		t.Error("stream name with a dot accepted")
	}
}

// TestNATSExistingStream: a stream that already captures the subject is used as it is; one
// of the configured name that captures other subjects is an error that names the fix.
func TestNATSExistingStream(t *testing.T) {
	srv := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := srv.JetStream(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"alerts.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: DefaultNATSStream, Subjects: []string{"other"}}); err != nil {
		t.Fatal(err)
	}
	e := hot.Event{ID: 7, TS: t0.UnixNano(), Price: 120_000_000, ReferencePrice: 100_000_000}
	items := []store.OutboxItem{{Tag: 7, Idx: store.OutboxHotIdx, Kind: store.OutboxHot, Event: e}}

	s, err := NewNATSSink(NATSOptions{URL: srv.URL + "/alerts.quotes", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(ctx, 1, items); err != nil {
		t.Fatal(err)
	}
	if s.Stream() != "MINE" {
		t.Errorf("stream %q, want the existing MINE", s.Stream())
	}

	s2, err := NewNATSSink(NATSOptions{URL: srv.URL + "/quotes.hot", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Write(ctx, 1, items); err == nil {
		t.Error("a stream of the configured name without the subject was accepted")
	}
}
