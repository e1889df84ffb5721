package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/simulator"
	"github.com/quotesdev/quotes/wal"
)

// testOptions are engine options for a fresh directory under t.TempDir().
func testOptions(t *testing.T, name string) Options {
	opts := DefaultOptions(filepath.Join(t.TempDir(), name))
	opts.Sync = wal.SyncNone
	opts.Logger = slog.New(slog.DiscardHandler)
	return opts
}

func mustOpen(t *testing.T, opts Options) *Engine {
	t.Helper()
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// recording writes a simulated recording to a file and returns its path and messages.
func recording(t *testing.T, instruments int, d time.Duration, churn float64) (string, []feed.Message) {
	t.Helper()
	opts := simulator.DefaultOptions()
	opts.Instruments, opts.QuoteInterval, opts.Duration, opts.Speed, opts.Churn = instruments, 5*time.Second, d, simulator.SpeedMax, churn
	var rec bytes.Buffer
	if _, err := simulator.Record(context.Background(), &rec, opts, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "feed.jsonl")
	if err := os.WriteFile(path, rec.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	rr := feed.NewRecordingReader(&rec)
	var msgs []feed.Message
	for {
		var m feed.Message
		if err := rr.Next(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return path, msgs
}

// rawWAL returns the partner messages of e's WAL (no ticks).
func rawWAL(t *testing.T, e *Engine) []feed.Message {
	t.Helper()
	var out []feed.Message
	r := e.log.NewReader(1)
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Kind != wal.KindTick {
			out = append(out, rec.Message)
		}
	}
}

func replayFile(t *testing.T, e *Engine, path string, opts ReplayOptions) *ReplayStats {
	t.Helper()
	src, err := OpenFileSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	st, err := e.Replay(context.Background(), []Source{src}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestArchiveReplay runs a recording through an engine archiving to a directory, then
// replays the archive into a fresh engine in two resumable runs (the first canceled half
// way): the raw messages arrive in their original order, once.
func TestArchiveReplay(t *testing.T) {
	path, msgs := recording(t, 20, 80*time.Minute, 0.02)
	archiveDir := filepath.Join(t.TempDir(), "archive")
	oa := testOptions(t, "a")
	oa.Archive = archiveDir
	oa.SinkTimeout = time.Minute
	reg := prometheus.NewRegistry()
	oa.Registerer = reg
	a := mustOpen(t, oa)
	st := replayFile(t, a, path, ReplayOptions{Batch: 1000})
	if st.Messages != uint64(len(msgs)) || st.Resumed != 0 {
		t.Fatalf("replayed %d messages (resumed %d), want %d", st.Messages, st.Resumed, len(msgs))
	}
	want := rawWAL(t, a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// the archive's progress on /metrics: everything archived, no lag
	if got, err := testutil.GatherAndCount(reg, "quotes_archive_archived_seq", "quotes_archive_lag_records", "quotes_archive_files_total"); err != nil || got != 3 {
		t.Fatalf("archive metrics: %d series, %v", got, err)
	}
	if lag, ok := gauge(t, reg, "quotes_archive_lag_records", ""); !ok || lag != 0 {
		t.Errorf("archive lag %v (reported: %v) after Close, want 0", lag, ok)
	}
	if !IsArchiveDir(archiveDir) || IsArchiveDir(oa.Dir) || !IsDataDir(oa.Dir) {
		t.Fatal("IsArchiveDir/IsDataDir")
	}
	store, err := OpenArchive(archiveDir, oa.S3)
	if err != nil {
		t.Fatal(err)
	}
	ob := testOptions(t, "b")
	for run := 0; run < 2; run++ {
		b := mustOpen(t, ob)
		ctx, cancel := context.WithCancel(context.Background())
		batches := 0
		opts := ReplayOptions{Batch: 500, Progress: func(int64) {
			if batches++; run == 0 && batches*500 >= len(want)/2 {
				cancel()
			}
		}}
		st, err := b.Replay(ctx, []Source{NewArchiveSource(store)}, opts)
		cancel()
		switch {
		case run == 0 && !errors.Is(err, context.Canceled):
			t.Fatalf("run 0: %v, want canceled", err)
		case run == 1 && err != nil:
			t.Fatalf("run 1: %v", err)
		case run == 1 && st.Resumed != 1:
			t.Fatalf("run 1 resumed %d sources", st.Resumed)
		}
		if run == 1 {
			if got := rawWAL(t, b); !slices.Equal(got, want) {
				t.Fatalf("replayed archive: %d messages, want %d (or different order)", len(got), len(want))
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
