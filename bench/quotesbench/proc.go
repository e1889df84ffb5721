package main

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
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs tracks every child process so that cleanup can kill what is still running, on
// success, failure or Ctrl-C.
type procs struct {
	mu   sync.Mutex
	live map[*proc]struct{}
}

// proc is a running child: its own process group, killed with the bench (Pdeathsig).
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *bytes.Buffer // stdout
	errOut  *os.File      // stderr goes to a log file
	logPath string
	started time.Time
	done    chan struct{}
	err     error         // exit error, set before done is closed
	wall    time.Duration // start → exit
	maxRSS  int64         // bytes, from wait4's rusage
}

func (ps *procs) start(name, logDir, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "$ %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	p := &proc{name: name, cmd: cmd, out: &bytes.Buffer{}, errOut: f, logPath: logPath, done: make(chan struct{})}
	cmd.Stdout = &lockedWriter{w: p.out}
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ps.mu.Lock()
	if ps.live == nil {
		ps.live = map[*proc]struct{}{}
	}
	ps.live[p] = struct{}{}
	ps.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		p.wall = time.Since(p.started)
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.maxRSS = ru.Maxrss * 1024 // kilobytes on Linux
		}
		f.Close()
		ps.mu.Lock()
		delete(ps.live, p)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// wait waits for p to exit (or ctx); a non-zero exit is an error naming its log.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.kill()
		<-p.done
		return ctx.Err()
	}
	if p.err != nil {
		return fmt.Errorf("%s: %v (log: %s)\n%s", p.name, p.err, p.logPath, tail(p.logPath, 1500))
	}
	return nil
}

// signal sends sig to p's process group.
func (p *proc) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// kill kills p's process group at once.
func (p *proc) kill() { p.signal(syscall.SIGKILL) }

// stop sends SIGTERM and waits up to grace, then kills.
func (p *proc) stop(grace time.Duration) {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) stdout() string {
	return p.out.String()
}

// killAll kills every child still running and waits for them.
func (ps *procs) killAll() {
	ps.mu.Lock()
	var all []*proc
	for p := range ps.live {
		all = append(all, p)
	}
	ps.mu.Unlock()
	for _, p := range all {
		p.kill()
	}
	for _, p := range all {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// get fetches url and returns the status and body.
func get(ctx context.Context, url string) (int, []byte, error) {
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

// waitReady polls url until it answers 200, p exits, or timeout passes; it returns the
// time it took.
func waitReady(ctx context.Context, url string, p *proc, timeout time.Duration) (time.Duration, error) {
	begin := time.Now()
	deadline := begin.Add(timeout)
	for time.Now().Before(deadline) {
		if code, _, err := get(ctx, url); err == nil && code == http.StatusOK {
			return time.Since(begin), nil
		}
		if p != nil && p.exited() {
			return 0, fmt.Errorf("%s exited before %s answered 200 (log: %s)\n%s", p.name, url, p.logPath, tail(p.logPath, 1500))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return 0, errors.New("no 200 from " + url + " within " + timeout.String())
}

// scrape fetches and parses /metrics.
func scrape(ctx context.Context, base string) (metrics, error) {
	code, body, err := get(ctx, base+"/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: status %d", base, code)
	}
	return parseMetrics(string(body)), nil
}
