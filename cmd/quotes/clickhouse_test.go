package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

// chRecording generates a recording with churn and late quotes, and returns it with the
// ISO range it covers.
func chRecording(t *testing.T, dir string, instruments, minutes int) string {
	t.Helper()
	rec := filepath.Join(dir, "feed.jsonl")
	mustExecute(t, "generate", "--record", rec, "--instruments", fmt.Sprint(instruments), "--duration", fmt.Sprintf("%dm", minutes),
		"--quote-interval", "1s", "--churn", "0.5", "--speed", "max", "--seed", "11")
	makeLate(t, rec, 97, 90*time.Second)
	return rec
}

// storeCandles returns every candle of the embedded store in data, keyed.
func storeCandles(t *testing.T, data string) map[aggregate.Key]aggregate.Candle {
	t.Helper()
	log, err := wal.Open(wal.DefaultOptions(filepath.Join(data, "wal")))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	p, err := pipeline.Open(log, pipeline.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := map[aggregate.Key]aggregate.Candle{}
	if err := p.Store().ScanCandles(func(c aggregate.Candle) error { out[c.Key] = c; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func chSink(t *testing.T, dsn string) *export.ClickHouseSink {
	t.Helper()
	ch, err := export.NewClickHouseSink(context.Background(), export.ClickHouseOptions{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

// checkClickHouseEqualsStore compares every merged candle in ClickHouse with the store's.
func checkClickHouseEqualsStore(t *testing.T, data, dsn string) {
	t.Helper()
	want := storeCandles(t, data)
	got := map[aggregate.Key]aggregate.Candle{}
	if err := chSink(t, dsn).MergedCandles(context.Background(), 0, 1<<62, func(c aggregate.Candle) error {
		got[c.Key] = c
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 {
		t.Fatal("the store has no candles")
	}
	bad := 0
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			if bad++; bad <= 5 {
				t.Errorf("candle %s/%d/%s: clickhouse %+v (present %v), store %+v", k.ISIN, k.Incarnation, time.Unix(0, k.Minute).UTC(), g, ok, w)
			}
		}
		delete(got, k)
	}
	if bad > 0 || len(got) > 0 {
		t.Fatalf("%d of %d candles differ; %d only in ClickHouse", bad, len(want), len(got))
	}
}

// rawRows counts the unmerged rows of the candles table: any insert changes it.
func rawRows(t *testing.T, dsn string) uint64 {
	t.Helper()
	ch := chSink(t, dsn)
	var n uint64
	latest, _, err := ch.LatestMinute(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// MergedCandles counts keys; the raw count goes through the stats of a re-read instead:
	if err := ch.MergedCandles(context.Background(), 0, latest+aggregate.MinuteNanos, func(c aggregate.Candle) error { n += c.Quotes; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestClickHouseReplay: a recording replayed with --clickhouse gives the same instruments
// and candles through ClickHouse as through the embedded store; a replay killed with
// SIGKILL several times and resumed gives exactly those candles too; backfill into an
// empty database recomputes them, and a second backfill writes nothing.
func TestClickHouseReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with a ClickHouse server; skipped in -short mode")
	}
	srv := chtest.Start(t)
	dir := t.TempDir()
	rec := chRecording(t, dir, 300, 12)

	ref := filepath.Join(dir, "ref")
	dsn := srv.DSNFor(srv.Database(t))
	out := mustExecute(t, "replay", rec, "--data", ref, "--progress", "never", "--checkpoint-every", "2m", "--clickhouse", dsn, "--sink-flush-items", "5000")
	if !lateRE.MatchString(out) || !regexp.MustCompile(`sink clickhouse: [1-9][0-9]* items delivered`).MatchString(out) {
		t.Fatalf("replay summary:\n%s", out)
	}

	t.Run("same output", func(t *testing.T) {
		checkClickHouseEqualsStore(t, ref, dsn)
		insts := mustExecute(t, "query", "instruments", "--data", ref, "--format", "json")
		if got := mustExecute(t, "query", "instruments", "--clickhouse", dsn, "--format", "json"); got != insts {
			t.Fatalf("instruments differ:\nclickhouse %s\nstore      %s", got, insts)
		}
		table := mustExecute(t, "query", "instruments", "--data", ref)
		n := 0
		for _, line := range strings.Split(table, "\n")[1:] {
			isin, _, _ := strings.Cut(line, " ")
			if len(isin) != 12 {
				continue
			}
			if n++; n > 15 {
				break
			}
			for _, args := range [][]string{{"--last", "30m"}, {"--last", "3m"}, {"--from", "2025-12-31T23:58:00Z", "--to", "2026-01-01T00:20:00Z"}, {"--from", "2026-01-01T00:05:30Z", "--to", "2026-01-01T00:07:00Z"}} {
				q := append([]string{"query", "candles", isin, "--format", "json"}, args...)
				want := mustExecute(t, append(q, "--data", ref)...)
				if got := mustExecute(t, append(q, "--clickhouse", dsn)...); got != want {
					t.Errorf("%v differs:\nclickhouse %s\nstore      %s", q, got, want)
				}
			}
		}
		if n == 0 {
			t.Fatal("no instruments")
		}
		// hot events are not in ClickHouse: a usage error that says so
		if _, errOut, code := execute(t, "query", "hot", "--clickhouse", dsn); code != 2 || !strings.Contains(errOut, "not stored in ClickHouse") {
			t.Errorf("query hot --clickhouse: exit %d, %s", code, errOut)
		}
		// a finished replay re-run changes nothing
		before := rawRows(t, dsn)
		mustExecute(t, "replay", rec, "--data", ref, "--progress", "never", "--clickhouse", dsn)
		if after := rawRows(t, dsn); after != before {
			t.Errorf("re-running a finished replay changed ClickHouse: %d → %d quotes", before, after)
		}
	})

	t.Run("kill -9", func(t *testing.T) {
		bin := quotesBinary(t)
		data := filepath.Join(dir, "killed")
		kdsn := srv.DSNFor(srv.Database(t))
		// Paced at 240x, a run over the 12-minute recording takes ~3 s, with small WAL
		// appends; kills within its first half second land between many durable states.
		args := []string{"replay", rec, "--data", data, "--progress", "never", "--checkpoint-every", "2m", "--clickhouse", kdsn,
			"--sink-flush-items", "3000", "--batch", "1000", "--speed", "240x"}
		seed := uint64(time.Now().UnixNano())
		t.Logf("kill schedule seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 2))
		killed := 0
		for i := 0; i < 8 && killed < 5; i++ {
			d := 30*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond)))
			if killDuring(t, bin, d, args...) {
				killed++
			}
		}
		if killed < 3 {
			t.Fatalf("only %d runs were killed", killed)
		}
		mustExecute(t, args...)
		checkClickHouseEqualsStore(t, data, kdsn)
		checkClickHouseEqualsStore(t, ref, kdsn) // and both equal the uninterrupted run
	})

	t.Run("backfill twice", func(t *testing.T) {
		bdsn := srv.DSNFor(srv.Database(t))
		args := []string{"backfill", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--data", ref, "--clickhouse", bdsn}
		first := mustExecute(t, args...)
		if !regexp.MustCompile(`clickhouse\s+[1-9][0-9]* inserted, 0 completed\s+\(0 equal; 0 conflicts, 0 candles`).MatchString(first) ||
			!regexp.MustCompile(`embedded store\s+0 changed`).MatchString(first) {
			t.Fatalf("first backfill:\n%s", first)
		}
		checkClickHouseEqualsStore(t, ref, bdsn)
		insts := mustExecute(t, "query", "instruments", "--data", ref, "--format", "json")
		if got := mustExecute(t, "query", "instruments", "--clickhouse", bdsn, "--format", "json"); got != insts {
			t.Errorf("instruments after backfill differ:\nclickhouse %s\nstore      %s", got, insts)
		}
		before, dump := rawRows(t, bdsn), dumpData(t, ref, 3)
		second := mustExecute(t, args...)
		if !regexp.MustCompile(`clickhouse\s+0 inserted, 0 completed\s+\([1-9][0-9]* equal; 0 conflicts`).MatchString(second) {
			t.Fatalf("second backfill:\n%s", second)
		}
		if after := rawRows(t, bdsn); after != before {
			t.Errorf("second backfill changed ClickHouse: %d → %d", before, after)
		}
		if d := dumpData(t, ref, 3); d != dump {
			t.Errorf("second backfill changed the store:\n%s", firstDiff(d, dump))
		}
		// the reference database (filled by the replay) is already complete
		if out := mustExecute(t, "backfill", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--data", ref, "--clickhouse", dsn, "--store=false"); !strings.Contains(out, " 0 inserted, 0 completed") {
			t.Errorf("backfill of a complete database:\n%s", out)
		}
		if _, errOut, code := execute(t, "backfill", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--data", ref, "--source", "archive"); code != 2 || !strings.Contains(errOut, "archive") {
			t.Errorf("--source archive: exit %d, %s", code, errOut)
		}
	})
}

// TestClickHouseDownMidReplay: ClickHouse killed early in a replay and restarted only after
// the input is done: the replay never stalls (its input phase takes about as long as
// without a sink), and at the end ClickHouse holds exactly the store's candles.
func TestClickHouseDownMidReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with a ClickHouse server; skipped in -short mode")
	}
	srv := chtest.Start(t)
	dir := t.TempDir()
	rec := chRecording(t, dir, 600, 12)
	bin := quotesBinary(t)
	start := time.Now()
	if out, err := exec.Command(bin, "replay", rec, "--data", filepath.Join(dir, "nosink"), "--progress", "never").CombinedOutput(); err != nil {
		t.Fatalf("replay without a sink: %v\n%s", err, out)
	}
	noSink := time.Since(start)

	data := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "replay", rec, "--data", data, "--progress", "never",
		"--clickhouse", srv.DSN, "--sink-flush-items", "2000", "--sink-max-backoff", "300ms", "--sink-timeout", "1m")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(noSink / 4)
	srv.Kill()
	sc := bufio.NewScanner(stdout)
	var summary strings.Builder
	for sc.Scan() {
		summary.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "elapsed ") {
			break
		}
	}
	input := time.Since(start)
	if input > 2*noSink+2*time.Second {
		t.Errorf("the input phase took %s with ClickHouse down, %s without a sink: the replay stalled", input, noSink)
	}
	srv.Restart(t)
	for sc.Scan() {
		summary.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("replay: %v\n%s", err, summary.String())
	}
	if !regexp.MustCompile(`\([1-9][0-9]* failed attempts\)`).MatchString(summary.String()) {
		t.Errorf("no failed attempts recorded: was ClickHouse really down?\n%s", summary.String())
	}
	t.Logf("input phase %s with ClickHouse down, %s without a sink\n%s", input.Round(time.Millisecond), noSink.Round(time.Millisecond), summary.String())
	checkClickHouseEqualsStore(t, data, srv.DSN)
}
