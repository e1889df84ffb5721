package proc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sh starts `sh -c script` in g, logging to dir.
func sh(t *testing.T, g *Group, dir, name, script string) *Process {
	t.Helper()
	p, err := g.Start(Spec{Name: name, LogDir: dir, Bin: "/bin/sh", Args: []string{"-c", script}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.Exited() {
			p.Kill()
		}
	})
	return p
}

// childAllocEnv makes the test binary, re-executed by TestMaxRSSIsTheChilds, a child that
// maps and touches this many MiB, holds them a few poll intervals, and exits.
const childAllocEnv = "PROC_TEST_CHILD_ALLOC_MIB"

func TestMain(m *testing.M) {
	if v := os.Getenv(childAllocEnv); v != "" {
		mib, err := strconv.Atoi(v)
		if err != nil {
			os.Exit(2)
		}
		if _, err := touched(mib); err != nil {
			os.Exit(2)
		}
		time.Sleep(300 * time.Millisecond) // three poll intervals
		os.Exit(0)
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		os.Exit(0) // nothing to start
	}
	os.Exit(m.Run())
}

// waitLog polls p's log until it contains s (which must not be in the command line: the
// log starts with it).
func waitLog(t *testing.T, p *Process, s string) {
	t.Helper()
	if err := WaitFor(context.Background(), 10*time.Second, 5*time.Millisecond, "log line "+s, func() bool {
		return strings.Contains(Tail(p.LogPath(), 1<<20), s)
	}); err != nil {
		t.Fatalf("%v; log:\n%s", err, Tail(p.LogPath(), 1000))
	}
}

// signaled returns the signal that ended a process with exit error err (0 if none).
func signaled(err error) syscall.Signal {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

func TestWaitExitCode(t *testing.T) {
	dir := t.TempDir()
	var g Group
	ok := sh(t, &g, dir, "ok", "echo hello")
	if err := ok.Wait(context.Background()); err != nil {
		t.Fatalf("exit 0: %v", err)
	}
	// MaxRSS may be 0 here: sh can exit before its RSS is first read.
	if !ok.Exited() || ok.Err() != nil || ok.Wall() <= 0 || ok.MaxRSS() < 0 {
		t.Errorf("after exit 0: exited %v, err %v, wall %v, maxRSS %d", ok.Exited(), ok.Err(), ok.Wall(), ok.MaxRSS())
	}
	if got, want := Tail(ok.LogPath(), 1000), "$ /bin/sh -c echo hello\nhello\n"; got != want {
		t.Errorf("log %q, want %q", got, want)
	}
	if ok.LogPath() != filepath.Join(dir, "ok.log") || ok.Name() != "ok" {
		t.Errorf("name %q, log path %q", ok.Name(), ok.LogPath())
	}

	bad := sh(t, &g, dir, "bad", "echo broken >&2; exit 3")
	err := bad.Wait(context.Background())
	var ee *exec.ExitError
	if !errors.As(bad.Err(), &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Err() = %v, want exit status 3", bad.Err())
	}
	if err == nil || !strings.Contains(err.Error(), "bad: exit status 3 (log: "+bad.LogPath()+")") || !strings.Contains(err.Error(), "broken") {
		t.Errorf("Wait error %q: want the name, the exit status, the log path and its tail", err)
	}
}

func TestWaitContextKills(t *testing.T) {
	var g Group
	p := sh(t, &g, t.TempDir(), "long", "sleep 60")
	if p.Exited() || p.Err() != nil || p.Wall() != 0 || p.MaxRSS() != 0 {
		t.Errorf("running: exited %v, err %v, wall %v, maxRSS %d", p.Exited(), p.Err(), p.Wall(), p.MaxRSS())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want the context's error", err)
	}
	if !p.Exited() || signaled(p.Err()) != syscall.SIGKILL {
		t.Errorf("after Wait's ctx ended: exited %v, err %v, want killed", p.Exited(), p.Err())
	}
	// Read when it was killed, if not before: a live process has some memory resident.
	if p.MaxRSS() <= 0 {
		t.Errorf("MaxRSS of a killed sleep = %d", p.MaxRSS())
	}
}

func TestStopHonoured(t *testing.T) {
	var g Group
	p := sh(t, &g, t.TempDir(), "term", `trap 'echo bye; exit 0' TERM; echo re""ady; while :; do sleep 0.05; done`)
	waitLog(t, p, "ready")
	if err := p.Stop(30 * time.Second); err != nil {
		t.Fatalf("Stop = %v, want the clean exit of the trap", err)
	}
	if !p.Exited() || !strings.Contains(Tail(p.LogPath(), 1000), "bye") {
		t.Errorf("exited %v, log:\n%s", p.Exited(), Tail(p.LogPath(), 1000))
	}
}

func TestStopIgnoredKills(t *testing.T) {
	var g Group
	p := sh(t, &g, t.TempDir(), "stubborn", `trap '' TERM; echo re""ady; while :; do sleep 0.05; done`)
	waitLog(t, p, "ready")
	err := p.Stop(100 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "stubborn did not stop within 100ms after SIGTERM: killed") {
		t.Fatalf("Stop = %v, want killed after the grace", err)
	}
	if !p.Exited() || signaled(p.Err()) != syscall.SIGKILL {
		t.Errorf("exited %v, err %v, want SIGKILL", p.Exited(), p.Err())
	}
}

// TestKillGroup: kill -9 reaches the whole process group, a stopped one included.
func TestKillGroup(t *testing.T) {
	dir := t.TempDir()
	var g Group
	pidFile := filepath.Join(dir, "child.pid")
	p := sh(t, &g, dir, "parent", "sleep 60 & echo $! > "+pidFile+"; echo re\"\"ady; wait")
	waitLog(t, p, "ready")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if pgid, err := syscall.Getpgid(child); err != nil || pgid != p.Pid() {
		t.Fatalf("child's process group %d (%v), want %d", pgid, err, p.Pid())
	}
	p.Signal(syscall.SIGSTOP)
	p.Kill()
	if !p.Exited() || signaled(p.Err()) != syscall.SIGKILL {
		t.Errorf("exited %v, err %v, want SIGKILL", p.Exited(), p.Err())
	}
	// The orphaned child is reaped by init (or stays a zombie where nothing reaps).
	if err := WaitFor(context.Background(), 10*time.Second, 5*time.Millisecond, "child gone", func() bool {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat")
		if err != nil {
			return true
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
	}); err != nil {
		t.Error(err)
	}
}

func TestKillAll(t *testing.T) {
	var g Group
	dir := t.TempDir()
	var ps []*Process
	for _, name := range []string{"a", "b", "c"} {
		ps = append(ps, sh(t, &g, dir, name, "sleep 60"))
	}
	done := sh(t, &g, dir, "done", "exit 0")
	if err := done.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ps[1].Signal(syscall.SIGSTOP)
	g.KillAll()
	for _, p := range ps {
		if !p.Exited() || signaled(p.Err()) != syscall.SIGKILL {
			t.Errorf("%s: exited %v, err %v, want SIGKILL", p.Name(), p.Exited(), p.Err())
		}
	}
	g.mu.Lock()
	live := len(g.live)
	g.mu.Unlock()
	if live != 0 {
		t.Errorf("%d processes still tracked", live)
	}
	g.KillAll() // nothing left: a no-op
}

func TestLogAppendEnvStdout(t *testing.T) {
	dir := t.TempDir()
	var g Group
	run := func(s Spec) *Process {
		t.Helper()
		s.LogDir, s.Bin = dir, "/bin/sh"
		p, err := g.Start(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Append: a restart keeps the log, each start headed by a blank line and the time.
	for i := 0; i < 2; i++ {
		run(Spec{Name: "app", Args: []string{"-c", "echo run $PROC_TEST_RUN"}, Env: []string{"PROC_TEST_RUN=" + strconv.Itoa(i)}, Append: true})
	}
	log := Tail(filepath.Join(dir, "app.log"), 1<<20)
	if strings.Count(log, "\n$ /bin/sh -c echo run $PROC_TEST_RUN   (") != 2 || !strings.Contains(log, "run 0\n") || !strings.Contains(log, "run 1\n") {
		t.Errorf("appended log:\n%s", log)
	}
	// Without Append the log is truncated.
	for i := 0; i < 2; i++ {
		run(Spec{Name: "trunc", Args: []string{"-c", "echo run " + strconv.Itoa(i)}})
	}
	if log := Tail(filepath.Join(dir, "trunc.log"), 1<<20); log != "$ /bin/sh -c echo run 1\nrun 1\n" {
		t.Errorf("truncated log %q", log)
	}
	// CaptureStdout: stdout in memory, stderr in the log.
	p := run(Spec{Name: "cap", Args: []string{"-c", "echo out; echo err >&2"}, CaptureStdout: true})
	if p.Stdout() != "out\n" {
		t.Errorf("Stdout() = %q", p.Stdout())
	}
	if log := Tail(p.LogPath(), 1000); log != "$ /bin/sh -c echo out; echo err >&2\nerr\n" {
		t.Errorf("log with captured stdout %q", log)
	}
}

func TestStartErrors(t *testing.T) {
	var g Group
	dir := t.TempDir()
	if _, err := g.Start(Spec{Name: "x", LogDir: filepath.Join(dir, "missing"), Bin: "/bin/sh"}); err == nil {
		t.Error("a missing log directory: no error")
	}
	_, err := g.Start(Spec{Name: "nobin", LogDir: dir, Bin: filepath.Join(dir, "no-such-binary")})
	if err == nil || !strings.HasPrefix(err.Error(), "start nobin: ") {
		t.Errorf("a missing binary: %v", err)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Tail(path, 4); got != "6789" {
		t.Errorf("Tail 4 = %q", got)
	}
	if got := Tail(path, 100); got != "0123456789" {
		t.Errorf("Tail 100 = %q", got)
	}
	if got := Tail(path+"-missing", 4); got != "" {
		t.Errorf("Tail of a missing file = %q", got)
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if port <= 0 || port > 65535 {
		t.Fatalf("port %d", port)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d is not bindable: %v", port, err)
	}
	l.Close()
}

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte("path " + r.URL.Path))
	}))
	defer srv.Close()
	code, body, err := Get(context.Background(), srv.URL+"/x")
	if err != nil || code != http.StatusTeapot || string(body) != "path /x" {
		t.Errorf("Get = %d %q %v", code, body, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Get(ctx, srv.URL); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v", err)
	}
}

func TestSleepWaitFor(t *testing.T) {
	ctx := context.Background()
	if err := Sleep(ctx, 0); err != nil {
		t.Errorf("Sleep 0 = %v", err)
	}
	if err := Sleep(ctx, time.Millisecond); err != nil {
		t.Errorf("Sleep 1ms = %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := Sleep(cancelled, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep 0, cancelled = %v", err)
	}
	if err := Sleep(cancelled, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep 1h, cancelled = %v", err)
	}

	n := 0
	if err := WaitFor(ctx, time.Minute, time.Millisecond, "third call", func() bool { n++; return n == 3 }); err != nil || n != 3 {
		t.Errorf("WaitFor = %v after %d calls", err, n)
	}
	if err := WaitFor(ctx, 10*time.Millisecond, time.Millisecond, "never", func() bool { return false }); err == nil || err.Error() != "never: not within 10ms" {
		t.Errorf("WaitFor timeout = %v", err)
	}
	if err := WaitFor(cancelled, time.Minute, time.Millisecond, "never", func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitFor cancelled = %v", err)
	}
}

// touched maps mib MiB of anonymous memory and writes every page, so that all of it is
// resident; release unmaps it. Mapped rather than allocated, so that neither the garbage
// collector nor the race detector's shadow memory gets in the way of the figure.
func touched(mib int) (release func(), err error) {
	b, err := syscall.Mmap(-1, 0, mib<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(b); i += os.Getpagesize() {
		b[i] = 1
	}
	return func() { syscall.Munmap(b) }, nil
}

// TestMaxRSSIsTheChilds: a child's peak RSS is its own, not the harness's. The child
// inherits nothing from the parent's high-water mark, however large that is (rusage's
// ru_maxrss would report the parent's 400 MiB: see Process.MaxRSS).
func TestMaxRSSIsTheChilds(t *testing.T) {
	const parentMiB, childMiB = 400, 64
	self, err := os.Executable()
	if err != nil {
		t.Skip("no executable to re-run:", err)
	}
	release, err := touched(parentMiB)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if hwm, err := selfHWM(); err != nil || hwm < parentMiB<<20 {
		t.Fatalf("this process's VmHWM after touching %d MiB: %d (%v)", parentMiB, hwm, err)
	}
	var g Group
	p, err := g.Start(Spec{Name: "alloc", LogDir: t.TempDir(), Bin: self, Args: []string{"-test.run=^$"},
		Env: []string{childAllocEnv + "=" + strconv.Itoa(childMiB)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("child's MaxRSS %.1f MiB", float64(p.MaxRSS())/(1<<20))
	if got := p.MaxRSS(); got < childMiB<<20 || got >= parentMiB*3/4<<20 {
		t.Errorf("MaxRSS of a child that touched %d MiB, started by a parent that touched %d MiB: %.1f MiB, want >= %d MiB and < %d MiB",
			childMiB, parentMiB, float64(got)/(1<<20), childMiB, parentMiB*3/4)
	}
}

func TestStatusBytes(t *testing.T) {
	status := []byte("Name:\tquotes\nVmPeak:\t  2097152 kB\nVmHWM:\t   60352 kB\nRssAnon:\t 1024 kB\nThreads:\t7\n")
	for key, want := range map[string]int64{"VmHWM": 60352 << 10, "RssAnon": 1 << 20, "VmPeak": 2 << 30} {
		if got, err := statusBytes(status, key); err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", key, got, err, want)
		}
	}
	if _, err := statusBytes(status, "VmRSS"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("a missing field: %v, want ENOENT", err)
	}
	if _, err := statusBytes(status, "Threads"); err == nil {
		t.Error("a field not in kB: no error")
	}
	if _, err := statusBytes([]byte("VmHWM:\tmany kB\n"), "VmHWM"); !errors.Is(err, strconv.ErrSyntax) {
		t.Errorf("a field not a number: %v, want strconv.ErrSyntax", err)
	}

	rss, err := AnonRSS(os.Getpid())
	if err != nil {
		t.Fatalf("AnonRSS of this process: %v", err)
	}
	if rss <= 0 {
		t.Errorf("AnonRSS of this process = %d", rss)
	}
	if _, err := AnonRSS(-1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("AnonRSS of no process: %v, want not exist", err)
	}
}

// selfHWM is this process's VmHWM in bytes.
func selfHWM() (int64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return statusBytes(status, "VmHWM")
}
