package chtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/quotesdev/quotes/internal/chtest"
)

func open(t *testing.T, dsn string) clickhouse.Conn {
	t.Helper()
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestStartKillRestart(t *testing.T) {
	s := chtest.Start(t)
	t.Logf("server %s (http %s) answered after %v", s.Addr, s.HTTPAddr, s.StartupTime)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := open(t, s.DSN)
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		t.Fatalf("SELECT version(): %v", err)
	}
	t.Logf("version %s", v)
	if err := conn.Exec(ctx, "CREATE TABLE t (x UInt64) ENGINE = MergeTree() ORDER BY x"); err != nil {
		t.Fatal(err)
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO t")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []uint64{1, 2} {
		if err := b.Append(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if s.Running() {
		t.Fatal("Running after Kill")
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("ping answered after Kill")
	}
	s.Restart(t)
	t.Logf("restarted after %v", s.StartupTime)
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM t").Scan(&n); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if n != 2 {
		t.Fatalf("after restart: %d rows, want 2", n)
	}
}
