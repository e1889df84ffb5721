// Package s3test starts private S3 servers for integration tests: the Versity S3 gateway
// (versitygw, posix backend) on a free loopback port, storing under t.TempDir().
//
// Start launches `versitygw --port 127.0.0.1:PORT --access KEY --secret SECRET posix DIR`,
// waits until it answers HTTP and creates a bucket; the server is killed by t.Cleanup.
// Kill and Restart simulate an outage and its end (same port, same data). StartProcess and
// Relaunch do the same outside a test (make chaos).
//
// The binary is found in PATH, in $GOBIN, or in $(go env GOPATH)/bin, where
// scripts/deps.sh installs it (`go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`).
// When it is missing or does not come up, Start skips the test, except when the CI
// environment variable is set: then it fails, so a CI run never passes by skipping. In
// -short mode (make test-unit) Start skips the test without starting a server, again
// except when CI is set.
package s3test

import (
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

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/quotesdev/quotes/internal/gobin"
	"github.com/quotesdev/quotes/internal/proc"
)

// StartTimeout bounds how long Start waits for the gateway to answer.
const StartTimeout = 30 * time.Second

// Credentials of every test server.
const (
	AccessKey = "quotestest"
	SecretKey = "quotestestsecret"
	Region    = "us-east-1"
	// Bucket is the bucket Start creates.
	Bucket = "quotes"
)

// Server is a private versitygw process.
type Server struct {
	// Addr is 127.0.0.1:PORT; Endpoint is http://Addr.
	Addr, Endpoint string
	// Dir is the posix backend's root (the bucket is a directory in it); object metadata
	// (multipart upload names among it) lives in a sidecar directory next to it, so any
	// file system will do.
	Dir string

	meta string // metadata sidecar: no dependency on the file system's extended attributes
	bin  string
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary returns the path of versitygw: in PATH, $GOBIN, $GOPATH/bin or ~/go/bin.
func Binary() (string, error) { return gobin.Find("versitygw") }

// Start starts a gateway for t with the bucket Bucket, and kills it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("s3test: integration test with an S3 server, skipped in -short mode")
	}
	s, err := start(t.TempDir())
	if err != nil {
		if errors.Is(err, errUnavailable) {
			unavailable(t, err)
			return nil
		}
		t.Fatalf("s3test: %v", err)
	}
	t.Cleanup(s.Kill)
	return s
}

// StartProcess starts a gateway like Start, but outside a test: its data, metadata and log
// live under dir (which the caller creates and removes), the bucket Bucket exists, and the
// caller stops it with Kill (Relaunch brings it back). It returns an error when versitygw is
// not installed or does not come up. make chaos uses it.
func StartProcess(dir string) (*Server, error) {
	return start(dir)
}

// errUnavailable marks the errors of start that mean "no gateway here" (Start skips on
// them outside CI) rather than a broken one.
var errUnavailable = errors.New("s3test: no S3 server")

// start launches a gateway storing under dir on a free port and creates the bucket.
func start(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnavailable, err)
	}
	s := &Server{Dir: filepath.Join(dir, "data"), meta: filepath.Join(dir, "meta"), bin: bin, log: filepath.Join(dir, "versitygw.log")}
	for _, d := range []string{s.Dir, s.meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := proc.FreePort()
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.Endpoint = "http://" + s.Addr
		if lastErr = s.launch(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w: %w", errUnavailable, lastErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	c, err := s.NewClient()
	if err == nil {
		err = c.MakeBucket(ctx, Bucket, minio.MakeBucketOptions{Region: Region})
	}
	if err != nil {
		s.Kill()
		return nil, fmt.Errorf("create bucket: %v\n%s", err, s.logTail())
	}
	return s, nil
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("s3test: S3 integration test cannot run in CI: %v (scripts/deps.sh installs versitygw)", err)
	}
	t.Skipf("s3test: skipping, no S3 server: %v (run scripts/deps.sh to install versitygw)", err)
}

// launch starts the process and waits until it answers.
func (s *Server) launch() error {
	out, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "--port", s.Addr, "--access", AccessKey, "--secret", SecretKey,
		"--region", Region, "--quiet", "posix", "--sidecar", s.meta, s.Dir)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID=", "ROOT_SECRET_ACCESS_KEY=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
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
	if err := waitReady(s.Endpoint, done); err != nil {
		s.Kill()
		return fmt.Errorf("versitygw on %s: %w\n%s", s.Addr, err, s.logTail())
	}
	return nil
}

func waitReady(endpoint string, done <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(StartTimeout)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		resp, err := client.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil // any HTTP answer (403 for an unsigned request) means it serves
		}
		select {
		case <-done:
			return errors.New("exited during start-up")
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %v", StartTimeout)
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

// Client returns a client of the server with the test credentials.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := s.NewClient()
	if err != nil {
		t.Fatalf("s3test: client: %v", err)
	}
	return c
}

// NewClient returns a client of the server with the test credentials (Client outside a
// test).
func (s *Server) NewClient() (*minio.Client, error) {
	return minio.New(s.Addr, &minio.Options{
		Creds:        s.Credentials(),
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
	})
}

// Credentials returns the test server's static credentials.
func (s *Server) Credentials() *credentials.Credentials {
	return credentials.NewStaticV4(AccessKey, SecretKey, "")
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

// Restart starts the server again after Kill, on the same port and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Relaunch(); err != nil {
		t.Fatalf("s3test: restart: %v", err)
	}
}

// Relaunch is Restart outside a test (for StartProcess servers): it kills a running server,
// starts it again on the same port and data, and returns an error when it does not come
// back.
func (s *Server) Relaunch() error {
	s.Kill()
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the port may linger a moment
		if err = s.launch(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}
