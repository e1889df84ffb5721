package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/internal/chtest"
)

// TestSinksListRemove: a replay with --clickhouse registers the sink; a later replay
// without it leaves a backlog, which `sinks list` shows (stale with a short --sink-stale);
// `sinks remove` forgets it; a data directory held by another process is named.
func TestSinksListRemove(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with a ClickHouse server; skipped in -short mode")
	}
	srv := chtest.Start(t)
	db := srv.Database(t)
	data := filepath.Join(t.TempDir(), "data")
	mustExecute(t, "replay", "../../testdata/rules/hot.jsonl", "--data", data, "--progress", "never", "--clickhouse", srv.DSNFor(db))

	out := mustExecute(t, "sinks", "list", "--data", data)
	if !regexp.MustCompile(`(?m)^NAME +TARGET +DELIVERED +BACKLOG +LAST RUN +LAST SUCCESS +STATE\nclickhouse +clickhouse://` +
		regexp.QuoteMeta(srv.Addr+"/"+db) + ` +seq [1-9][0-9]* +0 +20[0-9-]+T[0-9:]+Z +20[0-9-]+T[0-9:]+Z +ok$`).MatchString(out) {
		t.Fatalf("sinks list after a delivery:\n%s", out)
	}

	// Not configured in the next run: the outbox keeps its backlog.
	mustExecute(t, "replay", "../../testdata/rules/gaps.jsonl", "--data", data, "--progress", "never")
	var sinks []struct {
		Name    string  `json:"name"`
		Backlog int     `json:"backlog"`
		LastRun *string `json:"lastRun"`
		Stale   bool    `json:"stale"`
	}
	out = mustExecute(t, "sinks", "list", "--data", data, "--format", "json")
	if err := json.Unmarshal([]byte(out), &sinks); err != nil || len(sinks) != 1 || sinks[0].Backlog == 0 || sinks[0].Stale || sinks[0].LastRun == nil {
		t.Fatalf("sinks list --format json with a backlog (%v):\n%s", err, out)
	}
	if out := mustExecute(t, "sinks", "list", "--data", data, "--sink-stale", "1ns"); !regexp.MustCompile(`(?m)^clickhouse .* stale$`).MatchString(out) {
		t.Errorf("sinks list --sink-stale 1ns:\n%s", out)
	}

	// Held by a running process: named, not a bare lock error.
	eopts := engine.DefaultOptions(data)
	eopts.Announce = &engine.Running{Command: "ingest"}
	eng, err := engine.Open(eopts)
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code := execute(t, "sinks", "remove", "clickhouse", "--data", data)
	eng.Close()
	if code != 1 || !strings.Contains(errOut, "in use by `quotes ingest` (pid ") || !strings.Contains(errOut, "stop it") {
		t.Errorf("sinks remove on a held directory: exit %d, %s", code, errOut)
	}

	if out := mustExecute(t, "sinks", "remove", "clickhouse", "--data", data); !strings.Contains(out, "sink clickhouse removed") {
		t.Errorf("sinks remove: %s", out)
	}
	if out := mustExecute(t, "sinks", "list", "--data", data); !strings.Contains(out, "no sinks registered") {
		t.Errorf("sinks list after remove:\n%s", out)
	}
	if _, errOut, code := execute(t, "sinks", "remove", "clickhouse", "--data", data); code != 2 || !strings.Contains(errOut, "no such sink") {
		t.Errorf("second sinks remove: exit %d, %s", code, errOut)
	}
	if _, errOut, code := execute(t, "sinks", "list", "--data", filepath.Join(t.TempDir(), "none")); code != 2 || !strings.Contains(errOut, "no data directory") {
		t.Errorf("sinks list without a data directory: exit %d, %s", code, errOut)
	}
}
