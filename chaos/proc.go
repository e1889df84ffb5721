package main

import (
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

// proc is a running child: its own process group, killed with chaos (Pdeathsig).
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{}
	err     error // exit error, set before done is closed
}

// start runs bin with args; stdout and stderr go to logDir/name.log (appended, so a
// restarted process keeps one log).
func (ps *procs) start(name, logDir string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "\n$ %s %s   (%s)\n", bin, strings.Join(args, " "), time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = f, f
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
		f.Close()
		ps.mu.Lock()
		delete(ps.live, p)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// wait waits for p to exit, at most timeout; a non-zero exit is an error naming its log.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v (log: %s)", p.name, timeout, p.logPath)
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

// kill kills p's process group (SIGKILL) and waits until p is gone.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	p.signal(syscall.SIGCONT) // a stopped process dies only once it runs
	<-p.done
}

// stop sends SIGTERM (and SIGCONT) and waits up to grace, then kills; it returns the
// exit error of a process that exited by itself.
func (p *proc) stop(grace time.Duration) error {
	p.signal(syscall.SIGTERM)
	p.signal(syscall.SIGCONT)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.kill()
		return fmt.Errorf("%s did not stop within %v after SIGTERM: killed", p.name, grace)
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

// killAll kills every child still running and waits for them.
func (ps *procs) killAll() {
	ps.mu.Lock()
	var all []*proc
	for p := range ps.live {
		all = append(all, p)
	}
	ps.mu.Unlock()
	for _, p := range all {
		p.signal(syscall.SIGKILL)
		p.signal(syscall.SIGCONT)
	}
	for _, p := range all {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
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

var httpClient = &http.Client{Timeout: 10 * time.Second}

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

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
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

// waitFor polls cond every interval until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout, interval time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(what + ": not within " + timeout.String())
		}
		if err := sleep(ctx, interval); err != nil {
			return err
		}
	}
}
