package main

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
	"time"

	"golang.org/x/sys/unix"

	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/internal/proc"
	"github.com/quotesdev/quotes/internal/s3test"
)

// Names of the files and settings every run uses.
const (
	webhookSecret = "chaos-webhook-secret"
	archiveURL    = "s3://" + s3test.Bucket + "/chaos"
	// minFreeDisk is ingest's --min-free-disk; a disk episode leaves half of it free.
	minFreeDisk = 256 << 20
	// tmpfsSize is the data directory's tmpfs outside disk episodes (sparse: RAM is used
	// only for what is written).
	tmpfsSize = 4 << 30
	// checkpointEvery is ingest's --checkpoint-every (short: more checkpoints to aim at).
	checkpointEvery = 15 * time.Second
	grace           = 5 * time.Second // ingest's default --grace
)

// cluster is everything a run starts: the partner simulator, ingest, ClickHouse, the S3
// gateway, the webhook receiver and the data directory's file system.
type cluster struct {
	cfg  config
	tmp  string
	ps   *proc.Group
	logf func(format string, args ...any)

	mount  string // tmpfs mount point holding data, "" when mounting was impossible
	data   string // ingest's --data
	record string // ingest's --record
	logs   string

	genAddr, httpAddr string
	genStart          time.Time // the generator's first start
	ch                *chtest.Server
	s3                *s3test.Server
	hook              *receiver

	mu      sync.Mutex
	gen     *proc.Process
	ing     *proc.Process
	stopped bool // ingest is SIGSTOPped
}

func (c *cluster) base() string { return "http://" + c.httpAddr }

// setUp starts every component, ingest last, and waits until ingest is ready.
func (c *cluster) setUp(ctx context.Context) error {
	c.logs = filepath.Join(c.tmp, "logs")
	if err := os.MkdirAll(c.logs, 0o755); err != nil {
		return err
	}
	c.record = filepath.Join(c.tmp, "arrived.jsonl")
	if err := c.mountData(); err != nil {
		c.logf("no tmpfs for the data directory (%v): disk-full episodes are skipped", err)
		c.data = filepath.Join(c.tmp, "data")
	}

	chDir := filepath.Join(c.tmp, "clickhouse")
	if err := os.MkdirAll(chDir, 0o755); err != nil {
		return err
	}
	var err error
	if c.ch, err = chtest.StartProcess(chDir); err != nil {
		return fmt.Errorf("ClickHouse: %w", err)
	}
	c.logf("ClickHouse on %s (started in %v)", c.ch.Addr, c.ch.StartupTime.Round(time.Millisecond))
	s3Dir := filepath.Join(c.tmp, "s3")
	if err := os.MkdirAll(s3Dir, 0o755); err != nil {
		return err
	}
	if c.s3, err = s3test.StartProcess(s3Dir); err != nil {
		return fmt.Errorf("S3 gateway: %w", err)
	}
	c.logf("S3 gateway (versitygw) on %s", c.s3.Addr)
	if c.hook, err = newReceiver([]byte(webhookSecret)); err != nil {
		return fmt.Errorf("webhook receiver: %w", err)
	}
	c.logf("webhook receiver on %s", c.hook.addr)

	for _, a := range []*string{&c.genAddr, &c.httpAddr} {
		port, err := proc.FreePort()
		if err != nil {
			return err
		}
		*a = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	if err := c.startGenerator(ctx); err != nil {
		return err
	}
	if err := c.startIngest(); err != nil {
		return err
	}
	return c.waitReady(ctx, 2*time.Minute)
}

// mountData mounts a tmpfs for the data directory (root only).
func (c *cluster) mountData() error {
	if c.cfg.noDisk {
		return errors.New("-no-disk")
	}
	mnt := filepath.Join(c.tmp, "datafs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", tmpfsSize)); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", mnt, err)
	}
	c.mount = mnt
	c.data = filepath.Join(mnt, "data")
	return nil
}

// unmountData undoes mountData (cleanup).
func (c *cluster) unmountData() {
	if c.mount == "" {
		return
	}
	var err error
	for i := 0; i < 50; i++ { // a child may still hold a file for a moment
		if err = unix.Unmount(c.mount, 0); err == nil {
			c.mount = ""
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = unix.Unmount(c.mount, unix.MNT_DETACH)
	c.logf("unmount %s: %v (detached)", c.mount, err)
	c.mount = ""
}

// setDiskSize resizes the tmpfs (remount): used+free bytes, or back to tmpfsSize with 0.
func (c *cluster) setDiskFree(free int64) error {
	size := int64(tmpfsSize)
	if free > 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(c.mount, &st); err != nil {
			return err
		}
		used := int64(st.Blocks-st.Bfree) * st.Bsize
		size = used + free
	}
	return unix.Mount("tmpfs", c.mount, "tmpfs", unix.MS_REMOUNT, fmt.Sprintf("size=%d", size))
}

func (c *cluster) genArgs() []string {
	return []string{"generate", "--listen", c.genAddr, "--seed", strconv.FormatUint(c.cfg.seed, 10),
		"--instruments", strconv.Itoa(c.cfg.instruments), "--quote-interval", c.cfg.quoteInterval.String(),
		"--churn", strconv.FormatFloat(c.cfg.churn, 'f', -1, 64)}
}

// startGenerator starts the partner simulator and waits until it accepts connections. A
// restart has the same seed and flags and --skip = the time since the first start, so it
// continues the feed (the part during the outage is not sent).
func (c *cluster) startGenerator(ctx context.Context) error {
	args := c.genArgs()
	if c.genStart.IsZero() {
		c.genStart = time.Now()
	} else {
		args = append(args, "--skip", time.Since(c.genStart).Truncate(time.Millisecond).String())
	}
	p, err := c.ps.Start(proc.Spec{Name: "generate", LogDir: c.logs, Bin: c.cfg.bin, Args: args, Append: true})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.gen = p
	c.mu.Unlock()
	return proc.WaitFor(ctx, 30*time.Second, 20*time.Millisecond, "generator accepts connections", func() bool {
		if p.Exited() {
			return true
		}
		conn, err := net.DialTimeout("tcp", c.genAddr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// killGenerator kills the partner simulator (kill -9).
func (c *cluster) killGenerator() {
	c.mu.Lock()
	p := c.gen
	c.gen = nil
	c.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

func (c *cluster) ingestArgs() []string {
	return []string{"ingest", "--source", "ws://" + c.genAddr, "--data", c.data, "--http", c.httpAddr,
		"--record", c.record, "--clickhouse", c.ch.DSN,
		"--archive", archiveURL, "--s3-endpoint", c.s3.Endpoint,
		"--alerts-webhook", c.hook.URL(),
		"--min-free-disk", strconv.Itoa(minFreeDisk),
		"--checkpoint-every", checkpointEvery.String(),
		"--hot-window", c.cfg.hotWindow.String(),
		"--wal-retention", max(24*time.Hour, c.cfg.duration+2*time.Hour).String(),
		"--sink-timeout", "20s",
	}
}

func (c *cluster) ingestEnv() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s3test.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3test.SecretKey,
		"AWS_REGION=" + s3test.Region, "QUOTES_ALERTS_WEBHOOK_SECRET=" + webhookSecret,
	}
}

// startIngest starts ingest (not waiting for it).
func (c *cluster) startIngest() error {
	p, err := c.ps.Start(proc.Spec{Name: "ingest", LogDir: c.logs, Bin: c.cfg.bin, Args: c.ingestArgs(), Env: c.ingestEnv(), Append: true})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.ing, c.stopped = p, false
	c.mu.Unlock()
	return nil
}

func (c *cluster) ingest() *proc.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ing
}

// killIngest kills ingest (kill -9) and waits until it is gone.
func (c *cluster) killIngest() {
	if p := c.ingest(); p != nil {
		p.Kill()
	}
}

// signalIngest sends SIGSTOP or SIGCONT to ingest.
func (c *cluster) signalIngest(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ing != nil {
		c.ing.Signal(sig)
		c.stopped = sig == syscall.SIGSTOP
	}
}

// ready reports whether ingest's /readyz answers 200.
func (c *cluster) ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	code, _, err := proc.Get(ctx, c.base()+"/readyz")
	return err == nil && code == 200
}

// waitReady waits until /readyz answers 200; an ingest that exited is an error.
func (c *cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	var exited *proc.Process
	err := proc.WaitFor(ctx, timeout, 20*time.Millisecond, "ingest /readyz 200", func() bool {
		if p := c.ingest(); p != nil && p.Exited() {
			exited = p
			return true
		}
		return c.ready(ctx)
	})
	if exited != nil {
		return fmt.Errorf("ingest exited: %v\n%s", exited.Err(), proc.Tail(exited.LogPath(), 2000))
	}
	return err
}

// teardown stops whatever still runs (cleanup, also after Ctrl-C).
func (c *cluster) teardown() {
	c.ps.KillAll()
	if c.ch != nil {
		c.ch.Kill()
	}
	if c.s3 != nil {
		c.s3.Kill()
	}
	if c.hook != nil {
		c.hook.Kill()
	}
	c.unmountData()
}

// quotes runs a short quotes command (query, replay) and returns its stdout.
func (c *cluster) quotes(ctx context.Context, env []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.cfg.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("quotes %s: %v\n%s", strings.Join(args, " "), err, tailString(stderr.String(), 2000))
	}
	return out, nil
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
