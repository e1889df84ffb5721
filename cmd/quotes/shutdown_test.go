package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/feed"
)

// TestIngestShutdown sends SIGTERM to `quotes ingest` under live load at random moments,
// many times, restarting it on the same data directory each time. ingest --record appends
// each batch to the recording right after its WAL append returned, under the same lock as
// the append, so after every exit the recording (what the source handed over and the
// engine acknowledged) must equal the WAL's partner messages exactly: nothing
// acknowledged is missing, and nothing was appended after Close began (it would be in the
// WAL without being recorded, or fail the append). At the end a replay of the WAL derives
// the same instruments and candles as the restarted ingest.
func TestIngestShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes for tens of seconds; skipped in -short mode")
	}
	bin := quotesBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	rec := filepath.Join(dir, "arrived.jsonl")
	feedAddr := freeAddr(t)
	startProcess(t, bin, "generate", "--listen", feedAddr, "--instruments", "200",
		"--quote-interval", "50ms", "--churn", "2", "--seed", "11")
	rng := rand.New(rand.NewPCG(11, 12))
	const rounds = 8
	for i := 0; i < rounds; i++ {
		httpAddr := freeAddr(t)
		ingest := startProcess(t, bin, "ingest", "--source", "ws://"+feedAddr, "--data", data,
			"--http", httpAddr, "--record", rec, "--sync", "none")
		// a random moment: sometimes during start-up and recovery, mostly under load
		time.Sleep(time.Duration(rng.IntN(2500)) * time.Millisecond)
		if err := ingest.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := ingest.Wait(); err != nil {
			t.Fatalf("round %d: ingest did not exit cleanly on SIGTERM: %v", i, err)
		}
		got, want := recordedMessages(t, rec), partnerMessages(t, data)
		if len(got) != len(want) || !slices.Equal(got, want) {
			t.Fatalf("round %d: the recording holds %d messages, the WAL %d partner messages (first difference at %d)",
				i, len(got), len(want), firstDifference(got, want))
		}
		t.Logf("round %d: %d messages acknowledged so far", i, len(want))
	}
	if n := len(partnerMessages(t, data)); n < 1000 {
		t.Fatalf("only %d messages ingested over %d rounds: the load did not reach ingest", n, rounds)
	}

	var before []api.Instrument
	if err := json.Unmarshal([]byte(mustExecute(t, "query", "instruments", "--data", data, "--format", "json")), &before); err != nil {
		t.Fatal(err)
	}
	copyDir := filepath.Join(dir, "copy")
	mustExecute(t, "replay", data, "--data", copyDir, "--progress", "never")
	var after []api.Instrument
	if err := json.Unmarshal([]byte(mustExecute(t, "query", "instruments", "--data", copyDir, "--format", "json")), &after); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("instruments after replaying the WAL differ:\n got %v\nwant %v", after, before)
	}
	from := time.Now().UTC().Add(-10 * time.Minute).Format(time.RFC3339)
	to := time.Now().UTC().Add(2 * time.Minute).Truncate(time.Minute).Format(time.RFC3339)
	for _, in := range before[:min(5, len(before))] {
		want := mustExecute(t, "query", "candles", in.ISIN, "--data", data, "--from", from, "--to", to, "--format", "csv")
		got := mustExecute(t, "query", "candles", in.ISIN, "--data", copyDir, "--from", from, "--to", to, "--format", "csv")
		// The replay closes the last minute and so serves one more (flat) minute at most.
		if len(got) < len(want) || got[:len(want)] != want {
			t.Errorf("candles of %s after replaying the WAL differ:\n got %s\nwant %s", in.ISIN, got, want)
		}
	}
}

// recordedMessages reads a JSONL recording.
func recordedMessages(t *testing.T, path string) []feed.Message {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rr := feed.NewRecordingReader(f)
	var out []feed.Message
	for {
		var m feed.Message
		err := rr.Next(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("recording %s: %v", path, err)
		}
		out = append(out, m)
	}
}

// partnerMessages returns the WAL's messages without ticks.
func partnerMessages(t *testing.T, data string) []feed.Message {
	t.Helper()
	var out []feed.Message
	for _, r := range rawMessages(walRecords(t, data)) {
		out = append(out, r.Message)
	}
	return out
}

func firstDifference(a, b []feed.Message) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
