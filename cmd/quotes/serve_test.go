package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

// serveData writes a small data directory and returns it with the last WAL sequence.
func serveData(t *testing.T) (string, uint64) {
	t.Helper()
	dir := t.TempDir()
	log, err := wal.Open(wal.DefaultOptions(filepath.Join(dir, "wal")))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Open(log, pipeline.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC).UnixNano()
	a, _ := feed.ParseISIN("DE000ALPHA01")
	b, _ := feed.ParseISIN("US000BETA002")
	msgs := []feed.Message{
		{TS: t0, Kind: feed.KindAdd, ISIN: a, Description: "Alpha AG"},
		{TS: t0, Kind: feed.KindAdd, ISIN: b, Description: "Beta Inc"},
		{TS: t0 + int64(5*time.Second), Kind: feed.KindQuote, ISIN: a, Price: 100_000000},
		{TS: t0 + int64(2*time.Minute), Kind: feed.KindQuote, ISIN: a, Price: 101_250000},
	}
	if err := p.Append(msgs); err != nil {
		t.Fatal(err)
	}
	seq := p.Applied()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, seq
}

// waitRunning waits (bounded) for <dir>/running.json to name an HTTP address.
func waitRunning(t *testing.T, dir string, exited <-chan int) engine.Running {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if rp, ok := engine.ReadRunning(dir); ok && rp.HTTP != "" {
			// announced once it holds the directory, ready once recovered
			if resp, err := http.Get("http://" + rp.HTTP + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return rp
				}
			}
		}
		select {
		case code := <-exited:
			t.Fatalf("serve exited early with code %d", code)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("serve did not write running.json and get ready")
	return engine.Running{}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServe(t *testing.T) {
	dir, seq := serveData(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut bytes.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"serve", "--data", dir, "--http", "127.0.0.1:0"}, &out, &errOut)
	}()
	rp := waitRunning(t, dir, exited)
	if rp.Command != "serve" || rp.PID != os.Getpid() {
		t.Errorf("running.json: %+v", rp)
	}
	base := "http://" + rp.HTTP

	code, body := httpGet(t, base+"/instruments")
	want := `[{"isin":"DE000ALPHA01","description":"Alpha AG","price":101.25,"priceTs":"2026-11-26T13:02:00Z"},` +
		`{"isin":"US000BETA002","description":"Beta Inc","price":null,"priceTs":null}]` + "\n"
	if code != 200 || body != want {
		t.Errorf("GET /instruments: %d %s", code, body)
	}
	code, body = httpGet(t, base+"/last30m/DE000ALPHA01")
	if code != 200 || strings.Count(body, "openTimestamp") != 3 || !strings.Contains(body, `"openPrice":100,"highPrice":100,"lowPrice":100,"closePrice":100,"quotes":0`) {
		t.Errorf("GET /last30m: %d %s", code, body)
	}
	if code, body = httpGet(t, base+"/metrics"); code != 200 || !strings.Contains(body, "quotes_instruments_active 2") ||
		!strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics: %d (%d bytes)", code, len(body))
	}
	if code, _ = httpGet(t, base+"/readyz"); code != 200 {
		t.Errorf("GET /readyz: %d", code)
	}

	// `quotes query` on the same directory goes through serve's API and prints the same JSON
	qout, qerr, qcode := execute(t, "query", "instruments", "--data", dir, "--format", "json")
	if qcode != 0 || qout != want {
		t.Errorf("query instruments while serving: exit %d\n%s\n%s", qcode, qout, qerr)
	}

	// a second serve on the held directory answers through the first, on its own address
	ctx2, cancel2 := context.WithCancel(context.Background())
	var out2, errOut2 bytes.Buffer
	exited2 := make(chan int, 1)
	ready := make(chan string, 1)
	go func() {
		exited2 <- run(ctx2, []string{"serve", "--data", dir, "--http", "127.0.0.1:0", "--log-format", "json"}, &out2, &syncWriter{w: &errOut2, addr: ready})
	}()
	var addr2 string
	select {
	case addr2 = <-ready:
	case code := <-exited2:
		t.Fatalf("second serve exited %d: %s", code, errOut2.String())
	case <-time.After(20 * time.Second):
		t.Fatal("second serve did not start")
	}
	if addr2 == rp.HTTP {
		t.Fatalf("second serve on the first's address %s", addr2)
	}
	if code, body := httpGet(t, "http://"+addr2+"/instruments"); code != 200 || body != want {
		t.Errorf("second serve GET /instruments: %d %s", code, body)
	}
	cancel2()
	if code := <-exited2; code != 0 {
		t.Errorf("second serve exit %d: %s", code, errOut2.String())
	}
	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("serve exit %d: %s", code, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "running.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("running.json left behind: %v", err)
	}

	// serve wrote no WAL record
	log, err := wal.Open(wal.DefaultOptions(filepath.Join(dir, "wal")))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	if log.LastSeq() != seq {
		t.Errorf("WAL last seq %d after serve, want %d", log.LastSeq(), seq)
	}
}

// syncWriter collects a command's JSON log and sends the address of its "serving the HTTP
// API" line once.
type syncWriter struct {
	mu   sync.Mutex
	w    *bytes.Buffer
	addr chan string
	sent bool
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.sent {
		var line struct{ Msg, URL string }
		if json.Unmarshal(bytes.TrimSpace(p), &line) == nil && line.Msg == "serving the HTTP API" {
			s.sent = true
			s.addr <- strings.TrimPrefix(line.URL, "http://")
		}
	}
	return s.w.Write(p)
}

func TestServeHeldByIngest(t *testing.T) {
	dir, _ := serveData(t)
	log, err := wal.Open(wal.DefaultOptions(filepath.Join(dir, "wal")))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	// an ingest without an HTTP API cannot be served through
	b, _ := json.Marshal(engine.Running{PID: os.Getpid(), Command: "ingest"})
	if err := os.WriteFile(filepath.Join(dir, "running.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := execute(t, "serve", "--data", dir, "--http", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "in use by `quotes ingest`") || !strings.Contains(errOut, "start it with --http") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

func TestServeUsage(t *testing.T) {
	dir, _ := serveData(t)
	for _, args := range [][]string{
		{"serve", "--data", dir, "--http", ""},
		{"serve", "--data", dir, "--request-timeout", "0s"},
		{"serve", "--data", dir, "extra"},
	} {
		if _, errOut, code := execute(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errOut)
		}
	}
	if _, errOut, code := execute(t, "serve", "--data", filepath.Join(dir, "missing")); code != 1 || !strings.Contains(errOut, "no data directory") {
		t.Errorf("missing data directory: exit %d: %s", code, errOut)
	}
	out, _, code := execute(t, "serve", "--help")
	if code != 0 || !strings.Contains(out, "quotes serve --data ./data") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}
