package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

// wait bounds every wait on a condition; it is never reached when the code works.
const wait = 10 * time.Second

// sseMsg is one parsed SSE message: an event, or a comment.
type sseMsg struct {
	id, event, data string
	comment         string
}

// sseClient reads an event stream in a goroutine.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	msgs   chan sseMsg
	done   chan error // the read loop's end
}

// dialSSE opens GET url as an event stream with the given header pairs and waits for the
// ": connected" comment, after which the stream's starting point is fixed.
func dialSSE(t *testing.T, url string, header ...string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{t: t, resp: resp, cancel: cancel, msgs: make(chan sseMsg, 1024), done: make(chan error, 1)}
	go c.read()
	t.Cleanup(c.close)
	if m := c.next(); m.comment != "connected" {
		t.Fatalf("first message %+v, want the connected comment", m)
	}
	return c
}

func (c *sseClient) read() {
	defer close(c.msgs)
	sc := bufio.NewScanner(c.resp.Body)
	var m sseMsg
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if m != (sseMsg{}) {
				c.msgs <- m
			}
			m = sseMsg{}
		case strings.HasPrefix(line, ":"):
			c.msgs <- sseMsg{comment: strings.TrimSpace(line[1:])}
		default:
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "id":
				m.id = v
			case "event":
				m.event = v
			case "data":
				m.data += v
			default:
				c.done <- fmt.Errorf("unexpected line %q", line)
				return
			}
		}
	}
	c.done <- sc.Err()
}

// next returns the next message, failing after a bounded wait.
func (c *sseClient) next() sseMsg {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("stream ended: %v", <-c.done)
		}
		return m
	case <-time.After(wait):
		c.t.Fatal("no SSE message within", wait)
	}
	return sseMsg{}
}

// nextEvent returns the next event, skipping keep-alive comments.
func (c *sseClient) nextEvent() hot.Event {
	c.t.Helper()
	for {
		m := c.next()
		if m.comment != "" {
			continue
		}
		if m.event != "hot" {
			c.t.Fatalf("event type %q, want hot", m.event)
		}
		e, err := hot.ParseEventJSON([]byte(m.data))
		if err != nil {
			c.t.Fatalf("event data %q: %v", m.data, err)
		}
		if m.id != strconv.FormatUint(e.ID, 10) {
			c.t.Fatalf("id: %q, data id %d", m.id, e.ID)
		}
		return e
	}
}

// ended waits for the stream to end (server side).
func (c *sseClient) ended() {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return
			}
			if m.comment == "" {
				c.t.Fatalf("event %+v while waiting for the end", m)
			}
		case <-deadline:
			c.t.Fatal("stream did not end within", wait)
		}
	}
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
}

// hotFeed makes hot events on demand: instrument i gets a quote of 100 at t0+1s and, when
// fire(i) is called, one of 120 after the 5-minute window — one rising edge each.
type hotFeed struct {
	t    *testing.T
	p    *pipeline.Pipeline
	next time.Duration
}

func hotISIN(i int) string { return fmt.Sprintf("HOT%09d", i) }

func newHotFeed(t *testing.T, p *pipeline.Pipeline, n int) *hotFeed {
	var msgs []feed.Message
	for i := range n {
		msgs = append(msgs, add(t, 0, hotISIN(i), "hot "+strconv.Itoa(i)))
	}
	for i := range n {
		msgs = append(msgs, quote(t, time.Second, hotISIN(i), 100_000000))
	}
	appendMsgs(t, p, msgs...)
	return &hotFeed{t: t, p: p, next: 5*time.Minute + 2*time.Second}
}

// fire appends the hot quotes of the given instruments, one message each.
func (f *hotFeed) fire(is ...int) {
	for _, i := range is {
		appendMsgs(f.t, f.p, quote(f.t, f.next, hotISIN(i), 120_000000))
		f.next += time.Second
	}
}

func ids(evs []hot.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i := range evs {
		out[i] = evs[i].ID
	}
	return out
}

func TestHotStreamResume(t *testing.T) {
	p := openPipeline(t, wal.SyncNone)
	f := newHotFeed(t, p, 10)
	f.fire(0) // an event from before the first connection: not sent without Last-Event-ID

	h := NewHandler(Options{Backend: PipelineBackend{P: p}, Logger: quietLogger()})
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	url := "http://" + srv.Addr() + "/hot"

	c := dialSSE(t, url)
	f.fire(1, 2)
	e1, e2 := c.nextEvent(), c.nextEvent()
	if e1.ISIN.String() != hotISIN(1) || e2.ISIN.String() != hotISIN(2) || e1.ID >= e2.ID {
		t.Fatalf("first stream: %v %v", e1, e2)
	}
	c.close()

	// missed while disconnected
	f.fire(3, 4, 5)
	c = dialSSE(t, url, "Last-Event-ID", strconv.FormatUint(e2.ID, 10))
	var got []hot.Event
	for range 3 {
		got = append(got, c.nextEvent())
	}
	f.fire(6) // live again after the catch-up: the very next event, no duplicate between
	got = append(got, c.nextEvent())
	want, err := p.HotEvents(e2.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(got)) != fmt.Sprint(ids(want)) || len(want) != 4 {
		t.Fatalf("resumed stream: ids %v, want %v", ids(got), ids(want))
	}
	for i := range got {
		if a, b := mustJSON(t, got[i]), mustJSON(t, want[i]); a != b {
			t.Errorf("event %d:\n got %s\nwant %s", i, a, b)
		}
	}

	// ?lastEventId=0 replays everything stored, in id order
	all, _ := p.HotEvents(0, 0, 0)
	c2 := dialSSE(t, url+"?lastEventId=0")
	var replayed []hot.Event
	for range all {
		replayed = append(replayed, c2.nextEvent())
	}
	if fmt.Sprint(ids(replayed)) != fmt.Sprint(ids(all)) || len(all) != 7 {
		t.Fatalf("replay from 0: %v, want %v", ids(replayed), ids(all))
	}

	// Shutdown ends the open streams and Serve returns nil.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.ended()
	c2.ended()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// Many events at once go out in batches, in order, without loss.
func TestHotStreamBatches(t *testing.T) {
	p := openPipeline(t, wal.SyncNone)
	n := sseBatch + 100
	f := newHotFeed(t, p, n)
	var msgs []feed.Message
	for i := range n {
		msgs = append(msgs, quote(t, f.next, hotISIN(i), 120_000000))
	}
	appendMsgs(t, p, msgs...)
	srv := newTestServer(t, Options{Backend: PipelineBackend{P: p}})
	c := dialSSE(t, srv+"/hot?stream=1&lastEventId=0")
	want, _ := p.HotEvents(0, 0, 0)
	if len(want) != n {
		t.Fatalf("%d events stored, want %d", len(want), n)
	}
	for i := range want {
		if e := c.nextEvent(); e.ID != want[i].ID {
			t.Fatalf("event %d: id %d, want %d", i, e.ID, want[i].ID)
		}
	}
}

func TestHotStreamKeepAlive(t *testing.T) {
	p := openPipeline(t, wal.SyncNone)
	mock := clock.NewMock()
	srv := newTestServer(t, Options{Backend: PipelineBackend{P: p}, Clock: mock, HotKeepAlive: 15 * time.Second})
	c := dialSSE(t, srv+"/hot")
	mock.Add(15 * time.Second)
	if m := c.next(); m.comment != "keep-alive" {
		t.Fatalf("got %+v, want a keep-alive comment", m)
	}
	mock.Add(15 * time.Second)
	if m := c.next(); m.comment != "keep-alive" {
		t.Fatalf("got %+v, want a keep-alive comment", m)
	}
}

// A backend whose change channel is always closed (like Client) is polled on the clock,
// not spun on.
func TestHotStreamPollingBackend(t *testing.T) {
	p := openPipeline(t, wal.SyncNone)
	f := newHotFeed(t, p, 3)
	mock := clock.NewMock()
	b := &countingBackend{PipelineBackend: PipelineBackend{P: p}}
	srv := newTestServer(t, Options{Backend: b, Clock: mock})
	c := dialSSE(t, srv+"/hot")
	advances := 0
	// nextEvent advances the mock clock by a poll interval whenever the stream is quiet.
	nextEvent := func() sseMsg {
		deadline := time.After(wait)
		for {
			select {
			case m := <-c.msgs:
				if m.comment == "" {
					return m
				}
			case <-time.After(5 * time.Millisecond):
				mock.Add(ssePollInterval)
				advances++
			case <-deadline:
				t.Fatal("no event within", wait)
			}
		}
	}
	for i := range 3 {
		f.fire(i)
		if m := nextEvent(); !strings.Contains(m.data, hotISIN(i)) {
			t.Fatalf("event %d: %+v", i, m)
		}
	}
	// per event: the read that finds it, two wake-ups on the closed channel, then one read
	// per poll interval; a spinning stream would read thousands of times
	if n := b.reads.Load(); n > int64(advances+3*4+5) {
		t.Errorf("%d reads of the backend for %d poll intervals: spinning on a closed channel", n, advances)
	}
}

// countingBackend is a pipeline backend whose change channel is always closed.
type countingBackend struct {
	PipelineBackend
	reads atomic.Int64
}

func (b *countingBackend) HotEvents(ctx context.Context, after uint64, since int64, limit int) ([]hot.Event, error) {
	b.reads.Add(1)
	return b.PipelineBackend.HotEvents(ctx, after, since, limit)
}

func (b *countingBackend) HotEventsChanged() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func newTestServer(t *testing.T, opts Options) string {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	srv, err := Listen("127.0.0.1:0", NewHandler(opts))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return "http://" + srv.Addr()
}

func TestHotStreamBadLastEventID(t *testing.T) {
	p := openPipeline(t, wal.SyncNone)
	srv := newTestServer(t, Options{Backend: PipelineBackend{P: p}})
	resp := get(t, srv+"/hot", "Accept", "text/event-stream", "Last-Event-ID", "abc")
	var e struct{ Error string }
	if err := json.Unmarshal(readBody(t, resp), &e); err != nil || resp.StatusCode != 400 || !strings.Contains(e.Error, "Last-Event-ID") {
		t.Errorf("%d %q %v", resp.StatusCode, e.Error, err)
	}
}

// TestHotDefaultsToStream: GET /hot without headers (plain curl) is the event stream;
// ?format=json, an Accept of application/json or polling parameters give the JSON array.
func TestHotDefaultsToStream(t *testing.T) {
	p := openPipeline(t, wal.SyncNone)
	srv := newTestServer(t, Options{Backend: PipelineBackend{P: p}})
	for _, tc := range []struct {
		path, accept, want string
	}{
		{"/hot", "", "text/event-stream"},
		{"/hot", "*/*", "text/event-stream"},
		{"/hot?format=json", "", "application/json"},
		{"/hot", "application/json", "application/json"},
		{"/hot?since=2026-11-26T13:00:00Z", "", "application/json"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv+tc.path, nil)
		if tc.accept != "" {
			req.Header.Set("Accept", tc.accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.want) {
			t.Errorf("GET %s (Accept %q): Content-Type %q, want %s", tc.path, tc.accept, ct, tc.want)
		}
		cancel()
		resp.Body.Close()
	}
}
