package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/internal/s3test"
	"github.com/quotesdev/quotes/wal"
)

// archiveRecording is a small recording over more than an hour (two hours in the archive),
// with churn and late quotes.
func archiveRecording(t *testing.T, dir string) string {
	t.Helper()
	rec := filepath.Join(dir, "feed.jsonl")
	mustExecute(t, "generate", "--record", rec, "--instruments", "40", "--duration", "75m",
		"--quote-interval", "10s", "--churn", "0.2", "--speed", "max", "--seed", "5")
	makeLate(t, rec, 97, 90*time.Second)
	return rec
}

// s3Env points the standard AWS environment (what the command line reads) at srv.
func s3Env(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", s3test.Region)
}

// openTestArchive opens an archive target as the commands do.
func openTestArchive(t *testing.T, target, endpoint string) export.ArchiveStore {
	t.Helper()
	o := archiveOptions{target: target, s3Endpoint: endpoint}
	s3 := o.s3Options()
	s3.TempDir = t.TempDir()
	st, err := engine.OpenArchive(target, s3)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// walRecords returns every record of data's WAL (ticks included).
func walRecords(t *testing.T, data string) []wal.Record {
	t.Helper()
	l, err := wal.Open(wal.DefaultOptions(filepath.Join(data, "wal")))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []wal.Record
	r := l.NewReader(1)
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

// rawMessages are the archived kinds of recs (no ticks), as an archive or a recording
// holds them: without the WAL's own numbering of ISINs (feed.Message.Ref).
func rawMessages(recs []wal.Record) []wal.Record {
	out := slices.DeleteFunc(slices.Clone(recs), func(r wal.Record) bool { return r.Kind == wal.KindTick })
	for i := range out {
		out[i].Ref = 0
	}
	return out
}

type stateCounter struct{ n int }

func (c *stateCounter) Quote(aggregate.AcceptedQuote)        {}
func (c *stateCounter) Instrument(aggregate.InstrumentEvent) {}
func (c *stateCounter) Closed(*aggregate.Candle)             { c.n++ }
func (c *stateCounter) Late(*aggregate.Candle)               { c.n++ }

// candleStateCount is the number of candle rows the archive holds for recs: closed minutes
// plus late corrections.
func candleStateCount(recs []wal.Record) int {
	agg := aggregate.New(aggregate.DefaultOptions())
	c := &stateCounter{}
	for _, r := range recs {
		agg.Apply(r, c)
	}
	return c.n
}

// hyparquetResult is what export/testdata/node/check.mjs prints per file.
type hyparquetResult struct {
	Path    string   `json:"path"`
	NumRows int      `json:"num_rows"`
	Codecs  []string `json:"codecs"`
	Columns []struct {
		Name        string          `json:"name"`
		LogicalType json.RawMessage `json:"logical_type"`
	} `json:"columns"`
	Rows []map[string]any `json:"rows"`
}

const (
	hpTS      = `{"type":"TIMESTAMP","isAdjustedToUTC":true,"unit":"NANOS"}`
	hpInt     = `{"type":"INTEGER","bitWidth":64,"isSigned":true}`
	hpString  = `{"type":"STRING"}`
	hpDecimal = `{"type":"DECIMAL","scale":6,"precision":18}`
)

var hyparquetTypes = map[string]map[string]string{
	export.DatasetQuotes: {"isin": hpString, "ts": hpTS, "seq": hpInt, "price": hpDecimal},
	export.DatasetEvents: {"isin": hpString, "ts": hpTS, "seq": hpInt, "type": hpString, "description": hpString},
	export.DatasetCandles: {"isin": hpString, "incarnation": hpInt, "minute": hpTS, "open": hpDecimal, "high": hpDecimal,
		"low": hpDecimal, "close": hpDecimal, "quotes": hpInt, "open_ts": hpTS, "open_seq": hpInt, "close_ts": hpTS, "close_seq": hpInt},
}

// checkHyparquet reads every file of the archive with hyparquet (an independent Parquet
// implementation, Node.js) and checks the logical types, the codec and the row counts
// against the WAL records of the run that wrote it.
func checkHyparquet(t *testing.T, st export.ArchiveStore, recs []wal.Record) {
	t.Helper()
	nodeDir, _ := filepath.Abs(filepath.Join("..", "..", "export", "testdata", "node"))
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(nodeDir, "node_modules", "hyparquet-compressors"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("independent Parquet reader unavailable in CI: %v (scripts/deps.sh installs it)", err)
		}
		t.Skipf("independent Parquet reader unavailable: %v (run scripts/deps.sh)", err)
	}
	ctx := context.Background()
	keys, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{filepath.Join(nodeDir, "check.mjs")}
	local := map[string]string{}
	for i, k := range keys {
		o, err := st.Open(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, strconv.Itoa(i)+".parquet")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, io.NewSectionReader(o, 0, o.Size())); err != nil {
			t.Fatal(err)
		}
		f.Close()
		o.Close()
		args = append(args, p)
		local[p] = k
	}
	cmd := exec.Command(node, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node check.mjs: %v", err)
	}
	rows := map[string]int{}
	files := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<30)
	for sc.Scan() {
		var f hyparquetResult
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatal(err)
		}
		files++
		key := local[f.Path]
		ds, _, _ := strings.Cut(key, "/")
		want, ok := hyparquetTypes[ds]
		if !ok {
			t.Fatalf("unexpected file %q", key)
		}
		rows[ds] += f.NumRows
		if len(f.Rows) != f.NumRows {
			t.Errorf("%s: hyparquet read %d rows, footer says %d", key, len(f.Rows), f.NumRows)
		}
		if !slices.Equal(f.Codecs, []string{"ZSTD"}) {
			t.Errorf("%s: codecs %v, want ZSTD", key, f.Codecs)
		}
		if len(f.Columns) != len(want) {
			t.Errorf("%s: %d columns, want %d", key, len(f.Columns), len(want))
		}
		for _, c := range f.Columns {
			if got := strings.ReplaceAll(string(c.LogicalType), " ", ""); got != want[c.Name] {
				t.Errorf("%s: column %s has logical type %s, want %s", key, c.Name, got, want[c.Name])
			}
		}
	}
	if files != len(keys) || files == 0 {
		t.Fatalf("hyparquet read %d of %d files", files, len(keys))
	}
	var quotes, events int
	for _, r := range recs {
		switch r.Kind {
		case feed.KindQuote:
			quotes++
		case feed.KindAdd, feed.KindDelete:
			events++
		}
	}
	if states := candleStateCount(recs); rows[export.DatasetQuotes] != quotes || rows[export.DatasetEvents] != events || rows[export.DatasetCandles] != states {
		t.Errorf("hyparquet rows %v, want quotes %d, events %d, candles %d", rows, quotes, events, states)
	}
}

var partKeyRE = regexp.MustCompile(`^(quotes|events|candles)/date=(\d{4}-\d\d-\d\d)/hour=(\d\d)/part-(\d+)-(\d+)\.parquet$`)

// checkArchiveExact checks an archive against the data directory of the run that wrote
// it: only complete part files (no temporaries), the parts of each hour with disjoint
// sequence ranges, their raw messages exactly the WAL's (each once, in order) and their
// candles exactly the store's.
func checkArchiveExact(t *testing.T, st export.ArchiveStore, data string) {
	t.Helper()
	ctx := context.Background()
	keys, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ first, last uint64 }
	hours := map[string][]span{}
	for _, k := range keys {
		m := partKeyRE.FindStringSubmatch(k)
		if m == nil {
			t.Errorf("unexpected object %q (a partial or temporary file?)", k)
			continue
		}
		first, _ := strconv.ParseUint(m[4], 10, 64)
		last, _ := strconv.ParseUint(m[5], 10, 64)
		g := m[1] + "/" + m[2] + "/" + m[3]
		hours[g] = append(hours[g], span{first, last})
	}
	for g, spans := range hours {
		slices.SortFunc(spans, func(a, b span) int { return int(a.first) - int(b.first) })
		for i := 1; i < len(spans); i++ {
			if spans[i].first <= spans[i-1].last {
				t.Errorf("%s: parts %v and %v overlap (a duplicate hour file)", g, spans[i-1], spans[i])
			}
		}
	}
	want := rawMessages(walRecords(t, data))
	var got []wal.Record
	if err := export.ReadArchiveMessages(ctx, st, export.TimeRange{}, 0, func(r wal.Record) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatalf("read the archive's messages: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("archive holds %d raw messages, the WAL %d (or they differ)", len(got), len(want))
	}
	cs, err := export.ReadArchiveCandles(ctx, st, export.TimeRange{})
	if err != nil {
		t.Fatal(err)
	}
	stored := storeCandles(t, data)
	if len(cs) != len(stored) {
		t.Errorf("archive holds %d candles, the store %d", len(cs), len(stored))
	}
	for _, c := range cs {
		if s, ok := stored[c.Key]; !ok || s != c {
			t.Errorf("candle %v: archive %+v, store %+v", c.Key, c, s)
			break
		}
	}
}

// TestArchiveCommandLine: a recording replayed with --archive to a directory and to S3;
// hyparquet reads the files with the right types and row counts; replaying either archive
// gives exactly the original run; backfill from the archive into a fresh data directory
// and into ClickHouse gives exactly the original candles, and a second one changes nothing.
func TestArchiveCommandLine(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with an S3 server; skipped in -short mode")
	}
	srv := s3test.Start(t)
	s3Env(t)
	dir := t.TempDir()
	rec := archiveRecording(t, dir)
	archDir := filepath.Join(dir, "archive")
	s3Target := "s3://" + s3test.Bucket + "/runs/a"

	refDir, refS3 := filepath.Join(dir, "ref-dir"), filepath.Join(dir, "ref-s3")
	out := mustExecute(t, "replay", rec, "--data", refDir, "--progress", "never", "--archive", archDir)
	if !regexp.MustCompile(`archive .*: [1-9][0-9]* files`).MatchString(out) {
		t.Fatalf("replay summary without the archive line:\n%s", out)
	}
	mustExecute(t, "replay", rec, "--data", refS3, "--progress", "never", "--archive", s3Target, "--s3-endpoint", srv.Endpoint)
	want := dumpData(t, refDir, 5)
	recs := walRecords(t, refDir)
	dirStore, s3Store := openTestArchive(t, archDir, ""), openTestArchive(t, s3Target, srv.Endpoint)

	t.Run("independent reader", func(t *testing.T) {
		checkHyparquet(t, s3Store, walRecords(t, refS3))
		checkHyparquet(t, dirStore, recs)
	})
	t.Run("exact", func(t *testing.T) {
		checkArchiveExact(t, dirStore, refDir)
		checkArchiveExact(t, s3Store, refS3)
	})
	t.Run("replay the archive", func(t *testing.T) {
		for _, src := range [][]string{{archDir}, {s3Target, "--s3-endpoint", srv.Endpoint}} {
			data := filepath.Join(t.TempDir(), "data")
			mustExecute(t, append([]string{"replay", "--data", data, "--progress", "never"}, src...)...)
			if got := rawMessages(walRecords(t, data)); !slices.Equal(got, rawMessages(recs)) {
				t.Errorf("replay of %s: %d raw messages, want the original %d in their order", src[0], len(got), len(rawMessages(recs)))
			}
			if got := dumpData(t, data, 5); got != want {
				t.Errorf("replay of %s differs from the original run:\n%s", src[0], firstDiff(got, want))
			}
			// re-running a finished replay of an archive changes nothing
			mustExecute(t, append([]string{"replay", "--data", data, "--progress", "never"}, src...)...)
			if got := dumpData(t, data, 5); got != want {
				t.Errorf("re-running the replay of %s changed it:\n%s", src[0], firstDiff(got, want))
			}
		}
		if _, errOut, code := execute(t, "replay", archDir, "--data", filepath.Join(t.TempDir(), "x"), "--archive", archDir); code != 2 || !strings.Contains(errOut, "--archive itself") {
			t.Errorf("replay of the --archive into itself: exit %d, %s", code, errOut)
		}
	})
	t.Run("backfill into a fresh store", func(t *testing.T) {
		wantCandles := storeCandles(t, refDir)
		for _, src := range [][]string{{archDir}, {s3Target, "--s3-endpoint", srv.Endpoint}} {
			data := filepath.Join(t.TempDir(), "data")
			args := append([]string{"backfill", "--source", "archive", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--data", data, "--archive"}, src...)
			first := mustExecute(t, args...)
			if !strings.Contains(first, "rebuilt") || !regexp.MustCompile(fmt.Sprintf(`candles recomputed\s+%d`, len(wantCandles))).MatchString(first) {
				t.Errorf("first backfill from %s:\n%s", src[0], first)
			}
			got := storeCandles(t, data)
			if len(got) != len(wantCandles) {
				t.Errorf("backfill from %s: %d candles, the original run %d", src[0], len(got), len(wantCandles))
			}
			for k, w := range wantCandles {
				if got[k] != w {
					t.Errorf("backfill from %s: candle %v is %+v, want %+v", src[0], k, got[k], w)
					break
				}
			}
			// rebuilt from the archive alone, it answers like the original: instruments,
			// prices, candles, hot events
			if got := dumpData(t, data, 5); got != want {
				t.Errorf("data directory rebuilt from %s differs from the original run:\n%s", src[0], firstDiff(got, want))
			}
			second := mustExecute(t, args...)
			if !regexp.MustCompile(`embedded store\s+0 changed`).MatchString(second) {
				t.Errorf("second backfill from %s:\n%s", src[0], second)
			}
			if d := storeCandles(t, data); len(d) != len(got) {
				t.Errorf("second backfill changed the store: %d → %d candles", len(got), len(d))
			}
		}
		// a part of the range into a fresh directory: rebuilt from the archive up to --to,
		// so exactly the original candles of the minutes before it
		data := filepath.Join(t.TempDir(), "part")
		out := mustExecute(t, "backfill", "--source", "archive", "--archive", archDir, "--from", "2026-01-01T00:30:00Z", "--to", "2026-01-01T01:05:00Z", "--data", data)
		end := time.Date(2026, 1, 1, 1, 5, 0, 0, time.UTC).UnixNano()
		got, n := storeCandles(t, data), 0
		for k, w := range wantCandles {
			if k.Minute < end {
				n++
				if got[k] != w {
					t.Errorf("backfill of 00:30–01:05: candle %v is %+v, want %+v", k, got[k], w)
					break
				}
			}
		}
		if len(got) != n || n == 0 || !strings.Contains(out, "rebuilt") {
			t.Errorf("backfill of 00:30–01:05: %d candles, want %d:\n%s", len(got), n, out)
		}
		// a missing archive is a usage error, and creates nothing
		nope := filepath.Join(t.TempDir(), "nope")
		if _, errOut, code := execute(t, "backfill", "--source", "archive", "--archive", nope, "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--data", filepath.Join(nope, "data")); code != 2 || !strings.Contains(errOut, "no Parquet archive") {
			t.Errorf("backfill from a missing archive: exit %d, %s", code, errOut)
		}
		if _, err := os.Stat(nope); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("backfill from a missing archive created %s: %v", nope, err)
		}
		if _, errOut, code := execute(t, "backfill", "--source", "archive", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--data", data); code != 2 || !strings.Contains(errOut, "--archive") {
			t.Errorf("--source archive without --archive: exit %d, %s", code, errOut)
		}
	})
	t.Run("backfill into ClickHouse", func(t *testing.T) {
		ch := chtest.Start(t)
		dsn := ch.DSNFor(ch.Database(t))
		args := []string{"backfill", "--source", "archive", "--archive", s3Target, "--s3-endpoint", srv.Endpoint,
			"--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--store=false", "--clickhouse", dsn, "--data", filepath.Join(t.TempDir(), "none")}
		first := mustExecute(t, args...)
		if !regexp.MustCompile(`clickhouse\s+[1-9][0-9]* inserted, 0 completed\s+\(0 equal; 0 conflicts, 0 candles`).MatchString(first) {
			t.Fatalf("first backfill:\n%s", first)
		}
		checkClickHouseEqualsStore(t, refS3, dsn)
		insts := mustExecute(t, "query", "instruments", "--data", refS3, "--format", "json")
		if got := mustExecute(t, "query", "instruments", "--clickhouse", dsn, "--format", "json"); got != insts {
			t.Errorf("instruments after backfill differ:\nclickhouse %s\nstore      %s", got, insts)
		}
		before := rawRows(t, dsn)
		second := mustExecute(t, args...)
		if !regexp.MustCompile(`clickhouse\s+0 inserted, 0 completed\s+\([1-9][0-9]* equal; 0 conflicts`).MatchString(second) {
			t.Fatalf("second backfill:\n%s", second)
		}
		if after := rawRows(t, dsn); after != before {
			t.Errorf("second backfill changed ClickHouse: %d → %d", before, after)
		}
	})
}

// TestArchiveCrash: replays with --archive killed with SIGKILL at random moments (the
// replay paced so that kills land in hour cuts and final writes too) and resumed, to a
// directory and to S3, and S3 killed mid-run and restarted: no partial or duplicate hour
// files, and the archive holds exactly the WAL's messages and the store's candles.
func TestArchiveCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, kills it and S3; skipped in -short mode")
	}
	srv := s3test.Start(t)
	s3Env(t)
	bin := quotesBinary(t)
	dir := t.TempDir()
	rec := archiveRecording(t, dir)
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	// 75 minutes of event time at 1000x: about 4.5 s per uninterrupted run (--sync none: a
	// paced sparse feed is a WAL append per message; SIGKILL keeps the page cache anyway).
	const full = 4500 * time.Millisecond
	base := []string{"replay", rec, "--progress", "never", "--speed", "1000x", "--sync", "none", "--checkpoint-every", "2m", "--batch", "500"}

	kills := func(t *testing.T, args ...string) {
		killed := 0
		for i := 0; i < 6; i++ {
			// start-up, then within a fifth of a run: several kills before it completes
			d := 100*time.Millisecond + time.Duration(rng.Int64N(int64(full/5)))
			if killDuring(t, bin, d, args...) {
				killed++
			}
		}
		if killed < 3 {
			t.Fatalf("only %d runs were killed", killed)
		}
		t.Logf("killed %d times", killed)
	}

	t.Run("directory", func(t *testing.T) {
		data, arch := filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "archive")
		args := append(slices.Clone(base), "--data", data, "--archive", arch)
		kills(t, args...)
		mustExecute(t, args...)
		checkArchiveExact(t, openTestArchive(t, arch, ""), data)
	})
	t.Run("s3 kill -9", func(t *testing.T) {
		data, target := filepath.Join(t.TempDir(), "data"), "s3://"+s3test.Bucket+"/crash"
		args := append(slices.Clone(base), "--data", data, "--archive", target, "--s3-endpoint", srv.Endpoint)
		kills(t, args...)
		mustExecute(t, args...)
		checkArchiveExact(t, openTestArchive(t, target, srv.Endpoint), data)
	})
	t.Run("s3 down", func(t *testing.T) {
		// S3 killed early in a run, back only after the input is done (so the hour cut
		// fails): the replay does not stall, and its final write waits for S3 within
		// --sink-timeout (or the re-run completes it).
		data, target := filepath.Join(t.TempDir(), "data"), "s3://"+s3test.Bucket+"/outage"
		args := append(slices.Clone(base), "--data", data, "--archive", target, "--s3-endpoint", srv.Endpoint)
		cmd := exec.Command(bin, append(args, "--sink-timeout", "30s")...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		srv.Kill()
		sc := bufio.NewScanner(stdout)
		var summary strings.Builder
		for sc.Scan() {
			summary.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "elapsed ") {
				break
			}
		}
		srv.Restart(t)
		for sc.Scan() {
			summary.WriteString(sc.Text() + "\n")
		}
		if err := cmd.Wait(); err != nil {
			t.Logf("replay with S3 down: %v (the re-run completes it)\n%s", err, summary.String())
		}
		// (the S3 client retries internally, so the cut may wait for S3 rather than fail)
		t.Logf("replay with S3 down:\n%s", summary.String())
		mustExecute(t, args...)
		checkArchiveExact(t, openTestArchive(t, target, srv.Endpoint), data)
	})
}
