package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/schema"
)

// httpBody GETs url and returns its body (fatal unless 200).
func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	return string(b)
}

// hotWithoutIDs returns the hot events of a JSON array without their (per-instance) ids,
// sorted.
func hotWithoutIDs(t *testing.T, body string) []string {
	t.Helper()
	var evs []map[string]any
	if err := json.Unmarshal([]byte(body), &evs); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	out := make([]string, len(evs))
	for i, e := range evs {
		delete(e, "id")
		b, _ := json.Marshal(e)
		out[i] = string(b)
	}
	slices.Sort(out)
	return out
}

// replicaCandles returns the merged candles of one server's local database.
func replicaCandles(t *testing.T, dsn string) map[aggregate.Key]aggregate.Candle {
	t.Helper()
	out := map[aggregate.Key]aggregate.Candle{}
	if err := chSink(t, dsn).MergedCandles(context.Background(), 0, 1<<62, func(c aggregate.Candle) error { out[c.Key] = c; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestShardedCluster (SPEC §11) on a local cluster of ZooKeeper + 2 shards × 2 replicas:
// schema apply --cluster is idempotent; a recording replayed by one instance, and by two
// --shard instances into the cluster — one ClickHouse replica of shard 0 killed -9 mid-replay
// (the writer fails over to the other) and shard 1's quotes process killed -9 and restarted
// — gives the same query output through the Distributed tables and through serve --shards
// as the one instance; the replicas converge to the same rows.
func TestShardedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with ZooKeeper and four ClickHouse servers; skipped in -short mode")
	}
	c := chtest.StartCluster(t, 2, 2)
	bin := quotesBinary(t)
	dir := t.TempDir()
	const db = "q"
	for run := 0; run < 2; run++ {
		out := mustExecute(t, "schema", "apply", "--cluster", c.Name, "--clickhouse", c.Nodes[1][1].DSNFor(db))
		if strings.Count(out, "schema version 2 in place") != 4 {
			t.Fatalf("schema apply --cluster (run %d):\n%s", run, out)
		}
	}
	rec := chRecording(t, dir, 150, 8)

	one := filepath.Join(dir, "one")
	// a 2 % threshold: hot events from a small recording
	mustExecute(t, "replay", rec, "--data", one, "--progress", "never", "--hot-threshold", "2")

	// shard 0: its first replica (the DSN's first host) killed mid-replay, back later
	s0 := filepath.Join(dir, "s0")
	args0 := []string{"replay", rec, "--shard", "0/2", "--data", s0, "--progress", "never", "--clickhouse", c.ShardDSN(0, db),
		"--sink-flush-items", "500", "--batch", "500", "--speed", "200x", "--sink-max-backoff", "300ms", "--hot-threshold", "2"}
	cmd0 := exec.Command(bin, args0...)
	var out0 strings.Builder
	cmd0.Stdout, cmd0.Stderr = &out0, &out0
	if err := cmd0.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(800 * time.Millisecond)
	victim := c.Nodes[0][0]
	if err := syscall.Kill(victim.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.Kill() // reap it
	// shard 1: its quotes process killed -9 twice, then run to the end
	s1 := filepath.Join(dir, "s1")
	args1 := []string{"replay", rec, "--shard", "1/2", "--data", s1, "--progress", "never", "--clickhouse", c.ShardDSN(1, db),
		"--sink-flush-items", "500", "--batch", "500", "--speed", "200x", "--hot-threshold", "2"}
	killed := 0
	for _, d := range []time.Duration{700 * time.Millisecond, 500 * time.Millisecond} {
		if killDuring(t, bin, d, args1...) {
			killed++
		}
	}
	if killed == 0 {
		t.Fatal("shard 1's replay was never killed")
	}
	mustExecute(t, args1...)
	wait0 := make(chan error, 1)
	go func() { wait0 <- cmd0.Wait() }()
	select {
	case err := <-wait0:
		if err != nil {
			t.Fatalf("shard 0's replay with a replica down: %v\n%s", err, out0.String())
		}
	case <-time.After(2 * time.Minute):
		cmd0.Process.Kill()
		<-wait0
		t.Fatalf("shard 0's replay with a replica down did not end:\n%s", out0.String())
	}
	if !regexp.MustCompile(`sink clickhouse: [1-9][0-9]* items delivered`).MatchString(out0.String()) {
		t.Fatalf("shard 0's replay:\n%s", out0.String())
	}
	victim.Restart(t)

	// the replicas converge
	ctx := context.Background()
	for k, row := range c.Nodes {
		for _, s := range row {
			conn, _, err := schema.Open(ctx, s.DSNFor(db))
			if err != nil {
				t.Fatal(err)
			}
			for _, table := range []string{"candles", "instruments"} {
				if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+db+"."+table); err != nil {
					t.Fatalf("sync replica %s: %v", s.Addr, err)
				}
			}
			conn.Close()
		}
		a, b := replicaCandles(t, row[0].DSNFor(db)), replicaCandles(t, row[1].DSNFor(db))
		if len(a) == 0 || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("shard %d: the replicas differ: %d and %d candles", k, len(a), len(b))
		}
		data := []string{s0, s1}[k]
		checkClickHouseEqualsStore(t, data, row[1].DSNFor(db)) // nothing lost or doubled
	}

	// query through the Distributed tables = the one instance
	cluster := c.AllDSN(schema.ClusterDatabase(db))
	insts := mustExecute(t, "query", "instruments", "--data", one, "--format", "json")
	if got := mustExecute(t, "query", "instruments", "--clickhouse", cluster, "--format", "json"); got != insts {
		t.Fatalf("instruments through the Distributed tables differ:\n%s\nwant\n%s", got, insts)
	}
	var list []struct {
		ISIN string `json:"isin"`
	}
	if err := json.Unmarshal([]byte(insts), &list); err != nil || len(list) < 10 {
		t.Fatalf("instruments: %v, %d", err, len(list))
	}
	isins := []string{}
	for i := 0; i < len(list); i += len(list) / 8 {
		isins = append(isins, list[i].ISIN)
	}
	ranges := [][]string{{"--last", "30m"}, {"--from", "2025-12-31T23:58:00Z", "--to", "2026-01-01T00:20:00Z"}}
	for _, isin := range isins {
		for _, r := range ranges {
			q := append([]string{"query", "candles", isin, "--format", "json"}, r...)
			want := mustExecute(t, append(q, "--data", one)...)
			if got := mustExecute(t, append(q, "--clickhouse", cluster)...); got != want {
				t.Errorf("%v through the Distributed tables:\n%s\nwant\n%s", q, got, want)
			}
		}
	}

	// serve --shards = serve of the one instance
	serveAt := func(args ...string) string {
		addr := freeAddr(t)
		startProcess(t, bin, append([]string{"serve", "--http", addr}, args...)...)
		base := "http://" + addr
		waitFor(t, 30*time.Second, "serve "+strings.Join(args, " "), func() bool {
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		return base
	}
	ref := serveAt("--data", one)
	b0, b1 := serveAt("--data", s0), serveAt("--data", s1)
	fr := serveAt("--shards", b0+","+b1)
	for _, path := range []string{"/instruments", "/instruments?limit=20&offset=10&sort=-price", "/instruments?q=a&sort=description"} {
		if got, want := httpBody(t, fr+path), httpBody(t, ref+path); got != want {
			t.Errorf("GET %s through the front:\n%s\nwant\n%s", path, got, want)
		}
	}
	for _, isin := range isins {
		for _, q := range []string{"/candles?last=30m", "/candles?from=2025-12-31T23:58:00Z&to=2026-01-01T00:20:00Z"} {
			path := "/instruments/" + isin + q
			if got, want := httpBody(t, fr+path), httpBody(t, ref+path); got != want {
				t.Errorf("GET %s through the front:\n%s\nwant\n%s", path, got, want)
			}
		}
	}
	got, want := hotWithoutIDs(t, httpBody(t, fr+"/hot?format=json")), hotWithoutIDs(t, httpBody(t, ref+"/hot?format=json"))
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("hot events through the front: %d, want %d (or different)", len(got), len(want))
	}
}
