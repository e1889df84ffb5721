package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/simulator"
	"github.com/quotesdev/quotes/store"
	"github.com/quotesdev/quotes/wal"
)

// fakeSink behaves like ClickHouseSink: a flush id that landed is skipped; the same id
// with other items is a conflict. It fails on demand, before or after landing.
type fakeSink struct {
	mu      sync.Mutex
	landed  map[uint64][]string // flush id → item keys
	items   map[string]int      // item key → times delivered
	candles map[aggregate.Key]aggregate.Candle
	events  int
	hot     int
	calls   int
	// fail, if set, is asked before (after=false) and after (after=true) landing.
	fail func(call int, after bool) error
}

func newFakeSink() *fakeSink {
	return &fakeSink{landed: map[uint64][]string{}, items: map[string]int{}, candles: map[aggregate.Key]aggregate.Candle{}}
}

func (f *fakeSink) Name() string { return "fake" }

func (f *fakeSink) Write(_ context.Context, id uint64, items []store.OutboxItem) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(f.calls, false); err != nil {
			return err
		}
	}
	keys := make([]string, len(items))
	for i := range items {
		keys[i] = fmt.Sprintf("%d/%d", items[i].Tag, items[i].Idx)
	}
	if prev, ok := f.landed[id]; ok {
		if !slices.Equal(prev, keys) {
			return fmt.Errorf("%w: flush %d", ErrFlushConflict, id)
		}
		return nil
	}
	f.landed[id] = keys
	for i := range items {
		it := &items[i]
		f.items[keys[i]]++
		switch it.Kind {
		case store.OutboxInstrument:
			f.events++
		case store.OutboxHot:
			f.hot++
		default:
			c, ok := f.candles[it.Candle.Key]
			if ok {
				c.Merge(&it.Candle)
			} else {
				c = it.Candle
			}
			f.candles[it.Candle.Key] = c
		}
	}
	if f.fail != nil {
		return f.fail(f.calls, true)
	}
	return nil
}

// check verifies that every outbox item was delivered exactly once and that the delivered
// candles merge to the stored ones.
func (f *fakeSink) check(t *testing.T, p *pipeline.Pipeline) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	// Retention may have removed delivered items: what is left must have been delivered,
	// nothing twice, and the candles must add up to the store's.
	err := p.Store().ScanOutbox(0, p.Applied(), func(it *store.OutboxItem) (bool, error) {
		if k := fmt.Sprintf("%d/%d", it.Tag, it.Idx); f.items[k] != 1 {
			t.Errorf("item %s delivered %d times", k, f.items[k])
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, n := range f.items {
		if n != 1 {
			t.Errorf("item %s delivered %d times", k, n)
		}
	}
	if f.events == 0 {
		t.Errorf("no instrument events delivered")
	}
	if evs, err := p.HotEvents(0, 0, 0); err != nil {
		t.Fatal(err)
	} else if f.hot != len(evs) {
		t.Errorf("%d hot events delivered, the store has %d", f.hot, len(evs))
	}
	stored := 0
	if err := p.Store().ScanCandles(func(c aggregate.Candle) error {
		stored++
		if got := f.candles[c.Key]; got != c {
			t.Errorf("candle %+v: sink has %+v, store %+v", c.Key, got, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if stored != len(f.candles) {
		t.Errorf("store has %d candles, the sink %d", stored, len(f.candles))
	}
}

func testFeed(t testing.TB, n int) []feed.Message {
	t.Helper()
	opts := simulator.DefaultOptions()
	opts.Instruments, opts.QuoteInterval, opts.Churn, opts.Seed = 100, time.Second, 0.5, 5
	model, err := simulator.NewModel(opts)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]feed.Message, n)
	quotes := 0
	for i := range msgs {
		msgs[i] = model.Next()
		if msgs[i].Kind == feed.KindQuote {
			if quotes++; quotes%101 == 0 {
				msgs[i].TS -= int64(90 * time.Second) // late corrections
			}
		}
	}
	return msgs
}

func openTestPipeline(t testing.TB, dir string) (*wal.Log, *pipeline.Pipeline) {
	t.Helper()
	log, err := wal.Open(wal.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	opts := pipeline.DefaultOptions()
	opts.CheckpointEvery = time.Minute
	opts.Logger = quietLogger()
	p, err := pipeline.Open(log, opts)
	if err != nil {
		log.Close()
		t.Fatal(err)
	}
	return log, p
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func consumerOpts(p *pipeline.Pipeline, flush int) ConsumerOptions {
	return ConsumerOptions{FlushItems: flush, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Poll: 10 * time.Millisecond, Changed: p.OutboxChanged, Logger: quietLogger()}
}

// TestConsumerExactlyOnceWithFailures: a sink that fails before and after landing, at
// random calls, and consumers abandoned mid-flush (a crash: the intent stays) still get
// every item exactly once; flushes end at record boundaries.
func TestConsumerExactlyOnceWithFailures(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	log, p := openTestPipeline(t, dir)
	defer func() { log.Close() }()
	sink := newFakeSink()
	errDown := errors.New("sink down")
	sink.fail = func(call int, after bool) error {
		if call%5 == 0 && !after || call%7 == 0 && after {
			return errDown
		}
		return nil
	}
	c, err := NewConsumer(p.Store(), sink, consumerOpts(p, 300))
	if err != nil {
		t.Fatal(err)
	}
	msgs := testFeed(t, 40_000)
	ctx := context.Background()
	failures, restarts := 0, 0
	for i := 0; i < len(msgs); i += 1000 {
		if err := p.Append(msgs[i:min(i+1000, len(msgs))]); err != nil {
			t.Fatal(err)
		}
		for k := 0; k < 3; k++ {
			if _, err := c.Step(ctx); err != nil {
				if !errors.Is(err, errDown) {
					t.Fatal(err)
				}
				failures++
				if failures%3 == 0 { // crash: a new consumer must redo the intent
					if c, err = NewConsumer(p.Store(), sink, consumerOpts(p, 300)); err != nil {
						t.Fatal(err)
					}
					restarts++
				}
			}
		}
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	sink.fail = nil
	if pending, err := c.Drain(ctx); err != nil || pending != 0 {
		t.Fatalf("Drain: %d pending, %v", pending, err)
	}
	sink.check(t, p)
	if failures == 0 || restarts == 0 || len(sink.landed) < 10 {
		t.Fatalf("failures %d, restarts %d, flushes %d: the test proves little", failures, restarts, len(sink.landed))
	}
	// flushes end at record boundaries: no tag in two flushes
	owner := map[string]uint64{}
	for id, keys := range sink.landed {
		for _, k := range keys {
			var tag, idx uint64
			fmt.Sscanf(k, "%d/%d", &tag, &idx)
			tk := fmt.Sprint(tag)
			if o, ok := owner[tk]; ok && o != id {
				t.Fatalf("tag %s in flushes %d and %d", tk, o, id)
			}
			owner[tk] = id
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestConsumerRunSinkDownThenUp: Run keeps retrying while the sink is down, the pipeline
// goes on, and once the sink is back everything is delivered exactly once; retention keeps
// the outbox until then and trims it after.
func TestConsumerRunSinkDownThenUp(t *testing.T) {
	log, p := openTestPipeline(t, filepath.Join(t.TempDir(), "data"))
	defer log.Close()
	sink := newFakeSink()
	var down sync.Mutex
	isDown := true
	sink.fail = func(int, bool) error {
		down.Lock()
		defer down.Unlock()
		if isDown {
			return errors.New("connection refused")
		}
		return nil
	}
	c, err := NewConsumer(p.Store(), sink, consumerOpts(p, 1000))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	msgs := testFeed(t, 30_000)
	for i := 0; i < len(msgs); i += 500 {
		if err := p.Append(msgs[i:min(i+500, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil { // a checkpoint: retention runs, must keep the outbox
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Failures < 3 || c.Stats().Backlog == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no failures recorded: %+v", c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := c.Stats(); !st.Down || st.Delivered != 0 {
		t.Fatalf("stats while down: %+v", st)
	}
	down.Lock()
	isDown = false
	down.Unlock()
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	for {
		if n, _ := c.Pending(); n == 0 && !c.Stats().Down {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered: %+v", c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sink.check(t, p)
	if _, err := p.Store().TrimDelivered(); err != nil { // what retention does at checkpoints
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Store().CountOutbox(0, p.Applied(), 0); err != nil || n != 0 {
		t.Errorf("outbox after delivery and retention: %d items, %v", n, err)
	}
}

// TestConsumerRedoesIntentIdentically: an intent left by a crash is redone with the same
// flush id and the same items, even when more items arrived meanwhile.
func TestConsumerRedoesIntentIdentically(t *testing.T) {
	log, p := openTestPipeline(t, filepath.Join(t.TempDir(), "data"))
	defer log.Close()
	msgs := testFeed(t, 20_000)
	var calls []uint64
	var first []store.OutboxItem
	rec := &recordingSink{fn: func(id uint64, items []store.OutboxItem) error {
		calls = append(calls, id)
		if len(calls) > 2 {
			return nil
		}
		if first == nil {
			first = slices.Clone(items)
			return errors.New("crash during the write")
		}
		if !reflect.DeepEqual(items, first) {
			return fmt.Errorf("redo got %d items, first attempt %d", len(items), len(first))
		}
		return nil
	}}
	// Registered before the records: the outbox holds items only while a consumer is.
	c, err := NewConsumer(p.Store(), rec, consumerOpts(p, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Append(msgs[:10_000]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Step(context.Background()); err == nil {
		t.Fatal("first Step did not fail")
	}
	if err := p.Append(msgs[10_000:]); err != nil {
		t.Fatal(err)
	}
	c2, err := NewConsumer(p.Store(), rec, consumerOpts(p, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c2.Step(context.Background()); err != nil || n != len(first) {
		t.Fatalf("redo: %d items, %v", n, err)
	}
	if len(calls) != 2 || calls[0] != calls[1] || c2.Stats().Redone != 1 {
		t.Fatalf("flush ids %v, stats %+v", calls, c2.Stats())
	}
	if n, err := c2.Step(context.Background()); err != nil || n == 0 {
		t.Fatalf("next flush: %d items, %v", n, err)
	}
	if calls[2] == calls[0] {
		t.Fatalf("the next flush reused id %d", calls[0])
	}
	p.Close()
}

type recordingSink struct {
	fn func(id uint64, items []store.OutboxItem) error
}

func (r *recordingSink) Name() string { return "rec" }
func (r *recordingSink) Write(_ context.Context, id uint64, items []store.OutboxItem) error {
	return r.fn(id, items)
}

// TestConsumerBackoff: consecutive failures wait capped, doubling delays with jitter in
// [b/2, b]; a success starts over; the waits run on the injected clock.
func TestConsumerBackoff(t *testing.T) {
	log, p := openTestPipeline(t, t.TempDir())
	defer log.Close()
	defer p.Close()
	mock := clock.NewMock()
	opts := consumerOpts(p, 100)
	opts.MinBackoff, opts.MaxBackoff, opts.Clock = time.Second, 4*time.Second, mock
	c, err := NewConsumer(p.Store(), newFakeSink(), opts)
	if err != nil {
		t.Fatal(err)
	}
	errDown := errors.New("down")
	for round := range 2 {
		for i, b := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
			if d := c.failed(errDown); d < b/2 || d > b {
				t.Fatalf("round %d, failure %d: delay %v outside [%v, %v]", round, i+1, d, b/2, b)
			}
		}
		if s := c.Stats(); !s.Down || s.LastError != "down" {
			t.Errorf("stats while failing: %+v", s)
		}
		c.succeeded()
		if s := c.Stats(); s.Down {
			t.Errorf("still down after a success: %+v", s)
		}
	}

	// sleep waits on the mock clock and gives up when ctx ends.
	done := make(chan bool)
	go func() { done <- c.sleep(context.Background(), time.Second) }()
	for waiting := true; waiting; {
		select {
		case ok := <-done:
			if !ok {
				t.Fatal("sleep reported a cancelled context")
			}
			waiting = false
		default:
			mock.Add(100 * time.Millisecond)
			time.Sleep(time.Millisecond)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c.sleep(ctx, time.Hour) {
		t.Error("sleep on a cancelled context reported success")
	}
}
