package diskguard

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
)

const mib = 1 << 20

// fakeFS is an injected file system whose free space the test sets.
type fakeFS struct {
	free, total atomic.Uint64
	fail        atomic.Bool
}

func (f *fakeFS) stat(string) (Usage, error) {
	if f.fail.Load() {
		return Usage{}, errors.New("injected failure")
	}
	return Usage{Free: f.free.Load(), Total: f.total.Load()}, nil
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestParseThreshold(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Threshold
		str  string
	}{
		{"0", Threshold{}, "0"},
		{"1073741824", Threshold{Bytes: 1 << 30}, "1GiB"},
		{"1GiB", Threshold{Bytes: 1 << 30}, "1GiB"},
		{"1gib", Threshold{Bytes: 1 << 30}, "1GiB"},
		{"512M", Threshold{Bytes: 512 * mib}, "512MiB"},
		{"500MB", Threshold{Bytes: 500_000_000}, "500000000B"},
		{"1.5G", Threshold{Bytes: 3 << 29}, "1536MiB"},
		{"5%", Threshold{Percent: 5}, "5%"},
		{"2.5 %", Threshold{Percent: 2.5}, "2.5%"},
		{"1GiB+5%", Threshold{Bytes: 1 << 30, Percent: 5}, "1GiB+5%"},
		{"100B", Threshold{Bytes: 100}, "100B"},
	} {
		got, err := ParseThreshold(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseThreshold(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if got.String() != tc.str {
			t.Errorf("%q: String() = %q, want %q", tc.in, got.String(), tc.str)
		}
		if again, err := ParseThreshold(got.String()); err != nil || again != got {
			t.Errorf("%q: String() %q does not parse back: %+v, %v", tc.in, got.String(), again, err)
		}
	}
	for _, bad := range []string{"", "x", "-1", "101%", "-5%", "1QB", "1e30T", "GiB", "%"} {
		if _, err := ParseThreshold(bad); err == nil {
			t.Errorf("ParseThreshold(%q) succeeded", bad)
		}
	}
}

func TestThresholdNeed(t *testing.T) {
	th := Threshold{Bytes: 100, Percent: 5}
	if n := th.Need(1000); n != 100 {
		t.Errorf("Need(1000) = %d, want 100 (bytes larger)", n)
	}
	if n := th.Need(1_000_000); n != 50_000 {
		t.Errorf("Need(1e6) = %d, want 50000 (percent larger)", n)
	}
}

func TestCheckOpen(t *testing.T) {
	fs := &fakeFS{}
	fs.total.Store(100 * mib)
	fs.free.Store(10 * mib)
	if err := checkOpen("/data", Threshold{Bytes: 5 * mib}, fs.stat); err != nil {
		t.Fatalf("enough space: %v", err)
	}
	err := checkOpen("/data", Threshold{Bytes: 20 * mib}, fs.stat)
	if err == nil {
		t.Fatal("below the minimum: no error")
	}
	msg := err.Error()
	for _, want := range []string{"/data", "10.0 MiB free", "20.0 MiB", "--min-free-disk"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if err := checkOpen("/data", Threshold{}, fs.stat); err != nil {
		t.Errorf("zero threshold: %v", err)
	}
	fs.fail.Store(true)
	if err := checkOpen("/data", Threshold{Bytes: 1}, fs.stat); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Errorf("stat failure: %v", err)
	}
}

func TestStatfsOfMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet", "there")
	u, err := Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Total == 0 || u.Free > u.Total {
		t.Fatalf("usage %+v", u)
	}
	if err := CheckOpen(dir, Threshold{Bytes: 1}); err != nil {
		t.Fatalf("CheckOpen: %v", err)
	}
}

// TestWatcherTransitions drives a watcher with a fake file system and a mock clock.
func TestWatcherTransitions(t *testing.T) {
	fs := &fakeFS{}
	fs.total.Store(1000 * mib)
	fs.free.Store(500 * mib)
	clk := clock.NewMock()
	reg := prometheus.NewRegistry()
	var logs logBuf
	changes := make(chan State, 10)
	w, err := New(Options{
		Dir: "/data", Threshold: Threshold{Bytes: 100 * mib}, Interval: time.Second, Clock: clk, Stat: fs.stat,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registerer: reg,
		OnChange: func(s State) { changes <- s },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := w.Err(); err != nil || w.State().Low {
		t.Fatalf("initially low: %v", err)
	}
	if err := w.Wait(ctx); err != nil {
		t.Fatalf("Wait with space: %v", err)
	}

	// The disk fills up: the next poll turns low.
	changed := w.Changed()
	fs.free.Store(99 * mib)
	s := pollUntil(t, clk, changes)
	if !s.Low || !strings.Contains(s.Reason, "99.0 MiB free") || !strings.Contains(s.Reason, "100.0 MiB") {
		t.Fatalf("state %+v", s)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed at the transition")
	}
	if err := w.Err(); err == nil || !strings.Contains(err.Error(), "disk space low") {
		t.Fatalf("Err() = %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("no WARN logged:\n%s", logs.String())
	}
	if v := value(t, reg, "quotes_disk_low"); v != 1 {
		t.Fatalf("quotes_disk_low = %v", v)
	}

	// Wait blocks while low …
	waited := make(chan error, 1)
	go func() { waited <- w.Wait(ctx) }()
	// … also when space comes back only up to the minimum (hysteresis: 10 % above it).
	fs.free.Store(105 * mib)
	for i := 0; i < 3; i++ {
		clk.Add(time.Second)
	}
	eventually(t, "polls", func() bool { return w.State().Free == 105*mib })
	select {
	case err := <-waited:
		t.Fatalf("Wait returned %v within the hysteresis", err)
	default:
	}
	fs.free.Store(200 * mib)
	s = pollUntil(t, clk, changes)
	if s.Low || s.Reason != "" {
		t.Fatalf("state %+v", s)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return when space came back")
	}
	if v := value(t, reg, "quotes_disk_free_bytes"); v != 200*mib {
		t.Fatalf("quotes_disk_free_bytes = %v", v)
	}

	// A failed measurement keeps the state and is counted.
	fs.fail.Store(true)
	if _, err := w.Check(); err == nil {
		t.Fatal("Check with a failing stat succeeded")
	}
	if w.State().Low {
		t.Fatal("a failed measurement changed the state")
	}

	// Wait honours its context.
	fs.fail.Store(false)
	fs.free.Store(0)
	pollUntil(t, clk, changes)
	wctx, wcancel := context.WithCancel(ctx)
	wcancel()
	if err := w.Wait(wctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context = %v", err)
	}
	if v := value(t, reg, "quotes_disk_stat_errors_total"); v != 1 {
		t.Fatalf("quotes_disk_stat_errors_total = %v, want 1", v)
	}
	if v := value(t, reg, "quotes_disk_low_total"); v != 2 {
		t.Fatalf("quotes_disk_low_total = %v, want 2", v)
	}
}

// pollUntil advances the mock clock one interval at a time until a transition is reported.
func pollUntil(t *testing.T, clk *clock.Mock, changes <-chan State) State {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		clk.Add(time.Second)
		select {
		case s := <-changes:
			return s
		case <-deadline:
			t.Fatal("no transition")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// value returns the value of the (only) series name in reg.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	t.Fatalf("no series %s", name)
	return 0
}

func TestNewValidates(t *testing.T) {
	fs := &fakeFS{}
	for name, o := range map[string]Options{
		"no dir":            {Stat: fs.stat},
		"bad percent":       {Dir: "/d", Threshold: Threshold{Percent: 120}, Stat: fs.stat},
		"negative interval": {Dir: "/d", Interval: -1, Stat: fs.stat},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	fs.fail.Store(true)
	if _, err := New(Options{Dir: "/d", Stat: fs.stat}); err == nil {
		t.Error("New with a failing stat succeeded")
	}
	reg := prometheus.NewRegistry()
	fs.fail.Store(false)
	if _, err := New(Options{Dir: "/d", Stat: fs.stat, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: "/d", Stat: fs.stat, Registerer: reg}); err == nil {
		t.Error("second registration succeeded")
	}
}

// TestTmpfsFillsUp runs the watcher and CheckOpen on a real 4 MiB tmpfs that a writer fills
// up: it needs root and a kernel that lets it mount (skipped otherwise).
func TestTmpfsFillsUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	data := filepath.Join(dir, "data")
	min := Threshold{Bytes: mib}
	if err := CheckOpen(data, min); err != nil {
		t.Fatalf("empty tmpfs: %v", err)
	}
	clk := clock.NewMock()
	changes := make(chan State, 10)
	w, err := New(Options{Dir: data, Threshold: min, Clock: clk, OnChange: func(s State) { changes <- s }})
	if err != nil {
		t.Fatal(err)
	}
	if s := w.State(); s.Total != 4*mib || s.Free != 4*mib {
		t.Fatalf("tmpfs of 4 MiB measured as %+v", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Fill it until a write fails (ENOSPC), as an unchecked writer would.
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	var wrote int
	for {
		n, err := f.Write(chunk)
		wrote += n
		if err != nil {
			break
		}
	}
	f.Close()
	s := pollUntil(t, clk, changes)
	if !s.Low || s.Free >= mib {
		t.Fatalf("after writing %d bytes: %+v", wrote, s)
	}
	err = CheckOpen(data, min)
	if err == nil || !strings.Contains(err.Error(), "below the minimum") {
		t.Fatalf("CheckOpen on the full tmpfs: %v", err)
	}
	t.Logf("CheckOpen: %v", err)
	// Space is freed: the watcher says so by itself.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	s = pollUntil(t, clk, changes)
	if s.Low || s.Free != 4*mib {
		t.Fatalf("after freeing: %+v", s)
	}
	if err := w.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}
