package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quotesdev/quotes/alert"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/internal/natstest"
)

// hotRecording generates a recording whose replay derives hot events.
func hotRecording(t *testing.T, dir string) string {
	t.Helper()
	rec := filepath.Join(dir, "feed.jsonl")
	mustExecute(t, "generate", "--record", rec, "--instruments", "500", "--duration", "20m",
		"--quote-interval", "1s", "--churn", "0.2", "--speed", "max", "--seed", "17")
	return rec
}

// queryHot returns the hot events `quotes query hot` lists for data.
func queryHot(t *testing.T, data string) []hot.Event {
	t.Helper()
	out := mustExecute(t, "query", "hot", "--data", data, "--format", "json")
	var evs []hot.Event
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("query hot output: %v\n%s", err, out)
		}
		// an array, or one object per line
		if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
			var list []json.RawMessage
			if err := json.Unmarshal(raw, &list); err != nil {
				t.Fatal(err)
			}
			for _, r := range list {
				e, err := hot.ParseEventJSON(r)
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, e)
			}
			continue
		}
		e, err := hot.ParseEventJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

// TestAlertsNATSCrash replays a recording with hot events into a real nats-server with
// --alerts-nats, killed with SIGKILL at random moments and re-run to the end: the stream
// holds exactly the event ids `query hot` lists, once each, in order per instrument.
func TestAlertsNATSCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it repeatedly; skipped in -short mode")
	}
	bin := quotesBinary(t)
	srv := natstest.Start(t)
	dir := t.TempDir()
	rec := hotRecording(t, dir)
	data := filepath.Join(dir, "data")
	target := srv.URL + "/quotes.hot"
	args := []string{"replay", rec, "--data", data, "--progress", "never", "--batch", "2000", "--alerts-nats", target}

	start := time.Now()
	ref := filepath.Join(dir, "ref")
	if out, err := exec.Command(bin, "replay", rec, "--data", ref, "--progress", "never", "--batch", "2000").CombinedOutput(); err != nil {
		t.Fatalf("reference replay: %v\n%s", err, out)
	}
	full := time.Since(start)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	killed := 0
	for i := 0; i < 6; i++ {
		if killDuring(t, bin, 20*time.Millisecond+time.Duration(rng.Int64N(int64(full))), args...) {
			killed++
		}
	}
	mustExecute(t, args...)
	t.Logf("killed %d times", killed)

	want := queryHot(t, data)
	if len(want) == 0 {
		t.Fatal("the recording derives no hot events: the test would prove nothing")
	}
	if ref := queryHot(t, ref); len(ref) != len(want) {
		t.Fatalf("the killed replay lists %d hot events, an uninterrupted one %d", len(want), len(ref))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := srv.JetStream(t).Stream(ctx, alert.DefaultNATSStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	lastByISIN := map[string]uint64{}
	n := 0
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		e, err := hot.ParseEventJSON(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != strconv.FormatUint(e.ID, 10) {
			t.Errorf("message %d: Nats-Msg-Id %q for event %d", seq, m.Header.Get(jetstream.MsgIDHeader), e.ID)
		}
		if seen[e.ID] {
			t.Errorf("event %d published twice", e.ID)
		}
		seen[e.ID] = true
		if e.ID <= lastByISIN[e.ISIN.String()] {
			t.Errorf("event %d of %s after %d: out of order", e.ID, e.ISIN, lastByISIN[e.ISIN.String()])
		}
		lastByISIN[e.ISIN.String()] = e.ID
		n++
	}
	for _, e := range want {
		if !seen[e.ID] {
			t.Errorf("event %d (%s) listed by query hot is not in the stream", e.ID, e.ISIN)
		}
	}
	if n != len(want) {
		t.Errorf("the stream holds %d events, query hot lists %d", n, len(want))
	}
}

// TestAlertsWebhook: a receiver that fails its first requests and is down for a while
// receives every event, each id's body identical on every attempt, signatures valid; the
// replay waits (--sink-timeout) for the backlog.
func TestAlertsWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("replays a recording with a flaky receiver; skipped in -short mode")
	}
	const secret = "s3cret"
	var mu sync.Mutex
	bodies := map[string][]string{} // Idempotency-Key → bodies received
	requests := 0
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests++
		n := requests
		id := r.Header.Get("Idempotency-Key")
		bodies[id] = append(bodies[id], string(b))
		mu.Unlock()
		if !alert.Verify([]byte(secret), b, r.Header.Get("X-Quotes-Signature")) {
			t.Errorf("bad signature for %s", id)
		}
		switch {
		case n <= 3:
			w.WriteHeader(http.StatusServiceUnavailable) // failing at first
		case n%7 == 0:
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer recv.Close()
	dir := t.TempDir()
	rec := hotRecording(t, dir)
	data := filepath.Join(dir, "data")
	out := mustExecute(t, "replay", rec, "--data", data, "--progress", "never", "--sink-timeout", "2m",
		"--sink-max-backoff", "50ms", "--alerts-webhook", recv.URL+"/hook", "--alerts-webhook-secret", secret)
	want := queryHot(t, data)
	if len(want) == 0 {
		t.Fatalf("no hot events:\n%s", out)
	}
	mu.Lock()
	for _, e := range want {
		got := bodies[strconv.FormatUint(e.ID, 10)]
		if len(got) == 0 {
			t.Errorf("event %d never arrived", e.ID)
			continue
		}
		for _, b := range got[1:] {
			if b != got[0] {
				t.Errorf("event %d: bodies differ between attempts:\n%s\n%s", e.ID, got[0], b)
			}
		}
	}
	if len(bodies) != len(want) {
		t.Errorf("%d distinct events arrived, %d listed", len(bodies), len(want))
	}
	if requests <= len(want) {
		t.Errorf("%d requests for %d events: the failures were not retried?", requests, len(want))
	}
	mu.Unlock()
	// alerts test against the same receiver
	tout, terr, code := execute(t, "alerts", "test", "--alerts-webhook", recv.URL+"/hook", "--alerts-webhook-secret", secret)
	if code != 0 || !strings.Contains(tout, "HTTP 202") {
		t.Errorf("alerts test: exit %d\n%s%s", code, tout, terr)
	}
	if _, errOut, code := execute(t, "replay", rec, "--data", filepath.Join(dir, "x"), "--alerts-webhook", recv.URL); code != 2 || !strings.Contains(errOut, "--alerts-webhook-secret") {
		t.Errorf("webhook without secret: exit %d %s", code, errOut)
	}
}
