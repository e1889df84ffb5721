// Package diskguard treats free disk space as a resource (SPEC §14): it watches the file
// system that holds a directory (the data directory) and reports when its free space falls
// below a threshold, so that input can be paused in a controlled way before a write fails —
// Badger writes its value log through mmap, and a full disk there is a SIGBUS, not an error.
//
// A Watcher polls statfs(2) every Options.Interval on Options.Clock. Its state is Low when
// the space available to unprivileged users (f_bavail × f_bsize) is below the threshold's
// minimum (Threshold.Need), and OK again once it is at least the minimum plus a hysteresis of
// a tenth of it (at least 1 MiB), so that a disk hovering at the limit does not flap.
// Transitions are logged at WARN (low) and INFO (ok again), reported to Options.OnChange,
// and visible in the metrics (quotes_disk_*). Wait blocks the caller (the ingest loop)
// while the state is Low; Err is the readiness check (nil when OK, else an error naming the
// free space and the minimum).
//
// CheckOpen is the check before opening a data directory: it fails with one clear line when
// the disk is already below the threshold.
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Usage is the space of one file system, in bytes.
type Usage struct {
	// Free is the space available to unprivileged users (statfs f_bavail × f_bsize).
	Free uint64
	// Total is the size of the file system (f_blocks × f_bsize).
	Total uint64
}

// StatFunc reports the Usage of the file system holding dir.
type StatFunc func(dir string) (Usage, error)

// Statfs is the StatFunc of the real file system: statfs(2) on dir, or on its nearest
// existing ancestor when dir does not exist yet (a data directory about to be created).
func Statfs(dir string) (Usage, error) {
	p, err := existingAncestor(dir)
	if err != nil {
		return Usage{}, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return Usage{}, fmt.Errorf("diskguard: statfs %s: %w", p, err)
	}
	bs := uint64(st.Bsize)
	return Usage{Free: st.Bavail * bs, Total: st.Blocks * bs}, nil
}

// existingAncestor returns dir or its nearest existing ancestor.
func existingAncestor(dir string) (string, error) {
	p, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("diskguard: path %s: %w", dir, err)
	}
	for {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("diskguard: stat %s: %w", p, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", fmt.Errorf("diskguard: stat %s: %w", dir, err)
		}
		p = parent
	}
}

// Threshold is the free space to keep: a number of bytes, a percentage of the file system,
// or both (then the larger applies).
type Threshold struct {
	Bytes   uint64
	Percent float64 // 0 to 100
}

// DefaultThreshold is 1 GiB.
var DefaultThreshold = Threshold{Bytes: 1 << 30}

// Need returns the free bytes the threshold asks for on a file system of total bytes.
func (t Threshold) Need(total uint64) uint64 {
	p := uint64(math.Ceil(t.Percent / 100 * float64(total)))
	return max(t.Bytes, p)
}

// IsZero reports whether t asks for nothing (the watch is disabled).
func (t Threshold) IsZero() bool { return t.Bytes == 0 && t.Percent == 0 }

// String prints t as ParseThreshold reads it: "1GiB", "5%", "1GiB+5%" (both), "0".
func (t Threshold) String() string {
	var parts []string
	if t.Bytes > 0 {
		parts = append(parts, formatBytes(t.Bytes))
	}
	if t.Percent > 0 {
		parts = append(parts, strconv.FormatFloat(t.Percent, 'g', -1, 64)+"%")
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "+")
}

var units = []struct {
	suffix string
	mult   uint64
}{
	{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10},
	{"B", 1},
}

// ParseThreshold reads a threshold flag: bytes with an optional unit ("1073741824",
// "1GiB", "500MB", "512M" — K, M, G, T alone are powers of 1024, KB, MB, … powers of 1000),
// a percentage of the file system ("5%"), both joined by "+" ("1GiB+5%": the larger), or
// "0" (no minimum).
func ParseThreshold(s string) (Threshold, error) {
	var t Threshold
	in := strings.TrimSpace(s)
	if in == "" {
		return t, fmt.Errorf("threshold %q: empty; want e.g. 1GiB or 5%%", s)
	}
	for _, part := range strings.Split(in, "+") {
		part = strings.TrimSpace(part)
		if pct, ok := strings.CutSuffix(part, "%"); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
			if err != nil || !(v >= 0 && v <= 100) {
				return Threshold{}, fmt.Errorf("threshold %q: percentage %q: want 0 to 100", s, part)
			}
			t.Percent = v
			continue
		}
		up := strings.ToUpper(part)
		mult := uint64(1)
		for _, u := range units {
			if num, ok := strings.CutSuffix(up, u.suffix); ok {
				up, mult = strings.TrimSpace(num), u.mult
				break
			}
		}
		v, err := strconv.ParseFloat(up, 64)
		if err != nil || v < 0 || math.IsInf(v, 0) || v*float64(mult) >= 1<<63 {
			return Threshold{}, fmt.Errorf("threshold %q: %q: want bytes like 1GiB, 500MB or 1073741824", s, part)
		}
		t.Bytes = uint64(v * float64(mult))
	}
	return t, nil
}

// formatBytes prints b exactly, with the largest binary unit that divides it.
func formatBytes(b uint64) string {
	for _, u := range []struct {
		s string
		m uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b >= u.m && b%u.m == 0 {
			return strconv.FormatUint(b/u.m, 10) + u.s
		}
	}
	return strconv.FormatUint(b, 10) + "B"
}

// human prints b approximately, for messages: "812.3 MiB".
func human(b uint64) string {
	f := float64(b)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if f < 1024 || u == "TiB" {
			if u == "B" {
				return strconv.FormatUint(b, 10) + " B"
			}
			return strconv.FormatFloat(f, 'f', 1, 64) + " " + u
		}
		f /= 1024
	}
	return ""
}

// CheckOpen fails when the file system of dir has less free space than min asks for: run it
// before opening a data directory, so that a full disk is one clear error line instead of a
// crash inside the storage engine. A zero min always passes.
func CheckOpen(dir string, min Threshold) error {
	return checkOpen(dir, min, Statfs)
}

// CheckOpenStat is CheckOpen measuring with stat (nil: Statfs).
func CheckOpenStat(dir string, min Threshold, stat StatFunc) error {
	if stat == nil {
		stat = Statfs
	}
	return checkOpen(dir, min, stat)
}

func checkOpen(dir string, min Threshold, stat StatFunc) error {
	if min.IsZero() {
		return nil
	}
	u, err := stat(dir)
	if err != nil {
		return fmt.Errorf("check free disk space of %s: %w", dir, err)
	}
	if need := min.Need(u.Total); u.Free < need {
		return fmt.Errorf("data directory %s: only %s free on its file system, below the minimum of %s (%s): free some space or lower --min-free-disk",
			dir, human(u.Free), human(need), min)
	}
	return nil
}

// State is what a Watcher last saw.
type State struct {
	// Low is set while free space is below the threshold (input should be paused).
	Low bool
	// Reason says why, when Low: "only 812.3 MiB free on /data, below the minimum of 1.0 GiB".
	Reason string
	// Free and Total are the last measurement; Need the free bytes the threshold asks for.
	Free, Total, Need uint64
	// At is when it was measured (Options.Clock).
	At time.Time
}

// Defaults of Options.
const (
	DefaultInterval = time.Second
	// minHysteresis is the smallest margin above Need at which a Low state ends.
	minHysteresis = 1 << 20
)

// Options configure a Watcher.
type Options struct {
	// Dir is the directory whose file system is watched (the data directory). Required.
	Dir string
	// Threshold is the free space to keep (default DefaultThreshold, 1 GiB).
	Threshold Threshold
	// Interval is the poll interval (default 1s).
	Interval time.Duration
	// Clock drives the polls (default the wall clock).
	Clock clock.Clock
	// Stat measures the file system (default Statfs); tests inject a fake.
	Stat StatFunc
	// Logger receives the transitions (WARN when low, INFO when ok again) and stat errors
	// (default: discard).
	Logger *slog.Logger
	// Registerer, if set, receives the metrics (quotes_disk_*); New fails if they are
	// already registered there.
	Registerer prometheus.Registerer
	// OnChange, if set, is called with the new state after each transition (from the
	// goroutine that measured: Run's, or Check's caller). It must not call back into the
	// Watcher's Check.
	OnChange func(State)
}

// Watcher watches the free space of one file system. Create it with New; run its poll loop
// with Run; State, Err, Wait and Changed are safe for concurrent use.
type Watcher struct {
	opts Options
	log  *slog.Logger

	checkMu sync.Mutex // serialises measurements and their transitions

	mu      sync.Mutex
	state   State
	changed chan struct{} // closed and replaced at each transition

	metrics *metrics
}

// New returns a Watcher over opts.Dir after a first measurement (whose error it returns).
func New(opts Options) (*Watcher, error) {
	if opts.Dir == "" {
		return nil, errors.New("diskguard: no directory to watch")
	}
	if opts.Threshold.IsZero() {
		opts.Threshold = DefaultThreshold
	}
	if opts.Threshold.Percent < 0 || opts.Threshold.Percent > 100 {
		return nil, fmt.Errorf("diskguard: threshold %v%%: want 0 to 100", opts.Threshold.Percent)
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Interval < 0 {
		return nil, fmt.Errorf("diskguard: interval %v: must be positive", opts.Interval)
	}
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	if opts.Stat == nil {
		opts.Stat = Statfs
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{opts: opts, log: opts.Logger, changed: make(chan struct{})}
	m, err := newMetrics(opts.Registerer, w)
	if err != nil {
		return nil, err
	}
	w.metrics = m
	if _, err := w.Check(); err != nil {
		return nil, err
	}
	return w, nil
}

// Run polls every Interval until ctx is done; it returns nil then. A failed measurement is
// logged and counted and leaves the state as it was.
func (w *Watcher) Run(ctx context.Context) error {
	t := w.opts.Clock.Ticker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := w.Check(); err != nil {
				w.log.Warn("diskguard: cannot measure free disk space", "dir", w.opts.Dir, "err", err)
			}
		}
	}
}

// Check measures now, updates the state (logging and reporting a transition) and returns it.
func (w *Watcher) Check() (State, error) {
	w.checkMu.Lock()
	defer w.checkMu.Unlock()
	u, err := w.opts.Stat(w.opts.Dir)
	if err != nil {
		w.metrics.statErrors.Inc()
		return w.State(), fmt.Errorf("diskguard: measure %s: %w", w.opts.Dir, err)
	}
	need := w.opts.Threshold.Need(u.Total)
	w.mu.Lock()
	prev := w.state
	st := State{Free: u.Free, Total: u.Total, Need: need, At: w.opts.Clock.Now(), Low: prev.Low}
	switch {
	case !prev.Low && u.Free < need:
		st.Low = true
	case prev.Low && u.Free >= need+max(need/10, minHysteresis):
		st.Low = false
	}
	if st.Low {
		st.Reason = fmt.Sprintf("only %s free on the file system of %s, below the minimum of %s (%s)",
			human(u.Free), w.opts.Dir, human(need), w.opts.Threshold)
	}
	w.state = st
	flipped := st.Low != prev.Low
	if flipped {
		close(w.changed)
		w.changed = make(chan struct{})
	}
	w.mu.Unlock()
	if flipped {
		if st.Low {
			w.metrics.lowTotal.Inc()
			w.log.Warn("diskguard: disk space low: input paused until space is freed", "reason", st.Reason,
				"free_bytes", u.Free, "min_bytes", need)
		} else {
			w.log.Info("diskguard: disk space back: input resumes", "dir", w.opts.Dir, "free", human(u.Free), "min", human(need))
		}
		if w.opts.OnChange != nil {
			w.opts.OnChange(st)
		}
	}
	return st, nil
}

// State returns the last measurement.
func (w *Watcher) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// Err is nil while space is sufficient, else an error with the reason (for /readyz).
func (w *Watcher) Err() error {
	if st := w.State(); st.Low {
		return errors.New("disk space low: " + st.Reason)
	}
	return nil
}

// Changed returns a channel closed at the next transition (low or ok again).
func (w *Watcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// Wait returns nil at once while space is sufficient; while it is low it blocks until space
// is back (nil) or ctx is done (ctx's error, wrapped).
func (w *Watcher) Wait(ctx context.Context) error {
	for {
		w.mu.Lock()
		low, ch := w.state.Low, w.changed
		w.mu.Unlock()
		if !low {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("diskguard: waiting for free disk space on %s: %w", w.opts.Dir, ctx.Err())
		}
	}
}
