package wal

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/quotesdev/quotes/feed"
)

// TestOpenAfterCrashLeftEmptyMemtable: a kill -9 right after Badger created a memtable file
// leaves it empty; Open must still succeed and keep every record (Badger issue #2207).
func TestOpenAfterCrashLeftEmptyMemtable(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append([]feed.Message{{TS: 1, Kind: KindTick}, {TS: 2, Kind: KindTick}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00099.mem"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = Open(DefaultOptions(dir))
	if err != nil {
		t.Fatalf("open with an empty memtable file: %v", err)
	}
	defer l.Close()
	if got := l.LastSeq(); got != 2 {
		t.Fatalf("LastSeq %d, want 2", got)
	}
}
