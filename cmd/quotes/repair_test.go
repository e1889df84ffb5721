package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/quotesdev/quotes/internal/chtest"
)

// splitRecording writes the first share of the lines of rec to part1 and the rest to part2.
func splitRecording(t *testing.T, rec string, share float64) (string, string) {
	t.Helper()
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	n := int(float64(len(lines)) * share)
	p1, p2 := rec+".1", rec+".2"
	if err := os.WriteFile(p1, []byte(strings.Join(lines[:n], "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p2, []byte(strings.Join(lines[n:], "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p1, p2
}

func rawCount(t *testing.T, dsn string) uint64 {
	t.Helper()
	n, err := chSink(t, dsn).RawRows(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBackfillRepair: two data directories replay the same recording into one ClickHouse
// database, which then counts every candle twice. backfill reports the conflicts (exit 1);
// backfill --repair from one of them makes ClickHouse equal its embedded store; a second
// run changes nothing; and later deliveries (the rest of the feed, late corrections of
// repaired minutes included) stay exactly-once.
func TestBackfillRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with a ClickHouse server; skipped in -short mode")
	}
	srv := chtest.Start(t)
	dir := t.TempDir()
	part1, part2 := splitRecording(t, chRecording(t, dir, 150, 8), 0.6)
	dsn := srv.DSNFor(srv.Database(t))
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, data := range []string{a, b} {
		mustExecute(t, "replay", part1, "--data", data, "--progress", "never", "--clickhouse", dsn, "--sink-flush-items", "3000")
	}
	span := []string{"backfill", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--data", a, "--clickhouse", dsn}

	out, errOut, code := execute(t, span...)
	if code != 1 || !regexp.MustCompile(`ClickHouse holds [1-9][0-9]* candles the wal does not explain \(first: [A-Z0-9]{12} `).MatchString(errOut) ||
		!strings.Contains(errOut, "--repair") {
		t.Fatalf("backfill of a doubled database: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code := execute(t, "backfill", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--data", a, "--repair"); code != 2 || !strings.Contains(errOut, "--repair needs --clickhouse") {
		t.Errorf("--repair without --clickhouse: exit %d, %s", code, errOut)
	}

	repair := append(span, "--repair")
	first := mustExecute(t, repair...)
	if !regexp.MustCompile(`clickhouse repair\s+[1-9][0-9]* rewritten, 0 removed`).MatchString(first) {
		t.Fatalf("backfill --repair:\n%s", first)
	}
	t.Logf("backfill --repair:\n%s", first)
	checkClickHouseEqualsStore(t, a, dsn)

	rows := rawCount(t, dsn)
	second := mustExecute(t, repair...)
	if !regexp.MustCompile(`clickhouse\s+0 inserted, 0 completed\s+\([1-9][0-9]* equal; 0 conflicts, 0 candles`).MatchString(second) ||
		!regexp.MustCompile(`clickhouse repair\s+0 rewritten, 0 removed`).MatchString(second) {
		t.Fatalf("second backfill --repair:\n%s", second)
	}
	if after := rawCount(t, dsn); after != rows {
		t.Errorf("second backfill --repair changed ClickHouse: %d → %d rows", rows, after)
	}

	// The rest of the feed: its first quotes are late for minutes the repair rewrote.
	out = mustExecute(t, "replay", part2, "--data", a, "--progress", "never", "--clickhouse", dsn, "--sink-flush-items", "3000")
	if !lateRE.MatchString(out) {
		t.Fatalf("the rest of the feed has no late corrections:\n%s", out)
	}
	checkClickHouseEqualsStore(t, a, dsn)
	// re-running a finished replay delivers nothing twice
	rows = rawCount(t, dsn)
	mustExecute(t, "replay", part1, part2, "--data", a, "--progress", "never", "--clickhouse", dsn)
	if after := rawCount(t, dsn); after != rows {
		t.Errorf("re-running the finished replays changed ClickHouse: %d → %d rows", rows, after)
	}
	checkClickHouseEqualsStore(t, a, dsn)
}
