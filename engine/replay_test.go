package engine

import (
	"context"
	"os"
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
