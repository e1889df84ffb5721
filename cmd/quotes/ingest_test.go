package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quotesdev/quotes/api"
)

// freeAddr returns a free loopback address.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProcess starts `quotes args…` and stops it (SIGKILL) at the end of the test.
func startProcess(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("output of quotes %s:\n%s", strings.Join(args, " "), out.String())
		}
	})
	return cmd
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getJSON(url string, v any) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

// TestIngestLive runs the real binaries: a simulated partner and ingest. While ingest runs,
// `quotes query` in another process (here: in-process) answers through ingest's HTTP API,
// including the open minute. After SIGTERM, ingest exits 0 having flushed, and a replay of its
// WAL into a fresh directory derives the same instruments and candles.
func TestIngestLive(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes for several seconds; skipped in -short mode")
	}
	bin := quotesBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	feedAddr, httpAddr := freeAddr(t), freeAddr(t)
	startProcess(t, bin, "generate", "--listen", feedAddr, "--instruments", "300",
		"--quote-interval", "200ms", "--churn", "0", "--seed", "3")
	ingest := startProcess(t, bin, "ingest", "--source", "ws://"+feedAddr, "--data", data, "--http", httpAddr)
	base := "http://" + httpAddr

	waitFor(t, 15*time.Second, "ingest ready", func() bool {
		code, _ := getJSON(base+"/readyz", &map[string]any{})
		return code == http.StatusOK
	})
	var ins []api.Instrument
	waitFor(t, 10*time.Second, "300 instruments with prices", func() bool {
		if _, err := getJSON(base+"/instruments", &ins); err != nil {
			return false
		}
		if len(ins) != 300 {
			return false
		}
		for _, in := range ins {
			if in.Price == nil {
				return false
			}
		}
		return true
	})
	isin := ins[0].ISIN

	// query from "a second shell": the data directory is locked by ingest.
	out := mustExecute(t, "query", "candles", isin, "--data", data, "--format", "json")
	var cs []api.Candle
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("query output is not the API's JSON: %v\n%s", err, out)
	}
	if len(cs) == 0 {
		t.Fatal("no candles while ingest runs")
	}
	open := cs[len(cs)-1]
	if now := time.Now().UTC().Truncate(time.Minute); open.OpenTimestamp.Before(now.Add(-time.Minute)) || open.Quotes == 0 {
		t.Errorf("the last candle is not the open minute with quotes: %+v (now %s)", open, now)
	}
	table := mustExecute(t, "query", "instruments", "--data", data)
	if !strings.Contains(table, isin) || !strings.Contains(table, "(300 instruments)") {
		t.Errorf("query instruments while ingest runs:\n%s", table)
	}

	// serve on a second port answers as ingest does; a backfill runs inside ingest
	httpB := freeAddr(t)
	serve := startProcess(t, bin, "serve", "--data", data, "--http", httpB)
	waitFor(t, 20*time.Second, "serve beside ingest", func() bool {
		code, _ := getJSON("http://"+httpB+"/readyz", &map[string]any{})
		return code == http.StatusOK
	})
	closed := "/instruments/" + isin + "/candles?from=" + time.Now().UTC().Add(-10*time.Minute).Truncate(time.Minute).Format(time.RFC3339) +
		"&to=" + time.Now().UTC().Add(-time.Minute).Truncate(time.Minute).Format(time.RFC3339)
	var viaIngest, viaServe []api.Candle
	if _, err := getJSON(base+closed, &viaIngest); err != nil {
		t.Fatal(err)
	}
	if _, err := getJSON("http://"+httpB+closed, &viaServe); err != nil || fmt.Sprint(viaServe) != fmt.Sprint(viaIngest) {
		t.Errorf("serve beside ingest: %v %v\nwant %v", err, viaServe, viaIngest)
	}
	var ins2, insServe []api.Instrument
	getJSON(base+"/instruments", &ins2)
	getJSON("http://"+httpB+"/instruments", &insServe)
	if len(insServe) != len(ins2) {
		t.Errorf("serve lists %d instruments, ingest %d", len(insServe), len(ins2))
	}
	bfFrom := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Minute).Format(time.RFC3339)
	bfTo := time.Now().UTC().Add(time.Minute).Truncate(time.Minute).Format(time.RFC3339)
	bout, berr, bcode := execute(t, "backfill", "--from", bfFrom, "--to", bfTo, "--data", data)
	if bcode != 0 || !strings.Contains(berr, "backfilling inside it") || !regexp.MustCompile(`embedded store\s+0 changed`).MatchString(bout) {
		t.Errorf("backfill beside ingest: exit %d\n%s%s", bcode, bout, berr)
	}
	var afterBackfill []api.Candle
	if _, err := getJSON(base+closed, &afterBackfill); err != nil || fmt.Sprint(afterBackfill) != fmt.Sprint(viaIngest) {
		t.Errorf("backfill changed closed candles: %v\n%v", afterBackfill, viaIngest)
	}
	serve.Process.Signal(syscall.SIGTERM)
	serve.Wait()

	if err := ingest.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := ingest.Wait(); err != nil {
		t.Fatalf("ingest did not exit cleanly on SIGTERM: %v", err)
	}

	// The WAL holds everything, ticks included: a replay of it derives the same state.
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
		t.Errorf("instruments after replaying ingest's WAL differ:\n got %v\nwant %v", after, before)
	}
	from := time.Now().UTC().Add(-10 * time.Minute).Format(time.RFC3339)
	to := time.Now().UTC().Add(2 * time.Minute).Truncate(time.Minute).Format(time.RFC3339)
	for _, in := range before[:5] {
		want := mustExecute(t, "query", "candles", in.ISIN, "--data", data, "--from", from, "--to", to, "--format", "csv")
		got := mustExecute(t, "query", "candles", in.ISIN, "--data", copyDir, "--from", from, "--to", to, "--format", "csv")
		// The replay closes the last minute and so serves one more (flat) minute at most.
		if !strings.HasPrefix(got, want) {
			t.Errorf("candles of %s after replaying ingest's WAL differ:\n got %s\nwant %s", in.ISIN, got, want)
		}
	}
}

// TestOpenRecordingAfterTornLine: a --record file whose last line a kill -9 cut off gets a
// newline before ingest appends, so the next good line is not merged into the torn one.
func TestOpenRecordingAfterTornLine(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, before, want string }{
		{"torn", "{\"a\":1}\n{\"b\"", "{\"a\":1}\n{\"b\"\nnext\n"},
		{"whole", "{\"a\":1}\n", "{\"a\":1}\nnext\n"},
		{"empty", "", "next\n"},
	} {
		path := filepath.Join(dir, tc.name+".jsonl")
		if tc.before != "" {
			if err := os.WriteFile(path, []byte(tc.before), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		f, err := openRecording(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("next\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if got, _ := os.ReadFile(path); string(got) != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
