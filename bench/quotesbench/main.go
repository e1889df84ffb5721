// Command quotesbench is `make bench`: it measures the real quotes binary end to end and
// prints one table (SPEC §9, issue 9).
//
// It generates its inputs with `quotes generate --record --speed max`, replays them with
// each --sync mode, runs live ingest over loopback websockets against `quotes generate` at
// increasing rates, loads the HTTP API while ingest runs, kills processes with SIGKILL and
// times the restart, and — when a ClickHouse server can be started the way the tests start
// one (internal/chtest) — inserts the same quotes raw into ClickHouse and computes candles
// there with GROUP BY, as the baseline. It reports figures and asserts none. The two
// figures compared (our replay, ClickHouse's insert) are each the fastest of bestOf runs,
// every one reading the recording from the page cache.
//
// Everything it starts runs on 127.0.0.1, in its own process group, under one temporary
// directory; all of it is killed and removed at the end, on failure and on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/quotesdev/quotes/internal/proc"
	"github.com/quotesdev/quotes/pipeline"
)

// workload is one input feed and the live rates tried for it.
type workload struct {
	Name        string
	Instruments int
	Interval    time.Duration
	Duration    time.Duration
	Seed        uint64
	// LiveSpeeds are the generator speeds of the live ingest levels, lowest first.
	LiveSpeeds []string
	// KillReplay: also kill -9 a replay half-way and time an ingest restart on its data.
	KillReplay bool
	// Steady: also run live ingest at --speed 1x this long and read its anonymous RSS over
	// its last steadySpan, the largest reading (live_steady_anon_rss_mib); 0 skips it.
	Steady time.Duration
}

func (w workload) genArgs() []string {
	return []string{"--instruments", fmt.Sprint(w.Instruments), "--quote-interval", w.Interval.String(), "--seed", fmt.Sprint(w.Seed)}
}

func (w workload) title() string {
	return fmt.Sprintf("%s: %s instr × %s × %s", w.Name, num(float64(w.Instruments)), w.Interval, shortDur(w.Duration))
}

func shortDur(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

type config struct {
	bin        string
	out        string
	keep       bool
	quick      bool
	noCH       bool
	liveWindow time.Duration
	httpLoad   time.Duration
	steady     time.Duration
	workloads  []workload
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/quotes", "the quotes binary to measure")
	flag.StringVar(&c.out, "out", "bench/results/latest.txt", "also write the report here (empty: stdout only)")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (data, logs) for inspection")
	flag.BoolVar(&c.quick, "quick", false, "tiny workloads and short windows: a smoke test of the bench itself, not a measurement")
	flag.BoolVar(&c.noCH, "no-clickhouse", false, "skip the ClickHouse baseline")
	flag.DurationVar(&c.liveWindow, "live-window", 25*time.Second, "measurement window of each live ingest level")
	flag.DurationVar(&c.httpLoad, "http-load", 10*time.Second, "duration of the HTTP query load while ingest runs")
	flag.DurationVar(&c.steady, "steady", 15*time.Minute, "how long the spec workload's steady-state live ingest runs; its anonymous RSS is read over the last 7 minutes of it (0: skip)")
	noop := flag.String("noop-server", "", "internal: serve the no-op control on this address (see noop.go) instead of measuring")
	flag.Parse()
	if *noop != "" {
		fmt.Fprintln(os.Stderr, "quotesbench: no-op control:", serveNoop(*noop))
		os.Exit(1)
	}

	c.workloads = []workload{
		{Name: "spec", Instruments: 50_000, Interval: time.Second, Duration: 10 * time.Minute, Seed: 1,
			LiveSpeeds: []string{"1x", "2x", "4x"}, KillReplay: true, Steady: c.steady},
		{Name: "heavy", Instruments: 100_000, Interval: 500 * time.Millisecond, Duration: 2 * time.Minute, Seed: 2,
			LiveSpeeds: []string{"1x", "2x"}},
	}
	if c.quick {
		c.workloads = []workload{
			{Name: "spec", Instruments: 2_000, Interval: time.Second, Duration: time.Minute, Seed: 1, LiveSpeeds: []string{"1x", "4x"}, KillReplay: true, Steady: min(c.steady, 10*time.Second)},
			{Name: "heavy", Instruments: 4_000, Interval: 500 * time.Millisecond, Duration: 30 * time.Second, Seed: 2, LiveSpeeds: []string{"1x"}},
		}
		c.liveWindow, c.httpLoad = 4*time.Second, 2*time.Second
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, c))
}

func run(ctx context.Context, c config) int {
	bin, err := filepath.Abs(c.bin)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "quotesbench: -bin %s: %v (make build first)\n", c.bin, err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "quotesbench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "quotesbench:", err)
		return 1
	}
	b := &bench{cfg: c, bin: bin, tmp: tmp, ps: &proc.Group{}, began: time.Now(),
		ourReplay: map[int]float64{}, ourQueryP50: map[int]time.Duration{}, res: results{}}
	defer func() {
		b.cleanup()
		if c.keep {
			fmt.Fprintln(os.Stderr, "quotesbench: kept", tmp)
		} else {
			os.RemoveAll(tmp)
		}
	}()
	b.header = machineHeader(bin)
	err = b.run(ctx)
	report := b.report(err)
	fmt.Print(report)
	if c.out != "" && !c.quick && err == nil {
		if werr := os.WriteFile(c.out, []byte(report), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "quotesbench:", werr)
		}
		js, jerr := b.res.marshal()
		if jerr == nil {
			jerr = os.WriteFile(jsonPath(c.out), js, 0o644)
		}
		if jerr != nil {
			fmt.Fprintln(os.Stderr, "quotesbench:", jerr)
		}
	} else if c.quick {
		if js, jerr := b.res.marshal(); jerr == nil {
			fmt.Print("\nresults (JSON, not written with -quick):\n" + string(js))
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quotesbench:", err)
		return 1
	}
	return 0
}

// bench is one run.
type bench struct {
	cfg     config
	bin     string
	tmp     string
	ps      *proc.Group
	t       table
	notes   []string
	cmds    []string
	header  []string
	began   time.Time
	cleanFn []func()
	// ours, per column, for the ratios to the ClickHouse baseline.
	ourReplay   map[int]float64       // replay --sync batch quotes/s
	ourQueryP50 map[int]time.Duration // idle last=30m p50
	// res are the figures of bench/results/latest.json, per workload name.
	res results
}

// name is the workload name of column col (the key of its object in latest.json).
func (b *bench) name(col int) string { return b.cfg.workloads[col].Name }

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) cleanup() {
	for i := len(b.cleanFn) - 1; i >= 0; i-- {
		b.cleanFn[i]()
	}
	b.ps.KillAll()
}

func (b *bench) run(ctx context.Context) error {
	for _, w := range b.cfg.workloads {
		b.t.Columns = append(b.t.Columns, w.title())
	}
	ch := b.startClickHouse()
	for col, w := range b.cfg.workloads {
		if err := b.workload(ctx, col, w, ch); err != nil {
			return fmt.Errorf("workload %s: %w", w.Name, err)
		}
	}
	return nil
}

// workload runs every phase of one workload in column col.
// bestOf is how many times each figure of the comparison with ClickHouse (replay --sync
// batch, and ClickHouse's file → MergeTree insert) is measured; each keeps its fastest
// run. The machine is shared, and other work on it only ever slows a run down.
const bestOf = 3

func (b *bench) workload(ctx context.Context, col int, w workload, ch *chBaseline) error {
	dir := filepath.Join(b.tmp, w.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	feedFile := filepath.Join(dir, "feed.jsonl")
	b.logf("%s: generate --record", w.Name)
	args := append([]string{"generate", "--record", feedFile, "--speed", "max", "--duration", w.Duration.String()}, w.genArgs()...)
	b.cmd(col, "quotes "+strings.Join(args, " "))
	g, err := b.start(w.Name+"-generate", dir, args...)
	if err != nil {
		return err
	}
	if err := g.Wait(ctx); err != nil {
		return err
	}
	quotes, messages := parseGenerateDone(proc.Tail(g.LogPath(), 2000))
	fi, err := os.Stat(feedFile)
	if err != nil {
		return err
	}
	b.t.section("input")
	b.t.set("quotes (messages) in the recording", col, fmt.Sprintf("%s (%s)", num(float64(quotes)), num(float64(messages))))
	b.t.set("recording size", col, mib(fi.Size()))
	b.t.set("generate --record time", col, secs(g.Wall()))

	// Replay with each sync mode, each into a fresh data directory; --sync batch, the
	// figure compared with ClickHouse, bestOf times, keeping the fastest run.
	b.t.section("replay: file → WAL → candles + hot (embedded store)")
	var batchDir string
	var batchSum replaySummary
	for _, mode := range []string{"batch", "always", "none"} {
		runs := 1
		if mode == "batch" {
			runs = bestOf
		}
		var best replaySummary
		var bestProc *proc.Process
		var bestData string
		var others []string
		for run := range runs {
			if err := ctx.Err(); err != nil {
				return err
			}
			data := filepath.Join(dir, fmt.Sprintf("replay-%s-%d", mode, run))
			b.logf("%s: replay --sync %s (run %d of %d)", w.Name, mode, run+1, runs)
			args := []string{"replay", feedFile, "--data", data, "--sync", mode, "--progress", "never"}
			if mode == "batch" && run == 0 {
				b.cmd(col, "quotes "+strings.Join(args, " ")+"   (and --sync always, none)")
			}
			if err := warmCache(feedFile); err != nil {
				return err
			}
			p, err := b.start(w.Name+"-replay-"+mode, dir, args...)
			if err != nil {
				return err
			}
			if err := p.Wait(ctx); err != nil {
				return err
			}
			sum, err := parseReplaySummary(p.Stdout())
			if err != nil {
				return err
			}
			switch {
			case bestProc == nil:
				best, bestProc, bestData = sum, p, data
			case sum.Elapsed < best.Elapsed:
				others = append(others, secs(best.Elapsed))
				os.RemoveAll(bestData)
				best, bestProc, bestData = sum, p, data
			default:
				others = append(others, secs(sum.Elapsed))
				os.RemoveAll(data)
			}
		}
		sum, p, data := best, bestProc, bestData
		// The WAL proper: the log's files without the checkpoint, which is state of a
		// fixed size (the open minutes and hot windows), not bytes per quote.
		ckptBytes := fileSize(filepath.Join(data, "wal", pipeline.CheckpointFile))
		walBytes := dirSize(filepath.Join(data, "wal")) - ckptBytes
		other := ""
		if len(others) > 0 {
			other = "; other run " + strings.Join(others, ", ")
		}
		b.t.set("throughput --sync "+mode, col, fmt.Sprintf("%s (%s, wall %s%s)", rate(float64(sum.Quotes), sum.Elapsed), secs(sum.Elapsed), secs(p.Wall()), other))
		b.t.set("peak RSS --sync "+mode, col, mib(p.MaxRSS()))
		b.t.set("WAL bytes/quote --sync "+mode, col, fmt.Sprintf("%.1f B (%s)", float64(walBytes)/float64(max(sum.Quotes, 1)), mib(walBytes)))
		b.res.set(w.Name, "replay_qps_"+mode, float64(sum.Quotes)/sum.Elapsed.Seconds())
		if mode == "batch" {
			batchDir, batchSum = data, sum
			b.res.set(w.Name, keyReplayPeakRSSMiB, mibF(p.MaxRSS()))
			b.res.set(w.Name, keyWALBytesPerQuote, float64(walBytes)/float64(max(sum.Quotes, 1)))
			b.res.set(w.Name, keyCheckpointMiB, mibF(ckptBytes))
			b.t.set("checkpoint file (fixed size: open minutes, hot windows) --sync batch", col, mib(ckptBytes))
			b.ourReplay[col] = float64(sum.Quotes) / sum.Elapsed.Seconds()
			b.t.set("candles closed, hot events", col, fmt.Sprintf("%s, %s", num(float64(sum.Candles)), num(float64(sum.HotEvents))))
		} else {
			os.RemoveAll(data)
		}
	}

	b.note(fmt.Sprintf("replay --sync batch and ClickHouse's file → MergeTree insert are each run %d times (the other runs' times in parentheses) and the fastest run counts, for both: the machine is shared, and other work on it only ever slows a run down. Right before every timed run that reads the recording (each replay, each insert) the bench reads it once, so every run reads it from the page cache.", bestOf))

	// Query latency over the replayed data, idle: the same requests go to ClickHouse.
	isins, err := b.serveQueries(ctx, col, w, batchDir)
	if err != nil {
		return err
	}

	if w.KillReplay {
		if err := b.killReplay(ctx, col, w, feedFile, dir, batchSum.Elapsed); err != nil {
			if ctx.Err() != nil {
				return err
			}
			// A failed restart is a finding, not a reason to stop measuring.
			b.logf("%s: restart after kill -9 of replay failed: %v", w.Name, err)
			b.t.section(restartSection)
			b.t.set(restartReplayRow, col, "FAILED: "+lastLine(err.Error()))
		}
	}
	os.RemoveAll(batchDir)

	// ClickHouse baseline on the same recording.
	b.t.section("ClickHouse baseline: the same quotes raw in a MergeTree, candles by GROUP BY")
	if ch.err != nil {
		b.t.set("insert throughput (file → ClickHouse)", col, "not available: "+ch.err.Error())
	} else if err := ch.run(ctx, b, col, w, feedFile, isins); err != nil {
		b.logf("%s: ClickHouse baseline failed: %v", w.Name, err)
		b.t.set("insert throughput (file → ClickHouse)", col, "not available: "+firstLine(err.Error()))
	}
	os.Remove(feedFile)

	// Live ingest at increasing rates.
	b.t.section("live: quotes generate ──ws──► quotes ingest --sync batch, loopback")
	for level, speed := range w.LiveSpeeds {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.live(ctx, col, w, level, speed); err != nil {
			return err
		}
	}
	if w.Steady > 0 {
		if err := b.steady(ctx, col, w); err != nil {
			if ctx.Err() != nil {
				return err
			}
			b.logf("%s: steady-state ingest failed: %v", w.Name, err)
			b.t.set(steadyRow, col, "FAILED: "+lastLine(err.Error()))
		}
	}
	return nil
}

// cmd records a command line for the report.
func (b *bench) cmd(col int, s string) {
	b.cmds = append(b.cmds, fmt.Sprintf("[%s] %s", b.cfg.workloads[col].Name, s))
}

func (b *bench) note(s string) {
	for _, n := range b.notes {
		if n == s {
			return
		}
	}
	b.notes = append(b.notes, s)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// parseGenerateDone reads quotes= and messages= from generate's "generate: done" log line.
func parseGenerateDone(log string) (quotes, messages uint64) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "generate: done") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "quotes="); ok {
				fmt.Sscan(v, &quotes)
			}
			if v, ok := strings.CutPrefix(f, "messages="); ok {
				fmt.Sscan(v, &messages)
			}
		}
	}
	return quotes, messages
}

// parseGenerateElapsed reads elapsed= from generate's "generate: done" log line.
func parseGenerateElapsed(log string) time.Duration {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "generate: done") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "elapsed="); ok {
				d, _ := time.ParseDuration(v)
				return d
			}
		}
	}
	return 0
}

// report is the whole output: header, commands, table, notes.
func (b *bench) report(runErr error) string {
	var sb strings.Builder
	for _, h := range b.header {
		sb.WriteString(h + "\n")
	}
	fmt.Fprintf(&sb, "load average: at start %s, at end %s; bench took %s\n", b.header0Load(), loadavg(), time.Since(b.began).Round(time.Second))
	sb.WriteString("\ncommands (each replay and ingest into a fresh --data under a temp dir):\n")
	for _, c := range b.cmds {
		sb.WriteString("  " + c + "\n")
	}
	sb.WriteString("\n")
	b.t.render(&sb)
	if len(b.notes) > 0 {
		sb.WriteString("\nnotes:\n")
		for _, n := range b.notes {
			sb.WriteString("  - " + n + "\n")
		}
	}
	if runErr != nil {
		fmt.Fprintf(&sb, "\nINCOMPLETE: %s\n", firstLine(runErr.Error()))
	}
	return sb.String()
}

var startLoad = loadavg()

func (b *bench) header0Load() string { return startLoad }

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machineHeader names the machine and the build.
func machineHeader(bin string) []string {
	cpu := "?"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb float64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				mem = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	kernel := "?"
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(data))
	}
	version := "?"
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	return []string{
		fmt.Sprintf("quotes bench (make bench), %s", time.Now().UTC().Format("2006-01-02 15:04 MST")),
		fmt.Sprintf("machine: %d CPUs (nproc), %s, %s RAM, Linux %s, %s/%s, %s", runtime.NumCPU(), cpu, mem, kernel, runtime.GOOS, runtime.GOARCH, runtime.Version()),
		fmt.Sprintf("binary: %s", version),
	}
}
