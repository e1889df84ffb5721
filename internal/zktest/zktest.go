// Package zktest starts private ZooKeeper servers for integration tests (ClickHouse
// replication, internal/chtest's clusters) and for scripts/cluster.sh.
//
// Start runs Debian's ZooKeeper (package zookeeper, /usr/share/java/zookeeper.jar, with the
// machine's java) as a standalone server of its own under t.TempDir(): a generated zoo.cfg,
// the client port on loopback only (a free port), no admin server, and a data directory
// under the test's. The server is killed by t.Cleanup.
//
// When ZooKeeper or Java is not installed (scripts/deps.sh installs them) or the server does
// not come up, Start skips the test, except when the CI environment variable is set: then
// it fails loudly, so a CI run never passes by skipping.
package zktest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quotesdev/quotes/internal/proc"
)

// StartTimeout bounds how long Start waits for the server to answer.
const StartTimeout = 60 * time.Second

// Jar is where Debian's zookeeper package installs the server; its manifest names the
// libraries it needs.
const Jar = "/usr/share/java/zookeeper.jar"

// Server is a private ZooKeeper process.
type Server struct {
	// Addr is the client address, 127.0.0.1:PORT.
	Addr string
	// Host and Port are Addr's parts.
	Host string
	Port int
	// Dir holds zoo.cfg, data/ and the output log.
	Dir string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Options configure StartProcess.
type Options struct {
	// Detached leaves the server running when the starting process exits
	// (scripts/cluster.sh); otherwise it is killed with it.
	Detached bool
}

// Start starts a private server for t and kills it when t ends. See the package doc for
// when it skips or fails.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartProcess(t.TempDir(), Options{})
	if err != nil {
		Unavailable(t, err)
		return nil
	}
	t.Cleanup(s.Stop)
	return s
}

// Unavailable fails (CI set) or skips t because a server could not be had.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("zktest: ZooKeeper integration test cannot run in CI: %v (scripts/deps.sh installs zookeeper)", err)
	}
	t.Skipf("zktest: skipping, no ZooKeeper server: %v (run scripts/deps.sh to install one)", err)
}

// Command returns the java command line that runs a standalone server on cfg.
func Command(cfg string) ([]string, error) {
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, errors.New("java not found in PATH")
	}
	if _, err := os.Stat(Jar); err != nil {
		return nil, fmt.Errorf("ZooKeeper is not installed (%s): %w", Jar, err)
	}
	return []string{java, "-Xms32m", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dzookeeper.admin.enableServer=false", "-cp", Jar,
		"org.apache.zookeeper.server.ZooKeeperServerMain", cfg}, nil
}

// StartProcess starts a server with its configuration, data and log under dir (which the
// caller creates and removes) and waits until it answers "ruok". The caller stops it.
func StartProcess(dir string, opts Options) (*Server, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := proc.FreePort()
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		s := &Server{Host: "127.0.0.1", Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir}
		if lastErr = s.launch(opts); lastErr == nil {
			return s, nil
		}
		if !strings.Contains(lastErr.Error(), "in use") {
			break
		}
	}
	return nil, lastErr
}

func (s *Server) launch(opts Options) error {
	data := filepath.Join(s.Dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return fmt.Errorf("zookeeper directory: %w", err)
	}
	cfg := filepath.Join(s.Dir, "zoo.cfg")
	conf := fmt.Sprintf(`tickTime=500
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,stat
autopurge.purgeInterval=0
`, data, s.Port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write zoo.cfg: %w", err)
	}
	argv, err := Command(cfg)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(s.Dir, "zookeeper.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open zookeeper log: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !opts.Detached {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start zookeeper: %w", err)
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
	deadline := time.Now().Add(StartTimeout)
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 250*time.Millisecond) {
		if s.ruok() {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("zookeeper on %s exited during start-up:\n%s", s.Addr, s.logTail())
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("zookeeper on %s: no answer within %v:\n%s", s.Addr, StartTimeout, s.logTail())
		}
	}
}

// ruok asks the four-letter command ruok.
func (s *Server) ruok() bool {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ruok")); err != nil {
		return false
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.HasPrefix(line, "imok")
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "zookeeper.log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// PID returns the server's process id (0 when stopped).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop kills the server and waits for it. ZooKeeper's state is on disk (fsynced
// transaction log), so nothing a client was told is lost.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}
