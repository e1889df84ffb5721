package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/quotesdev/quotes/internal/proc"
)

// start runs the quotes binary with args; its stdout is kept in memory (Process.Stdout),
// its stderr goes to logDir/name.log (truncated).
func (b *bench) start(name, logDir string, args ...string) (*proc.Process, error) {
	return b.ps.Start(proc.Spec{Name: name, LogDir: logDir, Bin: b.bin, Args: args, CaptureStdout: true})
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

// fileSize returns the size of the file at path, 0 if there is none.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// waitReady polls url until it answers 200, p exits, or timeout passes; it returns the
// time it took.
func waitReady(ctx context.Context, url string, p *proc.Process, timeout time.Duration) (time.Duration, error) {
	begin := time.Now()
	deadline := begin.Add(timeout)
	for time.Now().Before(deadline) {
		if code, _, err := proc.Get(ctx, url); err == nil && code == http.StatusOK {
			return time.Since(begin), nil
		}
		if p != nil && p.Exited() {
			return 0, fmt.Errorf("%s exited before %s answered 200 (log: %s)\n%s", p.Name(), url, p.LogPath(), proc.Tail(p.LogPath(), 1500))
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
	code, body, err := proc.Get(ctx, base+"/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: status %d", base, code)
	}
	return parseMetrics(string(body)), nil
}

// warmCache reads the file at path once, so that a timed run that reads it next finds it in
// the page cache: every run of a comparison then reads from memory, not from a disk that
// is faster or slower from one run to the next (this machine's page cache does not keep a
// recording of a few GiB between runs for long).
func warmCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("warm the page cache: %w", err)
	}
	defer f.Close()
	if _, err := io.CopyBuffer(io.Discard, f, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("warm the page cache: read %s: %w", path, err)
	}
	return nil
}
