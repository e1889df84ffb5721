package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNoSilentSuccess: inputs that cannot be what the user meant fail loudly, with the
// right exit code, and a usage error creates nothing.
func TestNoSilentSuccess(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.jsonl")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "binary.jsonl")
	junk := bytes.Repeat([]byte("\x7fELF\x02\x01\x01\x00 not a recording\n"), 200)
	if err := os.WriteFile(binary, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	mostlyBad := filepath.Join(dir, "mostly-bad.jsonl")
	good := `{"ts":"2026-11-26T13:00:00Z","type":"ADD","data":{"isin":"US0378331005","description":"Apple"}}` + "\n"
	if err := os.WriteFile(mostlyBad, []byte(good+strings.Repeat("garbage\n", 3)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		errText string
		absent  string // a path that must not exist afterwards
	}{
		{"missing recording", []string{"replay", filepath.Join(dir, "nope.jsonl"), "--data", filepath.Join(dir, "d1")}, 2, "no such file", filepath.Join(dir, "d1")},
		{"empty recording", []string{"replay", empty, "--data", filepath.Join(dir, "d2")}, 2, "empty file", filepath.Join(dir, "d2")},
		{"not a recording", []string{"replay", binary, "--data", filepath.Join(dir, "d3"), "--progress", "never"}, 1, "no message accepted", ""},
		{"mostly rejected", []string{"replay", mostlyBad, "--data", filepath.Join(dir, "d4"), "--progress", "never"}, 1, "more than --max-reject-ratio", ""},
		{"ingest from http://", []string{"ingest", "--source", "http://127.0.0.1:1", "--data", filepath.Join(dir, "d5")}, 2, "want a ws:// or wss:// URL", filepath.Join(dir, "d5")},
		{"ingest without host", []string{"ingest", "--source", "ws://", "--data", filepath.Join(dir, "d6")}, 2, "with a host", filepath.Join(dir, "d6")},
		{"negative group interval", []string{"ingest", "--source", "ws://127.0.0.1:1", "--data", filepath.Join(dir, "d8"), "--group-interval", "-1ms"}, 2, "--group-interval -1ms", filepath.Join(dir, "d8")},
		{"backfill without data", []string{"backfill", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z", "--data", filepath.Join(dir, "d7")}, 2, "no data directory", filepath.Join(dir, "d7")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			code := run(ctx, tc.args, &out, &errOut)
			if code != tc.code || !strings.Contains(errOut.String(), tc.errText) {
				t.Errorf("exit %d, want %d with %q:\n%s%s", code, tc.code, tc.errText, out.String(), errOut.String())
			}
			if tc.absent != "" {
				if _, err := os.Stat(tc.absent); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s was created: %v", tc.absent, err)
				}
			}
		})
	}
}

// TestSettingsRecorded: the settings that change derived results are recorded with the
// data; a different value later is a usage error naming it, --reset-settings proceeds, and
// query (which binds no settings) uses the recorded ones.
func TestSettingsRecorded(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	mustExecute(t, "replay", "../../testdata/rules/gaps.jsonl", "--data", data, "--progress", "never", "--grace", "30s")
	// not given: the recorded value holds
	mustExecute(t, "replay", "../../testdata/rules/gaps.jsonl", "--data", data, "--progress", "never")
	_, errOut, code := execute(t, "replay", "../../testdata/rules/gaps.jsonl", "--data", data, "--progress", "never", "--grace", "5s")
	if code != 2 || !strings.Contains(errOut, "--grace 5s") || !strings.Contains(errOut, "30s recorded") || !strings.Contains(errOut, "--reset-settings") {
		t.Errorf("different --grace: exit %d: %s", code, errOut)
	}
	_, errOut, code = execute(t, "backfill", "--from", "2026-01-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z", "--data", data, "--hot-window", "1m")
	if code != 2 || !strings.Contains(errOut, "--hot-window 1m0s") {
		t.Errorf("backfill with a different --hot-window: exit %d: %s", code, errOut)
	}
	mustExecute(t, "query", "instruments", "--data", data)
	mustExecute(t, "replay", "../../testdata/rules/gaps.jsonl", "--data", data, "--progress", "never", "--grace", "5s", "--reset-settings")
	b, err := os.ReadFile(filepath.Join(data, "settings.json"))
	if err != nil || !strings.Contains(string(b), `"grace": "5s"`) {
		t.Errorf("settings.json after --reset-settings: %s %v", b, err)
	}
	if out, _, _ := execute(t, "query", "--help"); strings.Contains(out, "--grace") {
		t.Error("query --help shows --grace")
	}
	if out, _, _ := execute(t, "serve", "--help"); strings.Contains(out, "--sync") || strings.Contains(out, "--wal-retention") {
		t.Error("serve --help shows WAL flags")
	}
}
