package main

import (
	"errors"
	"io"
	"regexp"

	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// quotesBinary builds the quotes binary once per test run, for tests that must really kill
// a process. It lives in the package's temporary directory, which TestMain removes.
func quotesBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "quotes-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "quotes")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = &buildError{out: string(out), err: err}
		}
	})
	if binErr != nil {
		t.Fatalf("build quotes: %v", binErr)
	}
	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// killDuring starts `quotes args…`, kills it with SIGKILL after d (unless it finished
// before), and reports whether it was killed.
func killDuring(t *testing.T, bin string, d time.Duration, args ...string) bool {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("quotes %s ended before the kill: %v", strings.Join(args, " "), err)
		}
		return false
	case <-time.After(d):
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	return true
}

// TestReplayCrashRecovery is the acceptance test of SPEC §7 for replay: a replay killed
// with SIGKILL at random moments and re-run to the end derives exactly what one
// uninterrupted replay derives — instruments, every stored candle, hot events and the
// candle queries — byte for byte. The same holds for replaying a data directory's WAL
// into a fresh directory.
func TestReplayCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it repeatedly; skipped in -short mode")
	}
	bin := quotesBinary(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "feed.jsonl")
	mustExecute(t, "generate", "--record", rec, "--instruments", "1000", "--duration", "20m",
		"--quote-interval", "1s", "--churn", "0.5", "--speed", "max", "--seed", "7")

	makeLate(t, rec, 997, 90*time.Second)

	ref := filepath.Join(dir, "ref")
	start := time.Now()
	summary, err := exec.Command(bin, "replay", rec, "--data", ref, "--progress", "never", "--checkpoint-every", "2m", "--batch", "2000").Output()
	if err != nil {
		t.Fatalf("reference replay: %v\n%s", err, summary)
	}
	full := time.Since(start)
	want := dumpData(t, ref, 5)
	if !strings.Contains(want, "== hot events\n{") || !lateRE.Match(summary) {
		t.Fatalf("the recording derives no hot events or no late corrections; the test would prove little:\n%s", summary)
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	kills := func(t *testing.T, data string, args ...string) {
		// Kill at random moments within the first quarter of an uninterrupted run's
		// time, so several runs die at different stages (recovery, reading, checkpoint)
		// before one is let finish.
		killed := 0
		for i := 0; i < 8; i++ {
			d := 20*time.Millisecond + time.Duration(rng.Int64N(int64(full/4)))
			if killDuring(t, bin, d, append(args, "--data", data, "--progress", "never", "--checkpoint-every", "2m", "--batch", "2000")...) {
				killed++
			}
		}
		if killed < 3 {
			t.Fatalf("only %d runs were killed: the replay finishes too fast for this test", killed)
		}
		t.Logf("killed %d times", killed)
		mustExecute(t, append(args, "--data", data, "--progress", "never", "--checkpoint-every", "2m")...)
	}

	t.Run("recording", func(t *testing.T) {
		data := filepath.Join(dir, "crashed")
		kills(t, data, "replay", rec)
		if got := dumpData(t, data, 5); got != want {
			t.Errorf("a killed and resumed replay differs from an uninterrupted one:\n%s", firstDiff(got, want))
		}
	})
	t.Run("wal", func(t *testing.T) {
		data := filepath.Join(dir, "copied")
		kills(t, data, "replay", ref)
		if got := dumpData(t, data, 5); got != want {
			t.Errorf("a killed and resumed WAL replay differs from the original run:\n%s", firstDiff(got, want))
		}
	})
}

// firstDiff shows the first differing line of two dumps.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			return "line " + strconv.Itoa(i+1) + ":\n got: " + g[i] + "\nwant: " + w[i]
		}
	}
	return "lengths differ: got " + strconv.Itoa(len(g)) + " lines, want " + strconv.Itoa(len(w))
}

var lateRE = regexp.MustCompile(`\([1-9][0-9]* late corrections`)

// makeLate rewrites a recording so that every nth quote arrives with a timestamp shifted
// back by d: late data for minutes already closed, whose corrections merge into stored
// candles — the writes a recovery must not apply twice.
func makeLate(t *testing.T, path string, n int, d time.Duration) {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out []byte
	rr := feed.NewRecordingReader(in)
	quotes := 0
	for {
		var m feed.Message
		err := rr.Next(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind == feed.KindQuote {
			if quotes++; quotes%n == 0 {
				m.TS -= int64(d)
			}
		}
		out = feed.AppendRecordingLine(out, &m)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
