package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quotesdev/quotes/internal/proc"
)

const latencyMetric = "quotes_ingest_durable_latency_seconds"

// startGenerator serves the workload's feed at speed on a free loopback port and waits
// until it accepts connections.
func (b *bench) startGenerator(ctx context.Context, w workload, speed, logDir, name string) (*proc.Process, string, error) {
	port, err := proc.FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{"generate", "--listen", addr, "--speed", speed}, w.genArgs()...)
	p, err := b.start(name, logDir, args...)
	if err != nil {
		return nil, "", err
	}
	for i := 0; i < 500; i++ {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return p, addr, nil
		}
		if p.Exited() {
			return nil, "", fmt.Errorf("%s exited: %s", name, proc.Tail(p.LogPath(), 1000))
		}
		if err := proc.Sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, "", err
		}
	}
	p.Kill()
	return nil, "", fmt.Errorf("%s: %s does not accept connections", name, addr)
}

// startIngest starts ingest on data against the generator at genAddr, with the API on a
// free loopback port; it returns the API base URL.
func (b *bench) startIngest(data, genAddr, logDir, name string) (*proc.Process, string, []string, error) {
	port, err := proc.FreePort()
	if err != nil {
		return nil, "", nil, err
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"ingest", "--source", "ws://" + genAddr, "--data", data, "--http", httpAddr, "--sync", "batch"}
	p, err := b.start(name, logDir, args...)
	if err != nil {
		return nil, "", nil, err
	}
	return p, "http://" + httpAddr, args, nil
}

type instrument struct {
	ISIN  string           `json:"isin"`
	Price *json.RawMessage `json:"price"`
}

// quotedISINs returns the active instruments that have a price.
func quotedISINs(ctx context.Context, base string) ([]string, error) {
	code, body, err := proc.Get(ctx, base+"/instruments")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s/instruments: status %d", base, code)
	}
	var ins []instrument
	if err := json.Unmarshal(body, &ins); err != nil {
		return nil, fmt.Errorf("%s/instruments: %w", base, err)
	}
	var out []string
	for _, in := range ins {
		if in.Price != nil && string(*in.Price) != "null" {
			out = append(out, in.ISIN)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s/instruments: no instrument with a price yet", base)
	}
	return out, nil
}

// latencies measures GET url(isin) for each isin with the given concurrency, until the
// list or the duration runs out (0: no time limit). It returns the sorted latencies and the
// number of failed requests.
func latencies(ctx context.Context, isins []string, clients int, d time.Duration, url func(string) string) ([]time.Duration, int) {
	var (
		mu     sync.Mutex
		lat    []time.Duration
		errs   int
		next   int
		wg     sync.WaitGroup
		endsAt time.Time
	)
	if d > 0 {
		endsAt = time.Now().Add(d)
	}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= len(isins) || ctx.Err() != nil || (d > 0 && time.Now().After(endsAt)) {
					mu.Unlock()
					return
				}
				isin := isins[next]
				next++
				mu.Unlock()
				t0 := time.Now()
				code, _, err := proc.Get(ctx, url(isin))
				el := time.Since(t0)
				mu.Lock()
				// 404: deleted by churn since the ISIN list was taken; a real answer.
				if err != nil || (code != http.StatusOK && code != http.StatusNotFound) {
					errs++
				} else {
					lat = append(lat, el)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, errs
}

// sample draws n ISINs (with repeats) from isins, deterministically.
func sample(isins []string, n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 9))
	out := make([]string, n)
	for i := range out {
		out[i] = isins[r.IntN(len(isins))]
	}
	return out
}

const idleQueries = 1000

const (
	restartSection   = "restart: kill -9, then quotes ingest on the same --data, until /readyz is 200"
	restartReplayRow = "after kill -9 of replay half-way"
)

// serveQueries measures last=30m over `quotes serve` on the replayed data, one client,
// and returns the ISIN sequence it asked for (the ClickHouse baseline asks the same).
func (b *bench) serveQueries(ctx context.Context, col int, w workload, data string) ([]string, error) {
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"serve", "--data", data, "--http", addr}
	b.logf("%s: serve + %d last=30m queries", w.Name, idleQueries)
	p, err := b.start(w.Name+"-serve", filepath.Dir(data), args...)
	if err != nil {
		return nil, err
	}
	defer p.Stop(10 * time.Second)
	base := "http://" + addr
	if _, err := waitReady(ctx, base+"/readyz", p, time.Minute); err != nil {
		return nil, err
	}
	all, err := quotedISINs(ctx, base)
	if err != nil {
		return nil, err
	}
	isins := sample(all, idleQueries, w.Seed)
	url := func(isin string) string { return base + "/instruments/" + isin + "/candles?last=30m" }
	latencies(ctx, isins[:50], 1, 0, url) // warm-up
	lat, errs := latencies(ctx, isins, 1, 0, url)
	if len(lat) > 0 {
		b.ourQueryP50[col] = exactQuantile(0.5, lat)
		b.res.set(w.Name, keyQueryP50MsIdle, msF(exactQuantile(0.5, lat)))
		b.res.set(w.Name, keyQueryP99MsIdle, msF(exactQuantile(0.99, lat)))
	}
	b.t.section("query: GET /instruments/{isin}/candles?last=30m")
	b.t.set("idle: serve over the replayed data, 1 client: p50 / p99", col, latCell(lat, errs))
	b.cmd(col, "quotes "+strings.Join(args, " ")+fmt.Sprintf("   + %d sequential GETs, random quoted ISINs", idleQueries))
	return isins, nil
}

func latCell(lat []time.Duration, errs int) string {
	if len(lat) == 0 {
		return fmt.Sprintf("no successful request (%d errors)", errs)
	}
	s := fmt.Sprintf("%s / %s (%s req", ms(exactQuantile(0.5, lat)), ms(exactQuantile(0.99, lat)), num(float64(len(lat))))
	if errs > 0 {
		s += fmt.Sprintf(", %d errors", errs)
	}
	return s + ")"
}

// killReplay kills a replay half-way with SIGKILL and times an ingest restart on its data
// until /readyz answers 200 (recovery done, source connected).
func (b *bench) killReplay(ctx context.Context, col int, w workload, feedFile, dir string, full time.Duration) error {
	data := filepath.Join(dir, "killed-replay")
	defer os.RemoveAll(data)
	b.logf("%s: replay, kill -9 after %s, restart ingest", w.Name, secs(full/2))
	p, err := b.start(w.Name+"-replay-killed", dir, "replay", feedFile, "--data", data, "--sync", "batch", "--progress", "never")
	if err != nil {
		return err
	}
	if err := proc.Sleep(ctx, max(full/2, time.Second)); err != nil {
		return err
	}
	p.Kill()
	gen, genAddr, err := b.startGenerator(ctx, w, w.LiveSpeeds[0], dir, w.Name+"-generate-restart")
	if err != nil {
		return err
	}
	defer gen.Stop(10 * time.Second)
	ing, base, _, err := b.startIngest(data, genAddr, dir, w.Name+"-ingest-after-replay-kill")
	if err != nil {
		return err
	}
	defer ing.Stop(60 * time.Second)
	d, err := waitReady(ctx, base+"/readyz", ing, 5*time.Minute)
	if err != nil {
		return err
	}
	m, err := scrape(ctx, base)
	if err != nil {
		return err
	}
	b.t.section(restartSection)
	b.t.set(restartReplayRow, col, fmt.Sprintf("%s (WAL of %s records)", secs(d), num(m["quotes_wal_applied_seq"])))
	b.res.set(w.Name, keyRestartAfterKillS, secF(d))
	return nil
}

// live runs one live level: generator at speed, ingest from it; measures sustained rate
// and durable latency over the window; on the first level also the HTTP load and a
// kill -9 restart.
func (b *bench) live(ctx context.Context, col int, w workload, level int, speed string) error {
	dir := filepath.Join(b.tmp, w.Name, "live-"+speed)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	nominal := float64(w.Instruments) / w.Interval.Seconds() * parseSpeed(speed)
	label := fmt.Sprintf("level %d: --speed %s (~%s q/s)", level+1, speed, num(nominal))
	b.logf("%s: live %s", w.Name, label)
	gen, genAddr, err := b.startGenerator(ctx, w, speed, dir, w.Name+"-live-generate-"+speed)
	if err != nil {
		return err
	}
	defer gen.Stop(10 * time.Second)
	data := filepath.Join(dir, "data")
	ing, base, args, err := b.startIngest(data, genAddr, dir, w.Name+"-live-ingest-"+speed)
	if err != nil {
		return err
	}
	defer func() { ing.Stop(60 * time.Second) }()
	if level == 0 {
		b.cmd(col, fmt.Sprintf("quotes generate --listen ADDR --speed %s %s   (levels: --speed %s)", speed, strings.Join(w.genArgs(), " "), strings.Join(w.LiveSpeeds, ", ")))
		b.cmd(col, "quotes "+strings.Join(args, " "))
	}
	if _, err := waitReady(ctx, base+"/readyz", ing, time.Minute); err != nil {
		return err
	}
	if err := proc.Sleep(ctx, min(5*time.Second, b.cfg.liveWindow/2)); err != nil { // snapshot, warm-up
		return err
	}
	m0, err := scrape(ctx, base)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := proc.Sleep(ctx, b.cfg.liveWindow); err != nil {
		return err
	}
	m1, err := scrape(ctx, base)
	if err != nil {
		return err
	}
	window := time.Since(t0)
	received := m1["quotes_quote_records_total"] - m0["quotes_quote_records_total"]
	hist := subBuckets(m1.histogram(latencyMetric), m0.histogram(latencyMetric))

	var httpCell, healthCell, noopCell, restartCell string
	var rss int64
	if level == 0 {
		all, err := quotedISINs(ctx, base)
		if err != nil {
			return err
		}
		const clients = 4
		isins := sample(all, 1_000_000, w.Seed)
		lat, errs := latencies(ctx, isins, clients, b.cfg.httpLoad, func(isin string) string {
			return base + "/instruments/" + isin + "/candles?last=30m"
		})
		httpCell = latCell(lat, errs)
		if len(lat) > 0 {
			b.res.set(w.Name, keyQueryP99MsUnderIngest, msF(exactQuantile(0.99, lat)))
		}
		b.note(fmt.Sprintf("query latency while ingest runs: %d concurrent loopback clients for %s against ingest's API at live level 1, right after its measurement window, random ISINs that have a price; exact percentiles of the client-side times.", clients, b.cfg.httpLoad))
		// The control: the same load against /healthz, which does no work, so its tail is
		// what the machine (the clients, the scheduler, ingest and the generator beside
		// them) adds to any request.
		hlat, herrs := latencies(ctx, isins, clients, b.cfg.httpLoad, func(string) string {
			return base + "/healthz"
		})
		healthCell = latCell(hlat, herrs)
		b.note(fmt.Sprintf("/healthz while ingest runs: the same %d clients for %s right after the last=30m load, against ingest's endpoint that does no work: the latency the machine and ingest's own goroutines add to any request.", clients, b.cfg.httpLoad))
		noop, noopBase, err := b.startNoop(ctx, dir)
		if err != nil {
			return err
		}
		nlat, nerrs := latencies(ctx, isins, clients, b.cfg.httpLoad, func(string) string {
			return noopBase + "/"
		})
		noop.Kill()
		noopCell = latCell(nlat, nerrs)
		b.note(fmt.Sprintf("no-op server: the same %d clients for %s right after /healthz, against a plain net/http server in a process of its own that answers \"ok\" (bench/quotesbench/noop.go), beside the same ingest and generator: the machine's floor, with no quotes code in the process.", clients, b.cfg.httpLoad))

		// kill -9 the ingest, restart it on the same data against the same generator.
		before, _ := scrape(ctx, base)
		ing.Kill()
		rss = ing.MaxRSS()
		ing2, base2, _, err := b.startIngest(data, genAddr, dir, w.Name+"-live-ingest-restarted")
		if err != nil {
			return err
		}
		d, err := waitReady(ctx, base2+"/readyz", ing2, 5*time.Minute)
		ing2.Stop(60 * time.Second)
		if err != nil {
			return err
		}
		restartCell = fmt.Sprintf("%s (WAL of %s records)", secs(d), num(before["quotes_wal_applied_seq"]))
		b.res.set(w.Name, keyLiveRestartS, secF(d))
	}
	gen.Stop(10 * time.Second)
	sent, _ := parseGenerateDone(proc.Tail(gen.LogPath(), 4000))
	genElapsed := parseGenerateElapsed(proc.Tail(gen.LogPath(), 4000))
	drops := strings.Count(readFile(gen.LogPath()), "client too slow")
	if level != 0 {
		ing.Stop(60 * time.Second)
		rss = ing.MaxRSS()
	}

	offered := nominal
	if genElapsed > 0 && sent > 0 {
		offered = float64(sent) / genElapsed.Seconds()
	}
	sustained := received / window.Seconds()
	verdict := "kept up"
	if level == 0 {
		b.res.set(w.Name, keyLivePeakRSSMiB, mibF(rss))
	}
	if sustained >= 0.98*offered && drops == 0 {
		b.res.max(w.Name, keyLiveKeptUpQPS, offered)
	}
	if sustained < 0.98*offered || drops > 0 {
		verdict = "FELL BEHIND"
		if drops > 0 {
			verdict += fmt.Sprintf(" (dropped as too slow %d×)", drops)
		}
	}
	b.t.set(fmt.Sprintf("level %d offered → ingested (durable)", level+1), col,
		fmt.Sprintf("--speed %s: %s → %s q/s (%.1f %%), %s", speed, num(offered), num(sustained), 100*sustained/offered, verdict))
	p50, a50, ok50 := quantile(0.5, hist)
	p99, a99, ok99 := quantile(0.99, hist)
	if ok50 && ok99 {
		b.t.set(fmt.Sprintf("level %d arrival → WAL durable p50 / p99", level+1), col, fmt.Sprintf("%s%s / %s%s", gt(a50), ms(secsDur(p50)), gt(a99), ms(secsDur(p99))))
	}
	b.t.set(fmt.Sprintf("level %d ingest peak RSS", level+1), col, mib(rss))
	if level == 0 {
		b.t.set("level 1 last=30m p50 / p99 while ingest runs", col, httpCell)
		b.t.set("level 1 /healthz p50 / p99, same load (control: no work)", col, healthCell)
		b.t.set("level 1 no-op server, own process, same load (control: the machine)", col, noopCell)
		b.t.set("level 1 restart after kill -9 of ingest", col, restartCell)
	}
	b.note("live: offered = the generator's quotes sent ÷ its run time (from its exit log); ingested = growth of ingest's quotes_quote_records_total (WAL-durable and applied) over the window ÷ window; \"kept up\" = ingested ≥ 98 % of offered and the generator never dropped the client as too slow (its queue bound is 100,000 messages, so a backlog that keeps growing ends in a drop).")
	b.note("arrival → WAL durable: histogram quotes_ingest_durable_latency_seconds (clock.Now() − arrival stamp, observed in ingest's deliver() when the WAL append (--sync batch) and apply returned), window only (difference of two scrapes), percentiles interpolated linearly inside its buckets (0.25 ms × 2ⁿ) like PromQL histogram_quantile; it does not see time spent queued in the generator or the kernel before the arrival stamp, and counts up to 1 ms more than that (arrival stamps are whole milliseconds, rounded down).")
	return nil
}

func gt(above bool) string {
	if above {
		return ">"
	}
	return ""
}

func secsDur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func parseSpeed(s string) float64 {
	var f float64
	fmt.Sscanf(strings.TrimSuffix(s, "x"), "%g", &f)
	if f <= 0 {
		return 1
	}
	return f
}

const steadyRow = "anonymous RSS of ingest at --speed 1x after the steady-state run"

// steady runs live ingest at --speed 1x for w.Steady and reads its anonymous RSS (RssAnon:
// the process's own memory, not the WAL files Badger maps), which must be flat once the
// hot window is full: every steadyEvery over the last steadySpan, and it reports the
// largest reading. One reading is one moment of a collection cycle, of Badger's memtable
// flushes (tens of MiB of heap for a few seconds, every minute or two at the spec load) and
// of its level-0 compactions (every ~6.5 minutes at the spec load, ~20 s each): the largest
// over a span longer than a compaction cycle is what the process needs, not what it happened
// to hold. The span starts after the hot window and its lateness are full (8 minutes).
func (b *bench) steady(ctx context.Context, col int, w workload) error {
	dir := filepath.Join(b.tmp, w.Name, "steady")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b.logf("%s: steady-state live ingest for %s", w.Name, w.Steady)
	gen, genAddr, err := b.startGenerator(ctx, w, "1x", dir, w.Name+"-steady-generate")
	if err != nil {
		return err
	}
	defer gen.Stop(10 * time.Second)
	ing, base, _, err := b.startIngest(filepath.Join(dir, "data"), genAddr, dir, w.Name+"-steady-ingest")
	if err != nil {
		return err
	}
	defer ing.Stop(60 * time.Second)
	if _, err := waitReady(ctx, base+"/readyz", ing, time.Minute); err != nil {
		return err
	}
	last := min(steadySpan, w.Steady) // the span read
	span := last                      // of it still to come
	if err := proc.Sleep(ctx, w.Steady-last); err != nil {
		return err
	}
	var lo, hi int64
	n := 0
	for {
		if ing.Exited() {
			return fmt.Errorf("ingest exited during the steady-state run (see %s)", ing.LogPath())
		}
		rss, err := proc.AnonRSS(ing.Pid())
		if err != nil {
			return err
		}
		if n == 0 || rss < lo {
			lo = rss
		}
		hi = max(hi, rss)
		n++
		if span <= 0 {
			break
		}
		d := min(steadyEvery, span)
		if err := proc.Sleep(ctx, d); err != nil {
			return err
		}
		span -= d
	}
	b.t.set(steadyRow, col, fmt.Sprintf("%s after %s (%d readings over the last %s, least %s)", mib(hi), shortDur(w.Steady), n, shortDur(last), mib(lo)))
	b.res.set(w.Name, keyLiveSteadyAnonRSSMiB, mibF(hi))
	b.cmd(col, fmt.Sprintf("steady state: quotes generate --speed 1x + quotes ingest --sync batch for %s, RssAnon from /proc/PID/status every %s over the last %s, the largest", w.Steady, shortDur(steadyEvery), shortDur(last)))
	return nil
}

// The steady-state run reads the resident set every steadyEvery over its last steadySpan.
const (
	steadyEvery = 10 * time.Second
	steadySpan  = 7 * time.Minute
)
