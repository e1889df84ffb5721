package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/simulator"
	"github.com/quotesdev/quotes/wal"
)

func testDataOptions(dir string) dataOptions {
	return dataOptions{dir: dir, sync: "none", grace: aggregate.DefaultGrace, hotWindow: 5 * time.Minute, checkpoint: 5 * time.Minute}
}

func rawWAL(t *testing.T, l *wal.Log) []feed.Message {
	t.Helper()
	var out []feed.Message
	r := l.NewReader(1)
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

// TestArchiveReplay runs a recording through the pipeline with an archive to a directory,
// then replays the archive into a fresh data directory, in two resumable steps: the raw
// messages arrive in their original order, once.
func TestArchiveReplay(t *testing.T) {
	opts := simulator.DefaultOptions()
	opts.Instruments, opts.QuoteInterval, opts.Duration, opts.Speed, opts.Churn = 20, 5*time.Second, 80*time.Minute, simulator.SpeedMax, 0.02
	var rec bytes.Buffer
	if _, err := simulator.Record(context.Background(), &rec, opts, nil); err != nil {
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
	logger := slog.New(slog.DiscardHandler)
	archiveDir := filepath.Join(t.TempDir(), "archive")

	// The original run, archiving.
	a := testDataOptions(filepath.Join(t.TempDir(), "a"))
	logA, pA, err := a.open(logger)
	if err != nil {
		t.Fatal(err)
	}
	ao := archiveOptions{target: archiveDir}
	ra, err := ao.start(logA, a.dir, a.grace, clock.New(), logger)
	if err != nil {
		t.Fatal(err)
	}
	w := pA.NewWriter(2)
	for i := 0; i < len(msgs); i += 1000 {
		if err := w.Write(msgs[i:min(i+1000, len(msgs))], "", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pA.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := ra.stop(time.Minute); err != nil {
		t.Fatal(err)
	}
	want := rawWAL(t, logA)
	pA.Close()
	logA.Close()

	// Replay the archive in two runs (the first stopped early by a failing count).
	b := testDataOptions(filepath.Join(t.TempDir(), "b"))
	for run := 0; run < 2; run++ {
		logB, pB, err := b.open(logger)
		if err != nil {
			t.Fatal(err)
		}
		w := pB.NewWriter(2)
		n := 0
		stop := errors.New("stop")
		count := func(m []feed.Message) { n += len(m) }
		wait := func(context.Context, []feed.Message) error {
			if run == 0 && n >= len(want)/2 {
				return stop
			}
			return nil
		}
		err = replayArchive(context.Background(), w, logB, archiveDir, export.S3Options{}, 500, wait, count)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if run == 0 && !errors.Is(err, stop) || run == 1 && err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if run == 1 {
			if err := pB.Finish(); err != nil {
				t.Fatal(err)
			}
			got := rawWAL(t, logB)
			if !slices.Equal(got, want) {
				t.Fatalf("replayed archive: %d messages, want %d (or different order)", len(got), len(want))
			}
		}
		pB.Close()
		logB.Close()
	}
	if !isArchiveSource(archiveDir) || isArchiveSource(a.dir) {
		t.Error("isArchiveSource")
	}
}
