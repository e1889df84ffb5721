// Command chaos is `make chaos` (SPEC §7, §14; issue 19): a soak of the real quotes binary
// under random faults, followed by an independent check that nothing was lost or doubled.
//
// It starts `quotes generate` (the partner, a live websocket feed) and `quotes ingest` with
// every sink — --record, --clickhouse (a private ClickHouse, internal/chtest), --archive on
// S3 (a private versitygw, internal/s3test), --alerts-webhook to a receiver of its own —
// with the data directory on a tmpfs it mounts (root), and injects faults on a schedule
// drawn from -seed:
//
//   - kill -9 of ingest: at random moments, just after a minute closes (minute end +
//     grace, when the closed minute goes to the store and the outbox) and at checkpoints
//     (predicted from quotes_checkpoint_duration_seconds_count; --checkpoint-every 15s);
//   - SIGSTOP/SIGCONT of ingest; SIGTERM of ingest (half of the time killed during the
//     shutdown, which writes the archive's partial hour), then a restart;
//   - the data directory's disk below --min-free-disk (the tmpfs remounted smaller, then
//     back): input pauses and resumes by itself — skipped, with a note, when no tmpfs can
//     be mounted;
//   - kill -9 and restart of ClickHouse, of the S3 gateway; the webhook receiver closed
//     abruptly and back;
//   - the partner connection cut: generate killed and restarted with the same seed and
//     --skip = the time since its first start, so that it continues its feed (same
//     instruments, churn and prices; what fell into the outage is not sent). Without
//     --skip a restarted generator starts the same feed over (the same initial
//     instruments and prices; --start only shifts recorded timestamps), which would replay
//     the feed's first seconds again and again. The check relies on none of this: its
//     truth is what ingest received (the WAL).
//
// Ingest's faults come one at a time; those of the other services on loops of their own,
// so they overlap with everything. Then everything is healed, the sinks' backlogs drained
// (/metrics), ingest stopped with SIGTERM, and the check runs: the run's WAL (every
// message ingest accepted, and its ticks) replayed into a fresh data directory is the
// truth, and the embedded store's candles, instruments and hot events, ClickHouse's
// candles (through `quotes serve --clickhouse`, the JSON of `query --clickhouse`), the S3
// archive (raw messages = the WAL's, candle states = the replay's archive), the --record
// file (a subsequence of the WAL) and the webhook deliveries (one per hot event id;
// redeliveries with the same Idempotency-Key and body are allowed and counted) must equal
// it. It prints a table of the faults (count, outage, recovery until /readyz 200) and of
// the checks (lost, doubled, differing), and exits 0 only when every check holds.
//
// Everything runs on 127.0.0.1, in temporary directories and process groups of its own,
// removed and killed at the end, on failure and on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/quotesdev/quotes/internal/proc"
)

type config struct {
	bin            string
	duration       time.Duration
	seed           uint64
	instruments    int
	quoteInterval  time.Duration
	churn          float64
	every          time.Duration // mean time between two faults of one service
	ingestGap      time.Duration // mean pause between two of ingest's faults
	minuteKill     float64       // share of minute closes ingest is killed at
	checkpointKill float64       // chance of aiming at an upcoming checkpoint
	hotWindow      time.Duration // ingest's --hot-window
	noDisk         bool
	keep           bool
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/quotes", "the quotes binary")
	flag.DurationVar(&c.duration, "duration", 5*time.Minute, "how long faults are injected (then heal, drain and check)")
	flag.Uint64Var(&c.seed, "seed", 0, "seed of the fault schedule and of the partner's feed (0: random, printed)")
	flag.IntVar(&c.instruments, "instruments", 500, "instruments of the partner simulator")
	flag.DurationVar(&c.quoteInterval, "quote-interval", time.Second, "mean time between two quotes of one instrument")
	flag.Float64Var(&c.churn, "churn", 0.2, "instrument deletes+adds per second")
	flag.DurationVar(&c.every, "every", 20*time.Second, "mean time between two faults of ClickHouse, S3, the receiver and the partner (each)")
	flag.DurationVar(&c.ingestGap, "ingest-gap", 2*time.Second, "mean pause between two faults of ingest (after it is ready again)")
	flag.Float64Var(&c.minuteKill, "minute-kill", 1, "share of the minute closes at which ingest is killed")
	flag.Float64Var(&c.checkpointKill, "checkpoint-kill", 0.35, "chance of killing ingest at an upcoming checkpoint")
	flag.DurationVar(&c.hotWindow, "hot-window", time.Minute, "ingest's --hot-window (short: hot events, and webhook deliveries, from the first minutes on)")
	flag.BoolVar(&c.noDisk, "no-disk", false, "no tmpfs, no disk-full episodes (SIGSTOPs instead)")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (data, logs) for inspection")
	flag.Parse()
	if c.seed == 0 {
		c.seed = rand.Uint64() % 1_000_000
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, c))
}

func run(ctx context.Context, cfg config) int {
	bin, err := filepath.Abs(cfg.bin)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: -bin %s: %v (make build first)\n", cfg.bin, err)
		return 2
	}
	cfg.bin = bin
	tmp, err := os.MkdirTemp("", "quotes-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	began := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%7.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	c := &cluster{cfg: cfg, tmp: tmp, ps: &proc.Group{}, logf: logf}
	defer func() {
		c.teardown()
		if cfg.keep {
			logf("kept %s", tmp)
		} else {
			os.RemoveAll(tmp)
		}
	}()
	logf("seed %d: CHAOS_SEED=%d reproduces the schedule (timings differ run to run)", cfg.seed, cfg.seed)
	rep := &report{cfg: cfg}
	err = soak(ctx, c, rep)
	if err != nil && c.logs != "" {
		rep.logs = c.logs
		if cfg.keep {
			rep.logs += " (kept)"
		}
	}
	rep.err = err
	fmt.Print(rep.String())
	if err != nil || !rep.ok() {
		return 1
	}
	return 0
}

// soak is the whole run: set up, faults, heal, drain, check.
func soak(ctx context.Context, c *cluster, rep *report) error {
	if err := c.setUp(ctx); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	if c.mount == "" {
		rep.notes = append(rep.notes, "disk-full episodes skipped: no tmpfs could be mounted for the data directory (needs root); SIGSTOPs instead")
	}
	c.logf("ingest ready on %s; faults for %v", c.httpAddr, c.cfg.duration)
	obs := &observer{c: c}
	obsCtx, stopObs := context.WithCancel(ctx)
	defer stopObs()
	go obs.watch(obsCtx)

	ch := &chaos{cfg: c.cfg, c: c, obs: obs}
	faultCtx, stopFaults := context.WithTimeout(ctx, c.cfg.duration)
	ch.run(faultCtx, ctx)
	stopFaults()
	rep.faults = ch.faults
	if err := ctx.Err(); err != nil {
		return err
	}

	c.logf("faults over: healing and draining")
	healErr := heal(ctx, c, obs)
	ch.wg.Wait()
	rep.faults = ch.faults
	rep.errs = ch.errs
	if healErr != nil {
		rep.errs = append(rep.errs, healErr)
		if ingest := c.ingest(); ingest != nil && !ingest.Exited() || ctx.Err() != nil {
			return healErr // nothing to check while ingest holds the data directory
		}
	}
	k := &checker{c: c}
	err := k.run(ctx)
	rep.tallies = k.tallies
	return err
}

// heal waits until ingest is ready and its sinks have no backlog, stops ingest cleanly
// (which writes the archive's partial hour) and the partner.
func heal(ctx context.Context, c *cluster, obs *observer) error {
	if err := c.waitReady(ctx, 3*time.Minute); err != nil {
		return fmt.Errorf("heal: %w", err)
	}
	drained := func() bool {
		m, err := obs.scrape(ctx)
		if err != nil {
			return false
		}
		ch, ok1 := m["quotes_sink_backlog_items"]
		al, ok2 := m["quotes_alert_backlog_events"]
		return ok1 && ok2 && ch == 0 && al == 0
	}
	var drainErr error
	if err := proc.WaitFor(ctx, 3*time.Minute, 200*time.Millisecond, "sink backlogs 0", drained); err != nil {
		drainErr = fmt.Errorf("heal: %w", err)
	}
	// Let the minute of the last faults close, so that the check covers them.
	closeAt := nextMinuteClose(time.Now()).Add(time.Second)
	c.logf("waiting for the minute close at %s", closeAt.UTC().Format(time.TimeOnly))
	if err := proc.Sleep(ctx, time.Until(closeAt)); err != nil {
		return err
	}
	if drainErr == nil {
		if err := proc.WaitFor(ctx, 3*time.Minute, 200*time.Millisecond, "sink backlogs 0", drained); err != nil {
			drainErr = fmt.Errorf("heal: %w", err)
		}
	}
	if drainErr != nil {
		// Stop and check anyway: the check says what is missing.
		c.logf("%v; stopping ingest (SIGTERM) and checking anyway", drainErr)
		if err := c.ingest().Stop(2 * time.Minute); err != nil {
			c.logf("ingest's stop: %v", err)
		}
		c.killGenerator()
		return drainErr
	}
	c.logf("backlogs drained; stopping ingest (SIGTERM)")
	for attempt := 1; ; attempt++ {
		p := c.ingest()
		err := p.Stop(2 * time.Minute)
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(proc.Tail(p.LogPath(), 4000), "not caught up") {
			return fmt.Errorf("heal: ingest's clean stop: %w\n%s", err, proc.Tail(p.LogPath(), 1500))
		}
		c.logf("ingest stopped with sinks not caught up (%v): once more", err)
		if err := c.startIngest(); err != nil {
			return err
		}
		if err := c.waitReady(ctx, 3*time.Minute); err != nil {
			return err
		}
		if err := proc.WaitFor(ctx, 3*time.Minute, 200*time.Millisecond, "sink backlogs 0", drained); err != nil {
			return err
		}
	}
	c.killGenerator()
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	return nil
}
