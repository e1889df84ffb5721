package engine

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
)

// fakeSource hands over the batches sent on in until ctx ends, and records which were
// acknowledged (deliver returned nil) and which were refused.
type fakeSource struct {
	in       chan []feed.Message
	mu       sync.Mutex
	acked    int
	refused  []error
	running  chan struct{}
	stopOnce sync.Once
}

func newFakeSource() *fakeSource {
	return &fakeSource{in: make(chan []feed.Message), running: make(chan struct{})}
}

func (s *fakeSource) Run(ctx context.Context, deliver func([]feed.Message) error) error {
	close(s.running)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-s.in:
			err := deliver(b)
			s.mu.Lock()
			if err == nil {
				s.acked += len(b)
			} else {
				s.refused = append(s.refused, err)
			}
			s.mu.Unlock()
		}
	}
}

func mustISIN(s string) feed.ISIN {
	i, ok := feed.ParseISIN(s)
	if !ok {
		panic(s)
	}
	return i
}

// TestIngestTicksAndClose feeds an engine from a fake source on the mock clock: the tick
// loop closes the minute at its end + grace (on the clock, without any further message),
// and after Close nothing more is appended.
func TestIngestTicksAndClose(t *testing.T) {
	mock := clock.NewMock()
	t0 := time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)
	mock.Set(t0)
	opts := testOptions(t, "d")
	opts.Clock = mock
	e := mustOpen(t, opts)
	src := newFakeSource()
	done := make(chan error, 1)
	go func() { done <- e.Ingest(context.Background(), src, IngestOptions{}) }()
	<-src.running

	isin := mustISIN("US0378331005")
	ts := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	src.in <- []feed.Message{{TS: ts(time.Second), Kind: feed.KindAdd, ISIN: isin, Description: "Apple"}}
	src.in <- []feed.Message{
		{TS: ts(2 * time.Second), Kind: feed.KindQuote, ISIN: isin, Price: 100 * feed.PriceScale},
		{TS: ts(3 * time.Second), Kind: feed.KindQuote, ISIN: isin, Price: 101 * feed.PriceScale},
	}
	// Advance the clock a second at a time until the tick loop closed minute 0: at
	// 60s + grace (5s) + 1ms, and not before.
	closed := func() bool {
		cs, err := e.Store().Candles(isin, 1, t0.UnixNano(), t0.Add(time.Minute).UnixNano())
		if err != nil {
			t.Fatal(err)
		}
		return len(cs) == 1
	}
	for i := 0; i < 200 && !closed(); i++ {
		if mock.Now().After(t0.Add(66 * time.Second)) {
			t.Fatalf("minute not closed at %s", mock.Now().Sub(t0))
		}
		mock.Add(time.Second)
		for j := 0; j < 50; j++ {
			runtime.Gosched()
		}
	}
	if !closed() {
		t.Fatal("the tick loop never closed the minute")
	}
	if at := mock.Now().Sub(t0); at < 65*time.Second {
		t.Fatalf("minute closed at %s, before its end + grace", at)
	}
	cs, _ := e.Pipeline().Candles(isin, pipeline.CandleRange{From: t0.UnixNano(), To: t0.Add(time.Minute).UnixNano()})
	if len(cs) != 1 || cs[0].Quotes != 2 || cs[0].Close != 101*feed.PriceScale {
		t.Fatalf("candles %+v", cs)
	}

	// Close while the source runs: Ingest returns, nothing is appended afterwards.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Ingest after Close: %v", err)
	}
	if err := (&ingestion{e: e}).deliver([]feed.Message{{TS: ts(70 * time.Second), Kind: feed.KindQuote, ISIN: isin, Price: 1}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("deliver after Close: %v, want ErrClosed", err)
	}
	if _, err := e.Replay(context.Background(), nil, ReplayOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replay after Close: %v, want ErrClosed", err)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.acked != 3 {
		t.Fatalf("%d messages acknowledged, want 3", src.acked)
	}
}
