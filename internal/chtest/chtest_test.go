package chtest_test

import (
	"context"
	"strings"
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
	// (INSERT … SELECT: 18.16 cannot take clickhouse-go's batches, see package export.)
	if err := conn.Exec(ctx, "INSERT INTO t SELECT number + 1 FROM system.numbers LIMIT 2"); err != nil {
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

func TestShared(t *testing.T) {
	var sh chtest.Shared
	t.Cleanup(sh.Stop) // runs last, after the connections are closed
	a := sh.Get(t)
	b := sh.Get(t)
	if a != b {
		t.Fatal("Shared.Get started a second server")
	}
	db1, db2 := a.Database(t), a.Database(t)
	if db1 == db2 || !strings.HasPrefix(db1, "t_testshared_") {
		t.Fatalf("Database: %q, %q", db1, db2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := open(t, a.DSN)
	if err := conn.Exec(ctx, "CREATE DATABASE "+db1); err != nil {
		t.Fatal(err)
	}
	conn2 := open(t, a.DSNFor(db1))
	var name string
	if err := conn2.QueryRow(ctx, "SELECT currentDatabase()").Scan(&name); err != nil || name != db1 {
		t.Fatalf("DSNFor(%s): current database %q, %v", db1, name, err)
	}
}
