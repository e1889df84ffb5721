package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quotesdev/quotes/internal/chtest"
)

var updateSchemaGolden = flag.Bool("update-schema-golden", false, "rewrite testdata/schema_print.golden")

// execSchema runs `quotes <args>` through run and returns the exit code, stdout and stderr.
func execSchema(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSchemaPrintGolden(t *testing.T) {
	code, out, stderr := execSchema("schema", "print", "--clickhouse", "clickhouse://127.0.0.1:9000/quotes")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	golden := filepath.Join("testdata", "schema_print.golden")
	if *updateSchemaGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestSchemaPrintGolden -update-schema-golden)", err)
	}
	if out != string(want) {
		t.Errorf("schema print differs from %s (rerun with -update-schema-golden if intended):\n%s", golden, out)
	}
	// --database wins over the DSN's; no DSN means "default".
	_, out, _ = execSchema("schema", "print", "--clickhouse", "clickhouse://127.0.0.1:9000/quotes", "--database", "other")
	if !strings.Contains(out, "CREATE DATABASE IF NOT EXISTS `other`") || strings.Contains(out, "`quotes`") {
		t.Errorf("--database other: %s", out)
	}
	_, out, _ = execSchema("schema", "print")
	if !strings.Contains(out, "CREATE TABLE IF NOT EXISTS `default`.candles\n") {
		t.Errorf("no DSN: %s", out)
	}
}

func TestSchemaUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"schema", "apply"},
		{"schema", "print", "--clickhouse", "http://127.0.0.1:8123/default"},
		{"schema", "print", "--clickhouse", "clickhouse://[::1"},
		{"schema", "print", "extra"},
	} {
		code, _, stderr := execSchema(args...)
		if code != 2 || !strings.Contains(stderr, "quotes:") {
			t.Errorf("%v: exit %d, stderr %q; want a usage error (exit 2)", args, code, stderr)
		}
	}
}

func TestSchemaApply(t *testing.T) {
	srv := chtest.Start(t)
	dsn := srv.DSNFor("quotes_cli")
	code, out, stderr := execSchema("schema", "apply", "--clickhouse", dsn)
	if code != 0 || !strings.Contains(out, "applied to database quotes_cli") {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = execSchema("schema", "apply", "--clickhouse", dsn)
	if code != 0 || !strings.Contains(out, "already in place") {
		t.Fatalf("second apply: exit %d\n%s%s", code, out, stderr)
	}
	t.Setenv("QUOTES_CLICKHOUSE", srv.DSNFor("quotes_env"))
	code, out, stderr = execSchema("schema", "apply")
	if code != 0 || !strings.Contains(out, "quotes_env") {
		t.Fatalf("apply from QUOTES_CLICKHOUSE: exit %d\n%s%s", code, out, stderr)
	}
	srv.Kill()
	code, _, stderr = execSchema("schema", "apply", "--clickhouse", dsn)
	if code != 1 || !strings.Contains(stderr, srv.Addr) {
		t.Fatalf("apply against a stopped server: exit %d, %q; want exit 1 naming the server", code, stderr)
	}
}
