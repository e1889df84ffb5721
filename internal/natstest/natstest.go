// Package natstest starts private NATS servers with JetStream for integration tests: a
// nats-server process on a free loopback port, storing its streams under t.TempDir().
//
// Start launches `nats-server -a 127.0.0.1 -p PORT -js -sd DIR`, waits until a client can
// connect and reach JetStream, and kills the server by t.Cleanup. Kill and Restart simulate
// an outage and its end (same port, same store directory: the streams survive).
//
// The binary is found in PATH, in $GOBIN, or in $(go env GOPATH)/bin, where scripts/deps.sh
// installs it (`go install github.com/nats-io/nats-server/v2@v2.15.2`). When it is missing or
// does not come up, Start skips the test, except when the CI environment variable is set:
// then it fails, so a CI run never passes by skipping. In -short mode (make test-unit) Start
// skips the test without starting a server, again except when CI is set.
package natstest

import (
	"context"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/quotesdev/quotes/internal/gobin"
	"github.com/quotesdev/quotes/internal/proc"
)

// StartTimeout bounds how long Start waits for the server to serve JetStream.
const StartTimeout = 30 * time.Second

// Server is a private nats-server process with JetStream.
type Server struct {
	// Addr is 127.0.0.1:PORT; URL is nats://Addr.
	Addr, URL string
	// StoreDir is JetStream's store directory.
	StoreDir string

	bin  string
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary returns the path of nats-server: in PATH, $GOBIN, $GOPATH/bin or ~/go/bin.
func Binary() (string, error) { return gobin.Find("nats-server") }

// Start starts a server with JetStream for t and kills it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("natstest: integration test with a NATS server, skipped in -short mode")
	}
	bin, err := Binary()
	if err != nil {
		unavailable(t, err)
		return nil
	}
	dir := t.TempDir()
	s := &Server{StoreDir: filepath.Join(dir, "jetstream"), bin: bin, log: filepath.Join(dir, "nats-server.log")}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := proc.FreePort()
		if err != nil {
			t.Fatalf("natstest: free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "nats://" + s.Addr
		if lastErr = s.launch(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		unavailable(t, lastErr)
		return nil
	}
	t.Cleanup(s.Kill)
	return s
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("natstest: NATS integration test cannot run in CI: %v (scripts/deps.sh installs nats-server)", err)
	}
	t.Skipf("natstest: skipping, no NATS server: %v (run scripts/deps.sh to install nats-server)", err)
}

// launch starts the process and waits until JetStream answers.
func (s *Server) launch() error {
	host, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin, "-a", host, "-p", port, "-js", "-sd", s.StoreDir, "-l", s.log)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := waitReady(s.URL, done); err != nil {
		s.Kill()
		return fmt.Errorf("nats-server on %s: %w\n%s", s.Addr, err, s.logTail())
	}
	return nil
}

func waitReady(url string, done <-chan struct{}) error {
	deadline := time.Now().Add(StartTimeout)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		err := ping(url)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return errors.New("exited during start-up")
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no JetStream within %v: %w", StartTimeout, err)
		}
	}
}

// ping connects and asks JetStream for the account info.
func ping(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

// Conn returns a client connection to the server, closed when t ends.
func (s *Server) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("natstest: connect to %s: %v", s.URL, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream client of the server, its connection closed when t ends.
func (s *Server) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(s.Conn(t))
	if err != nil {
		t.Fatalf("natstest: JetStream: %v", err)
	}
	return js
}

// Kill kills the server (SIGKILL) and waits for it to exit. Calling it again does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart starts the server again after Kill, on the same port and store directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the port may linger a moment
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("natstest: restart: %v", err)
}
