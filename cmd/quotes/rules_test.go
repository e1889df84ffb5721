package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

var update = flag.Bool("update", false, "rewrite golden files")

// execute runs the quotes command line in-process and returns stdout, stderr and the exit
// code.
func execute(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// mustExecute is execute that fails the test on a non-zero exit code.
func mustExecute(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, code := execute(t, args...)
	if code != 0 {
		t.Fatalf("quotes %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

var elapsedLine = regexp.MustCompile(`(?m)^elapsed .*\n`)

// TestRulesGolden replays each hand-written recording of testdata/rules (one per SPEC §4
// rule) and compares everything derived — the replay summary, the instrument list, every
// stored candle (deleted incarnations included), the candle queries of the active
// instruments and the hot events — with its golden file.
func TestRulesGolden(t *testing.T) {
	files, err := filepath.Glob("../../testdata/rules/*.jsonl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings in testdata/rules: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".jsonl")
		t.Run(name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			got := "== replay summary\n" + elapsedLine.ReplaceAllString(
				mustExecute(t, "replay", file, "--data", data, "--progress", "never", "--max-reject-ratio", "1"), "")
			got += dumpData(t, data, 0)
			golden := strings.TrimSuffix(file, ".jsonl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run go test ./cmd/quotes -run TestRulesGolden -update to accept):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// dumpData prints everything a data directory holds, through the query commands (candles
// of the first maxQueries active instruments; 0: all) and directly from the store.
func dumpData(t testing.TB, data string, maxQueries int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("== query instruments --format json\n")
	b.WriteString(mustExecute(t, "query", "instruments", "--data", data, "--format", "json"))
	b.WriteString("== query instruments\n")
	instruments := mustExecute(t, "query", "instruments", "--data", data)
	b.WriteString(instruments)
	for i, line := range strings.Split(instruments, "\n")[1:] {
		isin, _, _ := strings.Cut(line, " ")
		if len(isin) != 12 || maxQueries > 0 && i >= maxQueries {
			continue
		}
		fmt.Fprintf(&b, "== query candles %s --last 30m --format csv\n", isin)
		b.WriteString(mustExecute(t, "query", "candles", isin, "--data", data, "--format", "csv"))
	}

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
	b.WriteString("== stored candles (ISIN, incarnation, minute)\n")
	err = p.Store().ScanCandles(func(c aggregate.Candle) error {
		fmt.Fprintf(&b, "%s inc=%d %s O=%s H=%s L=%s C=%s n=%d\n", c.ISIN, c.Incarnation,
			time.Unix(0, c.Minute).UTC().Format(time.RFC3339), c.Open, c.High, c.Low, c.Close, c.Quotes)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("== hot events\n")
	events, err := p.HotEvents(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		b.Write(e.AppendJSON(nil))
		b.WriteByte('\n')
	}
	return b.String()
}
