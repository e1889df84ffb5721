// Package chtest starts private ClickHouse servers for integration tests.
//
// Start launches a clickhouse-server of its own under t.TempDir(): loopback only, on free
// ports (the native TCP port and the HTTP port; no interserver, MySQL or PostgreSQL ports),
// with a generated config.xml and users.xml that Debian's 18.16 reads and current versions
// still accept (the <yandex> root element, plain password-less default user). The server
// is torn down by t.Cleanup. Kill and Restart simulate a server crash and its recovery on
// the same ports and data directory. StartProcess (process.go) and Relaunch do the same
// outside a test (make bench, make chaos).
//
// When no ClickHouse binary is installed (scripts/deps.sh installs one) or the server does
// not come up, Start skips the test, except when the CI environment variable is set: then
// it fails loudly, so a CI run never passes by skipping its integration tests. In -short
// mode (make test-unit) Start and Shared.Get skip the test without starting a server,
// again except when CI is set.
//
// Start-up is fast (about 0.1–0.3 s for 18.16 on an idle machine), so every test can have a
// server of its own; Shared hands out one server per test binary for packages with many
// small tests.
package chtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long Start waits for a server to answer.
const StartTimeout = 30 * time.Second

// Server is a private clickhouse-server process.
type Server struct {
	// Addr is the native protocol address, 127.0.0.1:PORT.
	Addr string
	// HTTPAddr is the HTTP interface address, 127.0.0.1:PORT.
	HTTPAddr string
	// DSN is the native protocol DSN for clickhouse-go: clickhouse://127.0.0.1:PORT/default.
	DSN string
	// HTTPDSN is the HTTP protocol DSN for clickhouse-go: http://127.0.0.1:PORT/default.
	HTTPDSN string
	// Dir holds config.xml, users.xml, data/ and log/.
	Dir string
	// StartupTime is how long the latest (re)start took until the server answered.
	StartupTime time.Duration

	bin      []string // the command: clickhouse-server, or clickhouse server
	detached bool     // survives the starting process (scripts/cluster.sh)
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd exits
	dbSeq    int
}

// Start starts a private server for t and stops it when t ends. See the package doc for
// when it skips or fails.
func Start(t testing.TB) *Server {
	t.Helper()
	skipShort(t)
	s, err := start(t.TempDir())
	if err != nil {
		unavailable(t, err)
		return nil
	}
	t.Cleanup(s.Stop)
	return s
}

// skipShort skips an integration test in -short mode, unless CI is set: a CI run never
// skips its integration tests.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("chtest: integration test with a ClickHouse server, skipped in -short mode")
	}
}

// unavailable fails (CI) or skips the test because no server could be had.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("chtest: ClickHouse integration test cannot run in CI: %v (scripts/deps.sh installs clickhouse-server)", err)
	}
	t.Skipf("chtest: skipping, no ClickHouse server: %v (run scripts/deps.sh to install one)", err)
}

// Binary returns the command line that runs a ClickHouse server on this machine:
// clickhouse-server (Debian's packages, older official ones), or the multi-call
// clickhouse binary's "server" mode.
func Binary() ([]string, error) {
	for _, name := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return []string{p}, nil
		}
	}
	for _, name := range []string{"clickhouse", "/usr/bin/clickhouse"} {
		if p, err := exec.LookPath(name); err == nil {
			return []string{p, "server"}, nil
		}
	}
	return nil, errors.New("neither clickhouse-server nor clickhouse found in PATH, /usr/sbin or /usr/bin")
}

// start writes the configuration under dir and starts the server, retrying with fresh
// ports when the chosen ones were taken meanwhile.
func start(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, fmt.Errorf("find free ports: %w", err)
		}
		s := &Server{
			Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
			HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
			Dir:      dir,
			bin:      bin,
		}
		s.DSN = "clickhouse://" + s.Addr + "/default"
		s.HTTPDSN = "http://" + s.HTTPAddr + "/default"
		if err := writeConfig(dir, ports[0], ports[1], ""); err != nil {
			return nil, err
		}
		if lastErr = s.launch(); lastErr == nil {
			return s, nil
		}
		if !strings.Contains(lastErr.Error(), "in use") {
			break
		}
	}
	return nil, lastErr
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// launch starts the process on the configuration in s.Dir and waits until it answers.
func (s *Server) launch() error {
	begin := time.Now()
	out, err := os.OpenFile(filepath.Join(s.Dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open server output log: %w", err)
	}
	args := append(append([]string(nil), s.bin[1:]...), "--config-file="+filepath.Join(s.Dir, "config.xml"))
	cmd := exec.Command(s.bin[0], args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group (a ^C of the test does not reach it first), and killed when
	// the test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !s.detached {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", strings.Join(s.bin, " "), err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		out.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	if err := s.waitReady(done, StartTimeout); err != nil {
		s.Kill()
		return fmt.Errorf("clickhouse-server on %s: %w\n%s", s.Addr, err, s.logTail())
	}
	s.StartupTime = time.Since(begin)
	return nil
}

// waitReady polls the HTTP /ping and the native port until both answer, the process
// exits or the timeout passes.
func (s *Server) waitReady(done <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		if s.ping(ctx, client) == nil {
			c, err := net.DialTimeout("tcp", s.Addr, time.Second)
			if err == nil {
				c.Close()
				return nil
			}
		}
		select {
		case <-done:
			return errors.New("server exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("no answer within %v", timeout)
		case <-time.After(delay):
		}
	}
}

// ping asks the HTTP interface's /ping.
func (s *Server) ping(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.HTTPAddr+"/ping", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// logTail returns the end of the server's logs, for error messages.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", "server.err.log"} {
		data, err := os.ReadFile(filepath.Join(s.Dir, "log", name))
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s:\n%s\n", name, data)
	}
	return b.String()
}

// Stop shuts the server down and waits for it: SIGTERM, then SIGKILL after StopGrace (18.16
// waits for its open client connections before it exits; committed inserts are on disk
// either way). Calling it again, or after Kill, does nothing.
func (s *Server) Stop() {
	s.signal(syscall.SIGTERM, StopGrace)
}

// StopGrace is how long Stop waits after SIGTERM before it kills the server.
const StopGrace = 3 * time.Second

// Kill kills the server at once (SIGKILL), like a crash, and waits until it is gone.
// Restart brings it back on the same ports and data.
func (s *Server) Kill() {
	s.signal(syscall.SIGKILL, 0)
}

// signal sends sig and waits for the process to exit, with SIGKILL after grace.
func (s *Server) signal(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// Restart starts the server again on the same ports and data directory (after Kill or
// Stop; a running server is stopped first). It fails the test (or skips, see Start) when the
// server does not come back.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Relaunch(); err != nil {
		t.Fatalf("chtest: restart: %v", err)
	}
}

// Relaunch is Restart outside a test (for StartProcess servers): it starts the server
// again on the same ports and data directory, stopping a running one first, and returns an
// error when it does not come back.
func (s *Server) Relaunch() error {
	s.Stop()
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.launch(); err == nil || !strings.Contains(err.Error(), "in use") {
			break
		}
		time.Sleep(250 * time.Millisecond) // the old sockets may linger a moment
	}
	return err
}

// PID returns the server's process id (0 when it is not running).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the server process is up (not whether it answers).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Shared starts one server per test binary on first use and returns it on every call; it
// is never restarted, so tests that Kill use Start instead. TestMain stops it:
//
//	func TestMain(m *testing.M) {
//		shared := &chtest.Shared{}
//		code := m.Run()
//		shared.Stop()
//		os.Exit(code)
//	}
//
// and tests call shared.Get(t). Each test should use a database of its own (see
// Server.Database) so tests do not see each other's tables.
type Shared struct {
	once sync.Once
	srv  *Server
	dir  string
	err  error
}

// Get returns the shared server, starting it on first use. See Start for when it skips
// or fails.
func (sh *Shared) Get(t testing.TB) *Server {
	t.Helper()
	skipShort(t)
	sh.once.Do(func() {
		sh.dir, sh.err = os.MkdirTemp("", "chtest-")
		if sh.err != nil {
			return
		}
		sh.srv, sh.err = start(sh.dir)
	})
	if sh.err != nil {
		unavailable(t, sh.err)
		return nil
	}
	return sh.srv
}

// Stop stops the shared server (if it was started) and removes its directory.
func (sh *Shared) Stop() {
	if sh.srv != nil {
		sh.srv.Stop()
	}
	if sh.dir != "" {
		os.RemoveAll(sh.dir)
	}
}

// Database returns a database name unique to t on this server, for DSNs of tests that share
// one server: the test name, reduced to [a-z0-9_], plus a counter. The database is not
// created: schema.Apply does that.
func (s *Server) Database(t testing.TB) string {
	s.mu.Lock()
	s.dbSeq++
	n := s.dbSeq
	s.mu.Unlock()
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(t.Name()) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() > 40 {
			break
		}
	}
	return b.String() + "_" + strconv.Itoa(n)
}

// DSNFor returns the native protocol DSN of database db on this server.
func (s *Server) DSNFor(db string) string { return "clickhouse://" + s.Addr + "/" + db }
