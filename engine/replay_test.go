package engine

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/feed"
)

// TestPacedBatches: a paced replay never puts messages more than 10 ms of wall time apart
// (1 s of event time at 100x) into one batch, and the pacer holds each batch until its
// first message is due.
func TestPacedBatches(t *testing.T) {
	f, err := os.Open("../testdata/rules/gaps.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	out := make(chan *fileBatch, 16)
	free := make(chan *fileBatch, 16)
	for i := 0; i < 16; i++ {
		free <- &fileBatch{}
	}
	mock := clock.NewMock()
	p := newPacer(mock, 100)
	go readBatches(ctx, feed.NewRecordingReader(f), 4096, p.span(), out, free)
	var batches [][]feed.Message
	for b := range out {
		batches = append(batches, append([]feed.Message(nil), b.msgs...))
	}
	if len(batches) != 5 {
		t.Fatalf("got %d batches, want 5 (gaps.jsonl has 6 timestamps; the 5th goes back in time and joins the 4th)", len(batches))
	}
	for _, b := range batches {
		if span := b[len(b)-1].TS - b[0].TS; span > int64(time.Second) {
			t.Errorf("a batch spans %s of event time", time.Duration(span))
		}
	}
	if err := p.wait(ctx, batches[0]); err != nil { // the first batch starts the clock
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.wait(ctx, batches[1]); close(done) }() // 30 s later in event time: 300 ms at 100x
	for i := 0; i < 29; i++ {
		mock.Add(10 * time.Millisecond)
		select {
		case <-done:
			t.Fatalf("released after %d ms, want 300 ms", (i+1)*10)
		default:
		}
	}
	mock.Add(20 * time.Millisecond)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("not released at 300 ms")
	}
}

// TestFileSourceTruncatedWhileRead: a recording cut short while it is being read stops
// the read with an error naming it, never with a crash, and never passes messages from
// past the cut on as if read.
func TestFileSourceTruncatedWhileRead(t *testing.T) {
	path, msgs := recording(t, 50, 3*time.Hour, 0)
	src, err := OpenFileSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const batch = 10 // many batches: the reader is at most ~18 ahead when the file is cut
	if len(msgs) < 100*batch {
		t.Fatalf("recording of %d messages: too short for this test", len(msgs))
	}
	got := 0
	err = src.Read(context.Background(), nil, batch, 0, func(b *Batch) error {
		if got == 0 {
			if err := os.Truncate(path, 4096); err != nil {
				return err
			}
		}
		got += len(b.Msgs)
		b.Release()
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Read of a recording truncated under it: %v after %d messages; want an error naming it", err, got)
	}
	if got >= len(msgs) {
		t.Fatalf("read all %d messages of a truncated recording", got)
	}
}

// TestReadMappedRecordingFault: reading a mapped recording whose file was truncated faults;
// readBatchesGuarded turns the fault into an error and closes its output.
func TestReadMappedRecordingFault(t *testing.T) {
	path, _ := recording(t, 50, time.Hour, 0)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	data, unmap, err := mapFile(f, st.Size())
	if err != nil {
		t.Skipf("no memory-mapped files here: %v", err)
	}
	defer unmap()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	out := make(chan *fileBatch, 16)
	free := make(chan *fileBatch, 16)
	for i := 0; i < 16; i++ {
		free <- &fileBatch{}
	}
	err = readBatchesGuarded(context.Background(), feed.NewRecordingReaderBytes(data, 0, 0), 100, 0, out, free)
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("reading a truncated mapping: %v; want the fault as an error", err)
	}
	for b := range out { // closed
		if len(b.msgs) > 0 {
			t.Fatalf("a batch of %d messages read from a truncated file", len(b.msgs))
		}
	}
}
