package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// replayRule replays one of testdata/rules into a fresh data directory.
func replayRule(t *testing.T, name string) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	mustExecute(t, "replay", "../../testdata/rules/"+name+".jsonl", "--data", data, "--progress", "never")
	return data
}

func TestQueryHot(t *testing.T) {
	data := replayRule(t, "hot")

	var all []map[string]any
	if err := json.Unmarshal([]byte(mustExecute(t, "query", "hot", "--data", data, "--format", "json")), &all); err != nil {
		t.Fatal(err)
	}
	var ids []float64
	for _, e := range all {
		ids = append(ids, e["id"].(float64))
	}
	if len(ids) != 3 || ids[0] != 5 || ids[1] != 9 || ids[2] != 13 {
		t.Errorf("event ids %v, want [5 9 13] (the WAL sequences of the triggering quotes)", ids)
	}

	out := mustExecute(t, "query", "hot", "--data", data, "--since", "2026-11-26T13:10:00Z", "--format", "json")
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 2 {
		t.Errorf("--since 13:10: got %d events (%v), want 2:\n%s", len(all), err, out)
	}

	table := mustExecute(t, "query", "hot", "--data", data)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "HOT000000001") || !strings.Contains(lines[1], "10.000001") {
		t.Errorf("table output:\n%s", table)
	}
}

// TestQueryHotFollow: --follow prints the stored events one JSON object per line, then keeps
// waiting until interrupted, and exits 0.
func TestQueryHotFollow(t *testing.T) {
	data := replayRule(t, "hot")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"query", "hot", "--follow", "--format", "json", "--data", data}, &out, &errOut)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("--follow printed %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil || e["isin"] != "HOT000000001" {
			t.Errorf("line %q is not a hot event object: %v", line, err)
		}
	}
}

// TestQueryErrors: bad input exits 2 and names the problem; an unknown or deleted ISIN
// exits 1 and says so (SPEC §5, §8).
func TestQueryErrors(t *testing.T) {
	data := replayRule(t, "registry")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"query", "candles", "not-an-isin"}, 2, `ISIN "not-an-isin"`},
		{[]string{"query", "candles", "dupadd000001"}, 2, "ISIN"},
		{[]string{"query", "candles", "DUPADD000001", "--from", "yesterday", "--to", "2026-11-26T14:00:00Z"}, 2, "--from"},
		{[]string{"query", "candles", "DUPADD000001", "--from", "2026-11-26T14:00:00Z"}, 2, "--from and --to go together"},
		{[]string{"query", "candles", "DUPADD000001", "--from", "2026-11-26T14:00:00Z", "--to", "2026-11-26T13:00:00Z"}, 2, "not after"},
		{[]string{"query", "candles", "DUPADD000001", "--last", "-5m"}, 2, "--last"},
		{[]string{"query", "candles", "DUPADD000001", "--format", "xml"}, 2, "--format"},
		{[]string{"query", "hot", "--since", "noon"}, 2, "--since"},
		{[]string{"query", "candles", "NEVERADDED01"}, 1, "unknown or deleted instrument"},
		{[]string{"query", "candles", "DELETED00001"}, 1, "unknown or deleted instrument"},
		{[]string{"query", "instruments", "--data", filepath.Join(t.TempDir(), "missing")}, 1, "no data directory"},
	} {
		args := tc.args
		if !strings.Contains(strings.Join(args, " "), "--data") {
			args = append(args, "--data", data)
		}
		_, errOut, code := execute(t, args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("quotes %s: exit %d %q, want exit %d mentioning %q", strings.Join(args, " "), code, errOut, tc.code, tc.msg)
		}
	}
}

// TestReplayOversizedLine: a line longer than the 1 MiB limit is rejected as oversized and
// the replay goes on.
func TestReplayOversizedLine(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "big.jsonl")
	content := `{"ts":"2026-11-26T13:00:00Z","type":"ADD","data":{"isin":"OVERSIZED001","description":"x"}}` + "\n" +
		`{"ts":"2026-11-26T13:00:01Z","type":"ADD","data":{"isin":"OVERSIZED002","description":"` + strings.Repeat("y", 2<<20) + `"}}` + "\n" +
		`{"ts":"2026-11-26T13:00:02Z","type":"QUOTE","data":{"isin":"OVERSIZED001","price":12.5}}` + "\n"
	if err := os.WriteFile(rec, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustExecute(t, "replay", rec, "--data", filepath.Join(dir, "data"), "--progress", "never")
	if !regexp.MustCompile(`(?m)^  oversized +1 *$`).MatchString(out) || !strings.Contains(out, "quotes aggregated          1") {
		t.Errorf("summary does not count the oversized line or lost the quote after it:\n%s", out)
	}
}
