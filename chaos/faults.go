package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/diskguard"
	"github.com/quotesdev/quotes/internal/proc"
)

// kind is a kind of fault.
type kind int

const (
	kindKill    kind = iota // kill -9 of ingest, then a restart
	kindStop                // SIGSTOP of ingest, SIGCONT after a while
	kindDisk                // the data directory's disk below --min-free-disk for a while
	kindTerm                // SIGTERM of ingest (sometimes kill -9 during the shutdown), then a restart
	kindCH                  // kill -9 of ClickHouse, restart after a while
	kindS3                  // kill -9 of the S3 gateway, restart after a while
	kindHook                // the webhook receiver closed abruptly, back after a while
	kindPartner             // kill -9 of the partner simulator, restart (same seed) after a while
	numKinds
)

var kindNames = [numKinds]string{
	kindKill:    "kill -9 ingest",
	kindStop:    "SIGSTOP/SIGCONT ingest",
	kindDisk:    "disk below --min-free-disk",
	kindTerm:    "SIGTERM ingest (restart)",
	kindCH:      "kill -9 ClickHouse",
	kindS3:      "kill -9 S3 gateway",
	kindHook:    "webhook receiver down",
	kindPartner: "partner cut (kill -9 generate)",
}

// required are the kinds the acceptance counts (every kind but the graceful restart).
func (k kind) required() bool { return k != kindTerm }

// injected is one fault as it happened.
type injected struct {
	kind kind
	sub  string // detail: where a kill was aimed, what a SIGTERM ended with
	at   time.Time
	down time.Duration // from the fault to its heal (restart, SIGCONT, space back)
	// ready is the time from the heal until /readyz answered 200; caughtUp, for sink
	// faults, until the sink's backlog was 0 again. -1: not reached (run ended first).
	ready, caughtUp time.Duration
}

// chaos is the fault phase of one run.
type chaos struct {
	cfg config
	c   *cluster
	obs *observer

	mu     sync.Mutex
	faults []*injected
	errs   []error
	wg     sync.WaitGroup // recovery measurements
}

func (ch *chaos) record(f *injected) {
	ch.mu.Lock()
	ch.faults = append(ch.faults, f)
	ch.mu.Unlock()
	ch.c.logf("fault %-30s %-24s down %v", kindNames[f.kind], f.sub, f.down.Round(time.Millisecond))
}

func (ch *chaos) fail(err error) {
	ch.mu.Lock()
	ch.errs = append(ch.errs, err)
	ch.mu.Unlock()
	ch.c.logf("ERROR: %v", err)
}

// measure records, in the background, how long after healed ingest is ready (and, for a
// sink, its backlog is 0 again).
func (ch *chaos) measure(ctx context.Context, f *injected, healed time.Time, backlog string) {
	f.ready, f.caughtUp = -1, -1
	ch.wg.Add(1)
	go func() {
		defer ch.wg.Done()
		if proc.WaitFor(ctx, 5*time.Minute, 20*time.Millisecond, "ready", func() bool { return ch.c.ready(ctx) }) == nil {
			ch.mu.Lock()
			f.ready = time.Since(healed)
			ch.mu.Unlock()
		}
		if backlog == "" {
			return
		}
		if proc.WaitFor(ctx, 5*time.Minute, 100*time.Millisecond, "caught up", func() bool {
			m, err := ch.obs.scrape(ctx)
			v, ok := m[backlog]
			return err == nil && ok && v == 0
		}) == nil {
			ch.mu.Lock()
			f.caughtUp = time.Since(healed)
			ch.mu.Unlock()
		}
	}()
}

// rng returns the seeded random source of one fault stream.
func (ch *chaos) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(ch.cfg.seed, stream))
}

// between returns a uniformly random duration in [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// run injects faults until ctx ends, then heals everything it broke. Ingest's faults come
// from one loop (they cannot overlap); ClickHouse, S3, the receiver and the partner each
// have a loop of their own, so their faults overlap with everything else.
func (ch *chaos) run(ctx, measureCtx context.Context) {
	var wg sync.WaitGroup
	loops := []func(context.Context, context.Context){ch.ingestLoop, ch.chLoop, ch.s3Loop, ch.hookLoop, ch.partnerLoop}
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx, measureCtx)
		}()
	}
	wg.Wait()
}

// serviceLoop is the loop of one service: wait a random gap (mean -every), break it, wait a
// random outage, heal it.
func (ch *chaos) serviceLoop(ctx, mctx context.Context, stream uint64, k kind, backlog string, brk func(), heal func() error) {
	r := ch.rng(stream)
	every := ch.cfg.every
	for {
		if proc.Sleep(ctx, between(r, every/2, every*3/2)) != nil {
			return
		}
		down := between(r, 500*time.Millisecond, 4*time.Second)
		f := &injected{kind: k, at: time.Now()}
		brk()
		proc.Sleep(ctx, down) // ended early by ctx: healed at once
		if err := heal(); err != nil {
			ch.fail(fmt.Errorf("%s: heal: %w", kindNames[k], err))
			return
		}
		healed := time.Now()
		f.down = healed.Sub(f.at)
		ch.record(f)
		ch.measure(mctx, f, healed, backlog)
	}
}

func (ch *chaos) chLoop(ctx, mctx context.Context) {
	ch.serviceLoop(ctx, mctx, 2, kindCH, "quotes_sink_backlog_items", ch.c.ch.Kill, ch.c.ch.Relaunch)
}

func (ch *chaos) s3Loop(ctx, mctx context.Context) {
	ch.serviceLoop(ctx, mctx, 3, kindS3, "", ch.c.s3.Kill, ch.c.s3.Relaunch)
}

func (ch *chaos) hookLoop(ctx, mctx context.Context) {
	ch.serviceLoop(ctx, mctx, 4, kindHook, "quotes_alert_backlog_events", ch.c.hook.Kill, ch.c.hook.Restart)
}

func (ch *chaos) partnerLoop(ctx, mctx context.Context) {
	ch.serviceLoop(ctx, mctx, 5, kindPartner, "", ch.c.killGenerator, func() error {
		return ch.c.startGenerator(mctx)
	})
}

// The ingest loop's bag: shuffled and drawn from until empty, so the kinds stay balanced.
// Kills aimed at a minute close or a checkpoint are scheduled by the loop itself.
var ingestBag = []string{"kill", "stop", "stop", "disk", "disk", "term"}

// ingestLoop injects ingest's faults: kill -9 at random moments, just after a minute
// closes (minute end + grace, when the tick is written and the closed minute is flushed
// to the store and outbox) and at checkpoints; SIGSTOP; a full disk; SIGTERM.
func (ch *chaos) ingestLoop(ctx, mctx context.Context) {
	r := ch.rng(1)
	var bag []string
	horizon := 6 * time.Second // a fault and its recovery take about this long
	for ctx.Err() == nil {
		gap := between(r, ch.cfg.ingestGap/2, ch.cfg.ingestGap*3/2)
		now := time.Now()
		// A kill at the next minute close, if that minute is chosen (seeded by the minute).
		closeAt := nextMinuteClose(now)
		if closeAt.Sub(now) < gap+horizon && ch.rng(uint64(closeAt.Unix())).Float64() < ch.cfg.minuteKill {
			closeAt = closeAt.Add(between(ch.rng(uint64(closeAt.Unix())+1), 0, 80*time.Millisecond))
			if proc.Sleep(ctx, time.Until(closeAt)) != nil {
				return
			}
			ch.kill(ctx, mctx, "at minute close")
			continue
		}
		// A kill at the next checkpoint, predicted from the last one seen in /metrics.
		if ckpt, ok := ch.obs.nextCheckpoint(); ok && ckpt.After(now) && ckpt.Sub(now) < gap+horizon && r.Float64() < ch.cfg.checkpointKill {
			at := ckpt.Add(between(r, -40*time.Millisecond, 40*time.Millisecond))
			if proc.Sleep(ctx, time.Until(at)) != nil {
				return
			}
			ch.kill(ctx, mctx, "at checkpoint")
			continue
		}
		if proc.Sleep(ctx, gap) != nil {
			return
		}
		if len(bag) == 0 {
			bag = append(bag, ingestBag...)
			r.Shuffle(len(bag), func(i, j int) { bag[i], bag[j] = bag[j], bag[i] })
		}
		next := bag[0]
		bag = bag[1:]
		switch next {
		case "kill":
			ch.kill(ctx, mctx, "random")
		case "stop":
			ch.stop(ctx, mctx, between(r, 300*time.Millisecond, 3*time.Second))
		case "disk":
			if ch.c.mount == "" {
				ch.stop(ctx, mctx, between(r, 300*time.Millisecond, 3*time.Second))
				continue
			}
			ch.disk(ctx, mctx, between(r, 500*time.Millisecond, 3*time.Second))
		case "term":
			ch.term(ctx, mctx, r)
		}
	}
}

// nextMinuteClose returns when the next minute closes: the minute's end plus grace
// (ingest writes its tick 1 ms after that).
func nextMinuteClose(now time.Time) time.Time {
	m := aggregate.MinuteOf(now.UnixNano())
	at := time.Unix(0, m).Add(grace + time.Millisecond)
	for !at.After(now) {
		at = at.Add(time.Minute)
	}
	return at
}

// kill kills ingest, restarts it at once and waits until it is ready.
func (ch *chaos) kill(ctx, mctx context.Context, where string) {
	f := &injected{kind: kindKill, sub: where, at: time.Now()}
	ch.c.killIngest()
	ch.restartIngest(mctx, f)
}

// restartIngest starts ingest again after f and measures its recovery; an ingest that does
// not come back is a failure of the run.
func (ch *chaos) restartIngest(ctx context.Context, f *injected) {
	if err := ch.c.startIngest(); err != nil {
		ch.fail(err)
		return
	}
	healed := time.Now()
	f.down = healed.Sub(f.at)
	ch.record(f)
	f.ready, f.caughtUp = -1, -1
	if err := ch.c.waitReady(ctx, 3*time.Minute); err != nil {
		ch.fail(fmt.Errorf("ingest after %s (%s): %w", kindNames[f.kind], f.sub, err))
		return
	}
	ch.mu.Lock()
	f.ready = time.Since(healed)
	ch.mu.Unlock()
}

// stop stops ingest for d.
func (ch *chaos) stop(ctx, mctx context.Context, d time.Duration) {
	f := &injected{kind: kindStop, sub: "", at: time.Now()}
	ch.c.signalIngest(syscall.SIGSTOP)
	proc.Sleep(ctx, d)
	ch.c.signalIngest(syscall.SIGCONT)
	healed := time.Now()
	f.down = healed.Sub(f.at)
	ch.record(f)
	ch.waitIngest(mctx, f, healed)
}

// waitIngest waits until ingest is ready after f and records how long that took.
func (ch *chaos) waitIngest(ctx context.Context, f *injected, healed time.Time) {
	f.ready, f.caughtUp = -1, -1
	if err := ch.c.waitReady(ctx, 3*time.Minute); err != nil {
		ch.fail(fmt.Errorf("ingest after %s: %w", kindNames[f.kind], err))
		return
	}
	ch.mu.Lock()
	f.ready = time.Since(healed)
	ch.mu.Unlock()
}

// diskPauseWithin is how long a disk episode waits for ingest to report the low disk: its
// watcher measures every second, and a restart (another fault) may be recovering.
const diskPauseWithin = 10 * time.Second

// disk shrinks the data directory's tmpfs to leave half of --min-free-disk free, until
// ingest reports it (not ready) or diskPauseWithin passes, holds it for d, and gives the
// space back.
func (ch *chaos) disk(ctx, mctx context.Context, d time.Duration) {
	f := &injected{kind: kindDisk, at: time.Now()}
	if err := ch.c.setDiskFree(minFreeDisk / 2); err != nil {
		ch.fail(fmt.Errorf("disk episode: %w", err))
		return
	}
	var free int64
	var scrapeErr error
	low := -1.0
	paused := proc.WaitFor(mctx, diskPauseWithin, 20*time.Millisecond, "paused", func() bool {
		// Keep the episode's free space below --min-free-disk should ingest give some back
		// (Badger deleting files it no longer needs after a restart), measured as ingest's
		// watcher measures it.
		if u, err := diskguard.Statfs(ch.c.mount); err == nil {
			if free = int64(u.Free); free > minFreeDisk*3/4 {
				if err := ch.c.setDiskFree(minFreeDisk / 2); err != nil {
					return false
				}
			}
		}
		m, err := ch.obs.scrape(ctx)
		scrapeErr, low = err, m["quotes_disk_low"]
		return err == nil && low == 1
	}) == nil
	f.sub = "input paused"
	if !paused {
		f.sub = "NOT PAUSED"
		// The end of ingest's log says what it was doing (recovering after a restart, say).
		var log string
		if p := ch.c.ingest(); p != nil {
			log = proc.Tail(p.LogPath(), 4000)
		}
		ch.fail(fmt.Errorf("disk episode: ingest did not report quotes_disk_low 1 within %v (last: %d bytes free of the %d required, quotes_disk_low %v, scrape error %v); ingest's log ends:\n%s%s",
			diskPauseWithin, free, minFreeDisk, low, scrapeErr, log, ch.diagnoseIngest(ctx)))
	}
	proc.Sleep(ctx, d)
	if err := ch.c.setDiskFree(0); err != nil {
		ch.fail(fmt.Errorf("disk episode: give space back: %w", err))
		return
	}
	healed := time.Now()
	f.down = healed.Sub(f.at)
	ch.record(f)
	ch.waitIngest(mctx, f, healed)
}

// diagnoseIngest says why ingest did not answer in time: whether /healthz answers (a stuck
// collector holds only /metrics), then the stacks of its waiting goroutines, from a SIGQUIT
// (the Go runtime writes every goroutine's stack to the log and exits). Ingest is started
// again, as after a kill; the run has failed already, the dump is for its report.
func (ch *chaos) diagnoseIngest(ctx context.Context) string {
	p := ch.c.ingest()
	if p == nil {
		return ""
	}
	var b strings.Builder
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	start := time.Now()
	code, _, err := proc.Get(hctx, ch.c.base()+"/healthz")
	cancel()
	fmt.Fprintf(&b, "\n/healthz: status %d, error %v, after %v\n", code, err, time.Since(start).Round(time.Millisecond))
	size := int64(0)
	if fi, err := os.Stat(p.LogPath()); err == nil {
		size = fi.Size()
	}
	p.Signal(syscall.SIGQUIT)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		p.Kill()
	}
	if log, err := os.ReadFile(p.LogPath()); err == nil && int64(len(log)) > size {
		b.WriteString(waitingStacks(string(log[size:]), 12000))
	}
	if err := ch.c.startIngest(); err != nil {
		fmt.Fprintf(&b, "restart ingest after the dump: %v\n", err)
	}
	return b.String()
}

// waitingStacks returns the goroutines of a Go stack dump that wait for a lock or are in
// an HTTP handler or a Prometheus collector, up to max bytes.
func waitingStacks(dump string, max int) string {
	var b strings.Builder
	for _, g := range strings.Split(dump, "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(g, "ServeHTTP") && !strings.Contains(g, "Collect(") &&
			!strings.Contains(header, "semacquire") && !strings.Contains(header, "sync.") {
			continue
		}
		if b.Len()+len(g) > max {
			b.WriteString("… (more in ingest's log)\n")
			break
		}
		b.WriteString(g)
		b.WriteString("\n\n")
	}
	return b.String()
}

// term stops ingest with SIGTERM; half of the time it is killed during the shutdown
// (which writes the archive's partial hour and drains the sinks); then it is restarted.
func (ch *chaos) term(ctx, mctx context.Context, r *rand.Rand) {
	f := &injected{kind: kindTerm, at: time.Now()}
	p := ch.c.ingest()
	killAfter := time.Duration(-1)
	if r.IntN(2) == 0 {
		killAfter = between(r, 20*time.Millisecond, 1500*time.Millisecond)
	}
	p.Signal(syscall.SIGTERM)
	switch {
	case killAfter >= 0 && proc.Sleep(mctx, killAfter) == nil && !p.Exited():
		p.Kill()
		f.sub = "kill -9 in shutdown"
	default:
		select {
		case <-p.Done():
		case <-time.After(60 * time.Second):
			ch.fail(fmt.Errorf("ingest did not stop within 60s of SIGTERM"))
			p.Kill()
		}
		f.sub = "clean exit"
		if p.Err() != nil {
			f.sub = "exit: " + p.Err().Error()
			if !strings.Contains(proc.Tail(p.LogPath(), 3000), "not caught up") {
				ch.fail(fmt.Errorf("ingest exited with %v after SIGTERM\n%s", p.Err(), proc.Tail(p.LogPath(), 1500)))
			}
		}
	}
	ch.restartIngest(mctx, f)
}

// observer watches ingest's /metrics: the last checkpoint (to aim kills at the next one).
type observer struct {
	c *cluster

	mu       sync.Mutex
	pid      int
	ckpts    float64
	lastCkpt time.Time
}

// watch polls /metrics until ctx ends.
func (o *observer) watch(ctx context.Context) {
	for proc.Sleep(ctx, 50*time.Millisecond) == nil {
		p := o.c.ingest()
		if p == nil {
			continue
		}
		m, err := o.scrape(ctx)
		if err != nil {
			continue
		}
		n, ok := m["quotes_checkpoint_duration_seconds_count"]
		if !ok {
			continue
		}
		o.mu.Lock()
		if p.Pid() != o.pid {
			o.pid, o.ckpts = p.Pid(), n
		} else if n > o.ckpts {
			o.ckpts, o.lastCkpt = n, time.Now().Add(-25*time.Millisecond)
		}
		o.mu.Unlock()
	}
}

// nextCheckpoint predicts ingest's next checkpoint: the last one seen plus the interval
// (event time is arrival time, so it advances with the clock).
func (o *observer) nextCheckpoint() (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lastCkpt.IsZero() {
		return time.Time{}, false
	}
	next := o.lastCkpt.Add(checkpointEvery)
	for next.Before(time.Now()) {
		next = next.Add(checkpointEvery)
	}
	return next, true
}

// scrape fetches ingest's /metrics, summed by metric name over labels.
func (o *observer) scrape(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	code, body, err := proc.Get(ctx, o.c.base()+"/metrics")
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("/metrics: status %d", code)
	}
	return parseMetrics(body), nil
}

// parseMetrics sums the samples of the Prometheus text format by metric name.
func parseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			if j := strings.LastIndexByte(rest, '}'); j >= 0 {
				rest = rest[j+1:]
			}
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out
}
