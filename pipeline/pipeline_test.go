package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/simulator"
	"github.com/quotesdev/quotes/store"
	"github.com/quotesdev/quotes/wal"
)

// feedMessages returns a deterministic simulated feed with every 101st quote made late.
func feedMessages(t testing.TB, n int) []feed.Message {
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
				msgs[i].TS -= int64(90 * time.Second)
			}
		}
	}
	return msgs
}

func openPipeline(t testing.TB, dir string) (*wal.Log, *Pipeline) {
	t.Helper()
	log, err := wal.Open(wal.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	// A registered outbox consumer that never delivers: retention keeps the whole outbox.
	if _, err := store.New(log.DB(), log.Persist).RegisterConsumer("test"); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.CheckpointEvery = time.Minute
	p, err := Open(log, opts)
	if err != nil {
		log.Close()
		t.Fatal(err)
	}
	return log, p
}

// dump renders everything the pipeline derived: instruments, stored candles, hot events,
// stats.
func dump(t testing.TB, p *Pipeline) string {
	t.Helper()
	var b strings.Builder
	for _, in := range p.Instruments() {
		fmt.Fprintf(&b, "I %+v\n", in)
	}
	if err := p.Store().ScanCandles(func(c aggregate.Candle) error {
		fmt.Fprintf(&b, "C %+v\n", c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	events, err := p.HotEvents(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		fmt.Fprintf(&b, "H %s\n", e.AppendJSON(nil))
	}
	fmt.Fprintf(&b, "S %+v\n", p.Stats())
	// The outbox: every item with its key. Its candles merged per key must be the stored
	// candles.
	merged := map[aggregate.Key]aggregate.Candle{}
	kinds := map[string]int{}
	err = p.Store().ScanOutbox(0, p.Applied(), func(it *store.OutboxItem) (bool, error) {
		switch it.Kind {
		case store.OutboxHot:
			// Checked by outboxEvents; not in the dump, which directories written before
			// hot events went to the outbox (the golden) must match too.
		case store.OutboxInstrument:
			kinds[fmt.Sprintf("%s new=%v", it.Instrument.Kind, it.Instrument.New)]++
			fmt.Fprintf(&b, "O %d/%d %+v\n", it.Tag, it.Idx, it.Instrument)
		default:
			kinds[it.Kind.String()]++
			fmt.Fprintf(&b, "O %d/%d %s %+v\n", it.Tag, it.Idx, it.Kind, it.Candle)
			c, ok := merged[it.Candle.Key]
			if !ok {
				c = it.Candle
			} else {
				c.Merge(&it.Candle)
			}
			merged[it.Candle.Key] = c
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "O kinds %v\n", kinds)
	if err := p.Store().ScanCandles(func(c aggregate.Candle) error {
		if m := merged[c.Key]; m != c {
			t.Errorf("outbox candles of %+v merge to %+v, stored %+v", c.Key, m, c)
		}
		delete(merged, c.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(merged) != 0 {
		t.Errorf("%d outbox candles not in the store", len(merged))
	}
	return b.String()
}

// outboxEvents checks the hot events in p's outbox: each is keyed by its id (the triggering
// quote's record) at store.OutboxHotIdx and equals the stored event of that id; with all
// set, the outbox holds every stored event (nothing was trimmed), in id order.
func outboxEvents(t testing.TB, p *Pipeline, all bool) {
	t.Helper()
	events, err := p.HotEvents(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uint64]hot.Event{}
	for _, e := range events {
		byID[e.ID] = e
	}
	var got []hot.Event
	err = p.Store().ScanOutbox(0, p.Applied(), func(it *store.OutboxItem) (bool, error) {
		if it.Kind != store.OutboxHot {
			return true, nil
		}
		if it.Tag != it.Event.ID || it.Idx != store.OutboxHotIdx {
			t.Errorf("hot event %d in the outbox at %d/%d", it.Event.ID, it.Tag, it.Idx)
		}
		if e, ok := byID[it.Event.ID]; !ok || e != it.Event {
			t.Errorf("hot event %d in the outbox: %s; stored: %s", it.Event.ID, it.Event.AppendJSON(nil), e.AppendJSON(nil))
		}
		got = append(got, it.Event)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if all && !reflect.DeepEqual(got, events) {
		t.Errorf("the outbox has %d hot events, the store %d (or they differ)", len(got), len(events))
	}
}

// TestRestartsEqualUninterrupted applies a feed once without interruption and once with the
// pipeline abandoned (no Close: no final flush or checkpoint) and reopened at many points;
// both must derive exactly the same instruments, candles, hot events and counters.
func TestRestartsEqualUninterrupted(t *testing.T) {
	msgs := feedMessages(t, 60_000)
	const batch = 1000

	refLog, ref := openPipeline(t, filepath.Join(t.TempDir(), "ref"))
	for i := 0; i < len(msgs); i += batch {
		if err := ref.Append(msgs[i:min(i+batch, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := ref.Finish(); err != nil {
		t.Fatal(err)
	}
	want := dump(t, ref)
	outboxEvents(t, ref, true)
	ref.Close()
	refLog.Close()
	if !strings.Contains(want, "H {") || !strings.Contains(want, "DELETE new=false") || !strings.Contains(want, "ADD new=true") || !strings.Contains(want, "late:") || !regexp.MustCompile(` Late:[1-9]`).MatchString(want) {
		t.Fatalf("the feed derives no hot events or no late corrections; the test would prove little")
	}

	dir := filepath.Join(t.TempDir(), "crashy")
	log, p := openPipeline(t, dir)
	for i, n := 0, 0; i < len(msgs); i += batch {
		if err := p.Append(msgs[i:min(i+batch, len(msgs))]); err != nil {
			t.Fatal(err)
		}
		if n++; n%7 == 0 { // abandon the pipeline without flushing or checkpointing
			log.Close()
			log, p = openPipeline(t, dir)
		}
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	got := dump(t, p)
	outboxEvents(t, p, true)
	p.Close()
	log.Close()
	if got != want {
		g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range min(len(g), len(w)) {
			if g[i] != w[i] {
				t.Fatalf("restarted run differs at line %d:\n got %s\nwant %s", i+1, g[i], w[i])
			}
		}
		t.Fatalf("restarted run differs in length: %d vs %d lines", len(g), len(w))
	}
}

// TestAppendAsyncEqualsAppend: a feed applied with AppendAsync, its commits held up now and
// then (as a checkpoint holds them) so that runs queue, derives exactly what Append does;
// while the commits are held, AppendAsync still returns and the aggregator runs ahead of
// the store.
func TestAppendAsyncEqualsAppend(t *testing.T) {
	msgs := feedMessages(t, 40_000)
	const batch = 500
	run := func(t *testing.T, async bool) string {
		log, p := openPipeline(t, t.TempDir())
		defer log.Close()
		p.opts.CommitQueue = 4
		held := 0
		var unlock func()
		for i, n := 0, 0; i < len(msgs); i, n = i+batch, n+1 {
			if async && n%10 == 0 {
				unlock = p.LockCommits()
				held = 4
			}
			b := msgs[i:min(i+batch, len(msgs))]
			if async {
				if err := p.AppendAsync(b); err != nil {
					t.Fatal(err)
				}
			} else if err := p.Append(b); err != nil {
				t.Fatal(err)
			}
			if held > 0 {
				if held--; held == 0 {
					stored, err := p.Store().Applied()
					if err != nil {
						t.Fatal(err)
					}
					if applied := p.Applied(); stored >= applied {
						t.Fatalf("commits held: the store reflects seq %d, the aggregator %d: want the store behind", stored, applied)
					}
					unlock()
				}
			}
		}
		if held > 0 {
			unlock()
		}
		if err := p.Finish(); err != nil {
			t.Fatal(err)
		}
		out := dump(t, p)
		outboxEvents(t, p, true)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := run(t, false)
	if got := run(t, true); got != want {
		g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range min(len(g), len(w)) {
			if g[i] != w[i] {
				t.Fatalf("AppendAsync differs at line %d:\n got %s\nwant %s", i+1, g[i], w[i])
			}
		}
		t.Fatalf("AppendAsync differs in length: %d vs %d lines", len(g), len(w))
	}
}

// TestFinishIsIdempotent: finishing twice (a re-run of a finished replay) changes nothing,
// not even the current minute.
func TestFinishIsIdempotent(t *testing.T) {
	log, p := openPipeline(t, t.TempDir())
	defer log.Close()
	if err := p.Append(feedMessages(t, 5000)); err != nil {
		t.Fatal(err)
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	seq, now := p.Applied(), p.agg.Watermark()
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	if p.Applied() != seq || p.agg.Watermark() != now {
		t.Errorf("second Finish appended: seq %d → %d, watermark %d → %d", seq, p.Applied(), now, p.agg.Watermark())
	}
	p.Close()
}

// TestCandlesUnknownInstrument: queries for an ISIN that is not active fail with
// ErrUnknownInstrument.
func TestCandlesUnknownInstrument(t *testing.T) {
	log, p := openPipeline(t, t.TempDir())
	defer log.Close()
	defer p.Close()
	isin, _ := feed.ParseISIN("AAAAAAAAAAAA")
	if _, err := p.Candles(isin, CandleRange{Last: 30}); err != ErrUnknownInstrument {
		t.Fatalf("got %v, want ErrUnknownInstrument", err)
	}
}

// TestFirstRunCheckpoints: a pipeline opened on an empty log checkpoints every
// CheckpointEvery of event time from its first records on, not only from the first restart
// (the watermark of "no checkpoint yet" is math.MinInt64, and the distance to it used to
// overflow, so a fresh run never checkpointed before Close and a kill -9 re-applied the whole
// log).
func TestFirstRunCheckpoints(t *testing.T) {
	log, p := openPipeline(t, t.TempDir()) // CheckpointEvery 1m
	defer log.Close()
	msgs := feedMessages(t, 60_000) // 100 instruments × 1/s: 10 minutes
	for i := 0; i < len(msgs); i += 500 {
		if err := p.Append(msgs[i:min(i+500, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
	p.mu.RLock()
	ckpt, applied := p.ckptSeq, p.applied
	p.mu.RUnlock()
	if ckpt == 0 || applied-ckpt > 7_000 {
		t.Fatalf("last checkpoint at seq %d of %d: want one within about a minute (6,000 records)", ckpt, applied)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointRecords: a checkpoint is also taken once Options.CheckpointRecords records
// were applied since the last one, however little event time they span, so a restart
// never re-applies more than about that many records; negative turns it off.
func TestCheckpointRecords(t *testing.T) {
	msgs := feedMessages(t, 30_000) // 100 instruments × 1/s: 5 minutes
	for _, tc := range []struct {
		records int
		want    func(ckpt, applied uint64) bool
		what    string
	}{
		{4_000, func(ckpt, applied uint64) bool { return ckpt > 0 && applied-ckpt < 4_000+500 },
			"within 4,000 records (+ one batch) of the end"},
		{-1, func(ckpt, applied uint64) bool { return ckpt == 0 }, "none: 5 minutes of event time never reach CheckpointEvery"},
	} {
		t.Run(fmt.Sprint(tc.records), func(t *testing.T) {
			log, err := wal.Open(wal.DefaultOptions(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer log.Close()
			opts := DefaultOptions()
			opts.CheckpointEvery = time.Hour
			opts.CheckpointRecords = tc.records
			p, err := Open(log, opts)
			if err != nil {
				t.Fatal(err)
			}
			var ckpts []uint64
			for i := 0; i < len(msgs); i += 500 {
				if err := p.Append(msgs[i:min(i+500, len(msgs))]); err != nil {
					t.Fatal(err)
				}
				p.mu.RLock()
				if c := p.ckptSeq; c != 0 && (len(ckpts) == 0 || ckpts[len(ckpts)-1] != c) {
					ckpts = append(ckpts, c)
				}
				p.mu.RUnlock()
			}
			p.mu.RLock()
			ckpt, applied := p.ckptSeq, p.applied
			p.mu.RUnlock()
			if !tc.want(ckpt, applied) {
				t.Errorf("last checkpoint at seq %d of %d (all: %v): want %s", ckpt, applied, ckpts, tc.what)
			}
			for i := 1; i < len(ckpts); i++ {
				if d := ckpts[i] - ckpts[i-1]; tc.records > 0 && (d < uint64(tc.records) || d >= uint64(tc.records)+500) {
					t.Errorf("checkpoints at %v: %d records apart, want %d to %d", ckpts, d, tc.records, tc.records+499)
				}
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRecoveryTakesNoCheckpoint: Open re-applies a long WAL without taking checkpoints
// (they would add to the restart's time) and so without a retention pass, whose callbacks
// (Options.Consumers, TrimOutbox) belong to an owner that does not have the pipeline yet;
// the first records appended after it take the checkpoint that is due.
func TestRecoveryTakesNoCheckpoint(t *testing.T) {
	dir := t.TempDir()
	log, err := wal.Open(wal.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	msgs := feedMessages(t, 200_500) // ~33 minutes of event time
	recorded, after := msgs[:200_000], msgs[200_000:]
	for i := 0; i < len(recorded); i += 5000 {
		if _, err := log.Append(recorded[i:min(i+5000, len(recorded))]); err != nil {
			t.Fatal(err)
		}
	}
	var opened, early atomic.Bool
	opts := DefaultOptions()
	opts.CheckpointEvery = time.Minute
	opts.Consumers = func() uint64 {
		early.Store(early.Load() || !opened.Load())
		return 1
	}
	opts.TrimOutbox = func() (int, error) {
		early.Store(early.Load() || !opened.Load())
		return 0, nil
	}
	p, err := Open(log, opts)
	if err != nil {
		t.Fatal(err)
	}
	opened.Store(true)
	p.mu.RLock()
	ckpt, applied := p.ckptSeq, p.applied
	p.mu.RUnlock()
	if applied != uint64(len(recorded)) {
		t.Fatalf("recovery applied %d records, want %d", applied, len(recorded))
	}
	if _, err := os.Stat(filepath.Join(dir, CheckpointFile)); ckpt != 0 || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("recovery took a checkpoint: at seq %d, file: %v", ckpt, err)
	}
	if err := p.Append(after); err != nil {
		t.Fatal(err)
	}
	p.mu.RLock()
	ckpt, applied = p.ckptSeq, p.applied
	p.mu.RUnlock()
	if ckpt != applied || applied != uint64(len(msgs)) {
		t.Fatalf("after appending: checkpoint at seq %d, applied %d: want a checkpoint at %d", ckpt, applied, len(msgs))
	}
	if err := p.Close(); err != nil { // waits for a retention pass in progress
		t.Fatal(err)
	}
	if early.Load() {
		t.Fatal("a retention pass ran during Open")
	}
}

// TestOutboxOnlyWithConsumers: while no outbox consumer is registered the pipeline writes no
// outbox items (retention would remove them unread); once one is, every closed minute goes
// to the outbox again.
func TestOutboxOnlyWithConsumers(t *testing.T) {
	log, err := wal.Open(wal.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	p, err := Open(log, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	msgs := feedMessages(t, 20_000)
	half := len(msgs) / 2
	if err := p.Append(msgs[:half]); err != nil {
		t.Fatal(err)
	}
	closedBefore := p.Stats().CandlesClosed
	if n, err := p.Store().OutboxSize(); err != nil || n != 0 || closedBefore == 0 {
		t.Fatalf("no consumer: %d outbox items (%v) after %d closed candles, want 0 after some", n, err, closedBefore)
	}
	if _, err := p.Store().RegisterConsumer("late"); err != nil {
		t.Fatal(err)
	}
	if err := p.Append(msgs[half:]); err != nil {
		t.Fatal(err)
	}
	closed := 0
	if err := p.Store().ScanOutbox(0, math.MaxUint64, func(it *store.OutboxItem) (bool, error) {
		if it.Kind == store.OutboxClosed {
			closed++
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := int(p.Stats().CandlesClosed - closedBefore); closed != want || want == 0 {
		t.Errorf("after registering: %d closed candles in the outbox, want %d", closed, want)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
