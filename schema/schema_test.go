package schema_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/schema"
)

func connect(t *testing.T, dsn string) (driver.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, db, err := schema.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, db
}

// tables returns name → SHOW CREATE TABLE of every table in db.
func tables(t *testing.T, conn driver.Conn, db string) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = '"+db+"' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	rows.Close()
	out := map[string]string{}
	for _, n := range names {
		var ddl string
		if err := conn.QueryRow(ctx, "SHOW CREATE TABLE "+schema.QuoteIdent(db)+"."+schema.QuoteIdent(n)).Scan(&ddl); err != nil {
			t.Fatalf("show create %s: %v", n, err)
		}
		out[n] = ddl
	}
	return out
}

func TestApplyTwiceIsNoOp(t *testing.T) {
	srv := chtest.Start(t)
	for _, db := range []string{"default", "quotes-test"} {
		conn, _ := connect(t, srv.DSN)
		ctx := context.Background()
		if err := schema.Apply(ctx, conn, db); err != nil {
			t.Fatalf("%s: first apply: %v", db, err)
		}
		first := tables(t, conn, db)
		for _, want := range []string{"candles", "candles_input", "candles_merged", "candles_mv", "instruments", "quotes_schema"} {
			if _, ok := first[want]; !ok {
				t.Errorf("%s: table %s missing after apply; have %v", db, want, first)
			}
		}
		if err := schema.Apply(ctx, conn, db); err != nil {
			t.Fatalf("%s: second apply: %v", db, err)
		}
		second := tables(t, conn, db)
		if fmt.Sprint(first) != fmt.Sprint(second) {
			t.Errorf("%s: second apply changed the schema:\n%v\n%v", db, first, second)
		}
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+schema.QuoteIdent(db)+".quotes_schema").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%s: %d version rows after two applies, want 1", db, n)
		}
		if err := schema.Check(ctx, conn, db); err != nil {
			t.Errorf("%s: check: %v", db, err)
		}
	}
}

func TestApplyRefusesNewerVersion(t *testing.T) {
	srv := chtest.Start(t)
	conn, db := connect(t, srv.DSN)
	ctx := context.Background()
	if err := schema.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO quotes_schema (version, applied_at) SELECT toUInt32(%d), now()", schema.Version+1)); err != nil {
		t.Fatal(err)
	}
	err := schema.Apply(ctx, conn, db)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("apply over a newer schema: %v, want an error naming the newer version", err)
	}
	if err := schema.Check(ctx, conn, db); err == nil {
		t.Fatal("check passed on a newer schema")
	}
}

func TestCheckWithoutSchema(t *testing.T) {
	srv := chtest.Start(t)
	conn, db := connect(t, srv.DSN)
	if err := schema.Check(context.Background(), conn, db); err == nil || !strings.Contains(err.Error(), "schema apply") {
		t.Fatalf("check of an empty database: %v, want a hint to run schema apply", err)
	}
}
