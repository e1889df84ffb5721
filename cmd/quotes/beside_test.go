package main

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quotesdev/quotes/api"
)

// getBody fetches url and returns its status and body (0 when it did not answer).
func getBody(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBesideRunningReplay runs commands beside a paced replay that serves --http (SPEC
// §10): the replay is queried mid-run; `serve` on the same --data answers on a second
// port exactly as the replay's own API; `backfill` runs inside it (exit 0, candles
// unchanged); and the replay, asked to stop with SIGINT, exits 130 saying how to resume,
// and a re-run finishes it.
func TestBesideRunningReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes for tens of seconds; skipped in -short mode")
	}
	bin := quotesBinary(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "feed.jsonl")
	mustExecute(t, "generate", "--record", rec, "--instruments", "300", "--duration", "30m",
		"--quote-interval", "2s", "--churn", "0", "--speed", "max", "--seed", "5", "--start", "2026-01-01T00:00:00Z")
	data := filepath.Join(dir, "data")
	httpA := freeAddr(t)
	replay := exec.Command(bin, "replay", rec, "--data", data, "--progress", "never", "--speed", "60x", "--http", httpA)
	var replayOut strings.Builder
	replay.Stdout, replay.Stderr = &replayOut, &replayOut
	if err := replay.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if replay.ProcessState == nil {
			replay.Process.Kill()
			replay.Wait()
		}
		if t.Failed() {
			t.Logf("replay output:\n%s", replayOut.String())
		}
	})
	base := "http://" + httpA

	// queried mid-run: wait until a few minutes of event time closed
	var ins []api.Instrument
	waitFor(t, 60*time.Second, "the replay to close minutes", func() bool {
		// minutes 0–2 are closed once minute 4 has quotes (grace 5s)
		code, body := getBody(base + "/instruments/" + firstISIN(t, base, &ins) + "/candles?from=2026-01-01T00:04:00Z&to=2026-01-01T00:05:00Z")
		return code == 200 && strings.Contains(body, "openTimestamp") && !strings.Contains(body, `"quotes":0`)
	})
	isin := ins[0].ISIN
	closedRange := "/instruments/" + isin + "/candles?from=2026-01-01T00:00:00Z&to=2026-01-01T00:03:00Z"
	_, wantCandles := getBody(base + closedRange)

	// serve on a second port: the same answers
	httpB := freeAddr(t)
	serve := startProcess(t, bin, "serve", "--data", data, "--http", httpB)
	waitFor(t, 20*time.Second, "serve to answer", func() bool {
		code, _ := getBody("http://" + httpB + "/readyz")
		return code == 200
	})
	if code, body := getBody("http://" + httpB + closedRange); code != 200 || body != wantCandles {
		t.Errorf("serve beside the replay: %d %s\nwant %s", code, body, wantCandles)
	}

	// backfill inside the running replay: exit 0, nothing changed
	out, errOut, code := execute(t, "backfill", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:03:00Z", "--data", data)
	if code != 0 || !strings.Contains(errOut, "backfilling inside it") || !regexp.MustCompile(`embedded store\s+0 changed`).MatchString(out) {
		t.Errorf("backfill beside the replay: exit %d\n%s%s", code, out, errOut)
	}
	if _, body := getBody(base + closedRange); body != wantCandles {
		t.Errorf("backfill changed closed candles:\n%s\nwant %s", body, wantCandles)
	}

	// SIGINT: a clean stop at a batch boundary, exit 130, resumable
	if err := replay.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := replay.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(replayOut.String(), "run the same command again to resume") {
		t.Fatalf("replay after SIGINT: %v\n%s", err, replayOut.String())
	}
	serve.Process.Signal(syscall.SIGTERM)
	serve.Wait()
	out = mustExecute(t, "replay", rec, "--data", data, "--progress", "never")
	if !strings.Contains(out, "resumed") {
		t.Errorf("the re-run did not resume:\n%s", out)
	}
	// the result equals an uninterrupted replay
	ref := filepath.Join(dir, "ref")
	mustExecute(t, "replay", rec, "--data", ref, "--progress", "never")
	if got, want := dumpData(t, data, 5), dumpData(t, ref, 5); got != want {
		t.Errorf("interrupted and resumed replay differs:\n%s", firstDiff(got, want))
	}
}

// firstISIN returns the first instrument the API at base lists (empty before any).
func firstISIN(t *testing.T, base string, ins *[]api.Instrument) string {
	code, body := getBody(base + "/instruments")
	if code != 200 || json.Unmarshal([]byte(body), ins) != nil || len(*ins) == 0 {
		return "AA0000000000"
	}
	return (*ins)[0].ISIN
}

// TestHealthzDuringRecovery: after a kill -9, a restarted ingest answers /healthz while it
// re-applies the WAL, /readyz is 503 with the recovery's progress, then 200; `query` waits
// for it and says so.
func TestHealthzDuringRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a WAL of millions of records; skipped in -short mode")
	}
	bin := quotesBinary(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "feed.jsonl")
	mustExecute(t, "generate", "--record", rec, "--instruments", "20000", "--duration", "6m",
		"--quote-interval", "1s", "--speed", "max", "--seed", "9")
	data := filepath.Join(dir, "data")
	// a WAL without a recent checkpoint: replay with checkpoints far apart, killed once
	// most of it is in
	replayHTTP := freeAddr(t)
	replay := exec.Command(bin, "replay", rec, "--data", data, "--progress", "never", "--checkpoint-every", "1000h", "--sync", "none", "--http", replayHTTP)
	if err := replay.Start(); err != nil {
		t.Fatal(err)
	}
	appliedRE := regexp.MustCompile(`(?m)^quotes_wal_applied_seq (\S+)$`)
	waitFor(t, 120*time.Second, "3M records in the WAL", func() bool {
		_, body := getBody("http://" + replayHTTP + "/metrics")
		m := appliedRE.FindStringSubmatch(body)
		if m == nil {
			return false
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v > 3e6
	})
	replay.Process.Signal(syscall.SIGKILL)
	replay.Wait()

	httpAddr := freeAddr(t)
	ingest := startProcess(t, bin, "ingest", "--source", "ws://127.0.0.1:1", "--data", data, "--http", httpAddr)
	base := "http://" + httpAddr
	sawHealthy, sawRecovering := false, false
	var recovering string
	deadline := time.Now().Add(120 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the API never answered instruments: recovery did not end")
		}
		if code, _ := getBody(base + "/healthz"); code == 200 {
			sawHealthy = true
		}
		if code, body := getBody(base + "/readyz"); code == 503 && strings.Contains(body, `"recovery"`) {
			sawRecovering, recovering = true, body
		}
		// recovered: the data answers (readyz stays 503: the partner is unreachable)
		if code, _ := getBody(base + "/instruments"); code == 200 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawHealthy || !sawRecovering {
		t.Errorf("during recovery: healthz 200 seen %v, readyz 503 with progress seen %v", sawHealthy, sawRecovering)
	}
	t.Logf("readyz during recovery: %s", recovering)
	code, body := getBody(base + "/readyz")
	if code != 503 || !strings.Contains(body, "partner source not connected") {
		t.Errorf("readyz after recovery without a partner: %d %s", code, body)
	}
	ingest.Process.Signal(syscall.SIGTERM)
	ingest.Wait()
}

// dirSize sums the sizes of the files under dir.
func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
