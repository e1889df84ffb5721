// Package proc starts and supervises the quotes binaries a harness runs (the chaos soak,
// the benchmark): real child processes, each in its own process group with its output in a
// log file, which the harness waits for, signals, stops, kills with SIGKILL (kill -9
// included), and kills all at once on the way out, on success, failure or Ctrl-C.
//
// It also holds the small helpers such harnesses share: Tail of a log, FreePort, Get of an
// HTTP endpoint, Sleep and WaitFor, and AnonRSS of a process.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Group tracks every child process it started, so that KillAll can kill what is still
// running. The zero Group is ready to use.
type Group struct {
	mu   sync.Mutex
	live map[*Process]struct{}
}

// Spec says what to start.
type Spec struct {
	Name   string   // the log is LogDir/Name.log
	LogDir string   // an existing directory
	Bin    string   // the binary
	Args   []string // its arguments
	Env    []string // added to this process's environment

	// Append appends to the log rather than truncating it, so that a restarted process
	// keeps one log; each start then writes a blank line and the time before the command.
	Append bool
	// CaptureStdout keeps stdout in memory (Process.Stdout) rather than in the log; stderr
	// always goes to the log.
	CaptureStdout bool
}

// Process is a running (or exited) child: its own process group, killed with the harness
// (Pdeathsig).
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	out     *lockedBuffer // stdout, with Spec.CaptureStdout
	started time.Time
	done    chan struct{}
	err     error         // exit error, set before done is closed
	wall    time.Duration // start → exit, set before done is closed
	rss     *rssMeter     // follows the peak RSS while the process runs
	maxRSS  int64         // bytes, the meter's peak, set before done is closed
}

// Start runs s.Bin with s.Args, its stdout and stderr going to s.LogDir/s.Name.log.
func (g *Group) Start(s Spec) (*Process, error) {
	logPath := filepath.Join(s.LogDir, s.Name+".log")
	var f *os.File
	var err error
	if s.Append {
		f, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	} else {
		f, err = os.Create(logPath)
	}
	if err != nil {
		return nil, err
	}
	if s.Append {
		fmt.Fprintf(f, "\n$ %s %s   (%s)\n", s.Bin, strings.Join(s.Args, " "), time.Now().UTC().Format(time.RFC3339Nano))
	} else {
		fmt.Fprintf(f, "$ %s %s\n", s.Bin, strings.Join(s.Args, " "))
	}
	cmd := exec.Command(s.Bin, s.Args...)
	if len(s.Env) > 0 {
		cmd.Env = append(os.Environ(), s.Env...)
	}
	p := &Process{name: s.Name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = f, f
	if s.CaptureStdout {
		p.out = &lockedBuffer{}
		cmd.Stdout = p.out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	// Start returns only once the child's execve succeeded, so its status file already
	// describes the child's own, fresh address space. The meter opens it before the
	// waiter below can reap the child, so it cannot read a process that reused the pid.
	p.rss = openRSSMeter(cmd.Process.Pid)
	p.rss.sample()
	exited := make(chan struct{})
	go func() {
		t := time.NewTicker(rssPollInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.rss.sample()
			case <-exited:
				return
			}
		}
	}()
	g.mu.Lock()
	if g.live == nil {
		g.live = map[*Process]struct{}{}
	}
	g.live[p] = struct{}{}
	g.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		p.wall = time.Since(p.started)
		close(exited)
		p.maxRSS = p.rss.close()
		f.Close()
		g.mu.Lock()
		delete(g.live, p)
		g.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// KillAll kills every child still running (SIGKILL to its process group) and waits for
// them, at most 10 seconds each.
func (g *Group) KillAll() {
	g.mu.Lock()
	var all []*Process
	for p := range g.live {
		all = append(all, p)
	}
	g.mu.Unlock()
	for _, p := range all {
		p.Signal(syscall.SIGKILL)
		p.Signal(syscall.SIGCONT) // a stopped process dies only once it runs
	}
	for _, p := range all {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
}

// Name is Spec.Name.
func (p *Process) Name() string { return p.name }

// LogPath is the log file: stderr, and stdout unless captured.
func (p *Process) LogPath() string { return p.logPath }

// Pid is the process id, which is also the id of its process group.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and its log is closed.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the exit error (nil for exit status 0, an *exec.ExitError otherwise); nil while
// the process runs.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Wall is the time from start to exit; 0 while the process runs.
func (p *Process) Wall() time.Duration {
	if !p.Exited() {
		return 0
	}
	return p.wall
}

// MaxRSS is the peak resident set size of the process itself in bytes (VmHWM in
// /proc/PID/status, its descendants not included); 0 while the process runs.
//
// It is polled, at Start, every rssPollInterval while the process runs, and whenever the
// harness signals it (Signal, so Kill, Stop and KillAll too), because the figure is gone
// once the process has exited: it is exact for a process the harness kills (SIGKILL), and
// misses at most the last interval of one that exits by itself (after Stop's SIGTERM too).
// A process that exits before the first read, or where /proc cannot be read, has 0:
// unknown, rather than a number that is not its own.
//
// It is not wait4's ru_maxrss, which is wrong here: os/exec starts a child with
// clone(CLONE_VM|CLONE_VFORK), so until execve the child runs on the parent's address
// space, and execve folds that old mm's high-water RSS, the parent's, into the child's
// signal->maxrss. Every child would report at least the harness's own peak when it started
// the child (a /bin/true started by a harness that had touched 300 MiB reports 303 MiB).
// VmHWM is the high-water mark of the mm the child got at execve, which starts empty.
func (p *Process) MaxRSS() int64 {
	if !p.Exited() {
		return 0
	}
	return p.maxRSS
}

// Stdout is what the process wrote to stdout so far, with Spec.CaptureStdout.
func (p *Process) Stdout() string {
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// Wait waits for the process to exit; a non-zero exit is an error naming its log and
// quoting its end. If ctx ends first, Wait kills the process and returns ctx.Err().
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.Kill()
		return ctx.Err()
	}
	if p.err != nil {
		return fmt.Errorf("%s: %v (log: %s)\n%s", p.name, p.err, p.logPath, Tail(p.logPath, 1500))
	}
	return nil
}

// Signal sends sig to the process group. It first reads the process's peak RSS, which a
// signal may be the last chance to read (see MaxRSS).
func (p *Process) Signal(sig syscall.Signal) {
	if p.rss != nil {
		p.rss.sample()
	}
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Kill kills the process group (SIGKILL) and waits until the process is gone.
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	p.Signal(syscall.SIGCONT) // a stopped process dies only once it runs
	<-p.done
}

// Stop sends SIGTERM (and SIGCONT, for a stopped process) and waits up to grace, then
// kills. It returns the exit error of a process that exited by itself, or an error saying
// it was killed.
func (p *Process) Stop(grace time.Duration) error {
	p.Signal(syscall.SIGTERM)
	p.Signal(syscall.SIGCONT)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		p.Kill()
		return fmt.Errorf("%s did not stop within %v after SIGTERM: killed", p.name, grace)
	}
}

// rssPollInterval is how often a running process's peak RSS is read.
const rssPollInterval = 100 * time.Millisecond

// rssMeter follows the peak RSS of one process: the largest VmHWM read from its
// /proc/PID/status, which stays open from Start until the process is reaped. An open
// /proc/PID file belongs to the process, not to the number: once the process is reaped,
// reads fail (ESRCH) even if the pid is reused. A zombie's status has no VmHWM at all, its
// memory released at exit.
type rssMeter struct {
	mu   sync.Mutex
	f    *os.File // nil if it could not be opened, or once closed
	buf  []byte
	peak int64 // bytes
}

func openRSSMeter(pid int) *rssMeter {
	f, err := os.Open(statusPath(pid))
	if err != nil {
		return &rssMeter{} // no /proc: MaxRSS is 0, unknown
	}
	return &rssMeter{f: f, buf: make([]byte, 8<<10)}
}

// sample reads VmHWM once and keeps it if it is the largest yet; it ignores a failed read
// (the process has exited).
func (m *rssMeter) sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return
	}
	n, err := m.f.ReadAt(m.buf, 0)
	if n == 0 && err != nil {
		return
	}
	if v, err := statusBytes(m.buf[:n], "VmHWM"); err == nil && v > m.peak {
		m.peak = v
	}
}

// close closes the status file and returns the peak.
func (m *rssMeter) close() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f != nil {
		m.f.Close()
		m.f = nil
	}
	return m.peak
}

func statusPath(pid int) string { return "/proc/" + strconv.Itoa(pid) + "/status" }

// statusBytes returns the field key of a /proc/PID/status (a size in kB) in bytes.
func statusBytes(status []byte, key string) (int64, error) {
	for line := range bytes.Lines(status) {
		v, ok := bytes.CutPrefix(line, []byte(key+":"))
		if !ok {
			continue
		}
		num, ok := bytes.CutSuffix(bytes.TrimSpace(v), []byte(" kB"))
		if !ok {
			return 0, fmt.Errorf("parse %s %q: not in kB", key, bytes.TrimSpace(v))
		}
		kb, err := strconv.ParseInt(string(bytes.TrimSpace(num)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", key, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s: %w", key, syscall.ENOENT)
}

// AnonRSS returns the anonymous resident memory of pid (RssAnon in /proc/PID/status) in
// bytes: the process's own memory, without the file pages it maps (Badger's WAL files).
func AnonRSS(pid int) (int64, error) {
	status, err := os.ReadFile(statusPath(pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	v, err := statusBytes(status, "RssAnon")
	if err != nil {
		return 0, fmt.Errorf("status of %d: %w", pid, err)
	}
	return v, nil
}

// lockedBuffer is a bytes.Buffer safe to write from the exec copier and read meanwhile.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail returns the last n bytes of the file at path ("" if it cannot be read).
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// httpClient keeps up to 64 idle connections per host: the benchmark's concurrent GETs
// reuse them.
var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// Get fetches url (10 s timeout) and returns the status and body.
func Get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Sleep waits d or until ctx ends; it returns ctx.Err() if ctx ended (at once for d <= 0).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitFor polls cond every interval until it holds, ctx ends or timeout passes; the
// timeout error is "what: not within timeout".
func WaitFor(ctx context.Context, timeout, interval time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(what + ": not within " + timeout.String())
		}
		if err := Sleep(ctx, interval); err != nil {
			return err
		}
	}
}
