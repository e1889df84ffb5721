package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/store"
)

// lockedBuffer is a bytes.Buffer safe for the engine's goroutines and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// sliceSource is a Source over messages held in memory.
type sliceSource struct {
	key  string
	msgs []feed.Message
}

func (s *sliceSource) String() string { return s.key }
func (s *sliceSource) Key() string    { return s.key }
func (s *sliceSource) Size() int64    { return int64(len(s.msgs)) }
func (s *sliceSource) Close() error   { return nil }
func (s *sliceSource) Read(_ context.Context, pos []byte, _ int, _ int64, emit func(*Batch) error) error {
	if pos != nil || len(s.msgs) == 0 {
		return nil
	}
	return emit(&Batch{Msgs: s.msgs, Pos: binary.BigEndian.AppendUint64(nil, uint64(len(s.msgs))), Progress: int64(len(s.msgs))})
}

// byMinute splits msgs into runs of one minute of event time each.
func byMinute(msgs []feed.Message) [][]feed.Message {
	var out [][]feed.Message
	for i := 0; i < len(msgs); {
		m := aggregate.MinuteOf(msgs[i].TS)
		j := i
		for j < len(msgs) && aggregate.MinuteOf(msgs[j].TS) == m {
			j++
		}
		out = append(out, msgs[i:j])
		i = j
	}
	return out
}

// recordSink is an outbox sink that only counts what it gets.
type recordSink struct {
	name  string
	items int
}

func (s *recordSink) Name() string   { return s.name }
func (s *recordSink) Target() string { return "test://" + s.name }
func (s *recordSink) Write(_ context.Context, _ uint64, items []store.OutboxItem) error {
	s.items += len(items)
	return nil
}

// drainAs runs the outbox consumer name once, as a process that has it configured would.
func drainAs(t *testing.T, e *Engine, name string, mock clock.Clock, logger *slog.Logger) *recordSink {
	t.Helper()
	sink := &recordSink{name: name}
	c, err := export.NewConsumer(e.Store(), sink, export.ConsumerOptions{Clock: mock, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Drain(context.Background()); n != 0 || err != nil {
		t.Fatalf("drain %s: %d pending, %v", name, n, err)
	}
	return sink
}

func outboxSize(t *testing.T, e *Engine) int {
	t.Helper()
	n, err := e.Store().OutboxSize()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// gauge returns the value of the gauge name gathered from reg: its series of sink, or with
// sink "" its series without labels; false if reg has no such series.
func gauge(t *testing.T, reg *prometheus.Registry, name, sink string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if sink == "" && len(m.GetLabel()) == 0 {
				return m.GetGauge().GetValue(), true
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "sink" && l.GetValue() == sink {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// TestStaleAndRemovedSinks: two outbox consumers were registered by earlier runs and are
// not configured now. A small workload runs for 40 minutes of event time while the mock
// wall clock advances 10 minutes per minute of events. The removed sink stops holding the
// outbox at once; the other one holds it (retention names it) until it is stale
// (--sink-stale 1h), is then reported (metrics, log once an hour) and stops holding it too:
// from then on the outbox no longer grows. When the sink runs again it starts after what
// was dropped, which Sinks reports as lost.
func TestStaleAndRemovedSinks(t *testing.T) {
	_, msgs := recording(t, 20, 40*time.Minute, 0)
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	opts := testOptions(t, "data")
	opts.Clock, opts.Logger, opts.Registerer = mock, logger, reg
	opts.SinkStale = time.Hour
	opts.CheckpointEvery = time.Minute
	opts.DiskCheckEvery = time.Hour // the mock clock fires every due poll, each with a real 1 ms pause
	e := mustOpen(t, opts)
	defer e.Close()

	drainAs(t, e, "clickhouse", mock, logger)
	drainAs(t, e, "old", mock, logger)
	if err := e.RemoveSink("nosuch"); !errors.Is(err, ErrUnknownSink) {
		t.Fatalf("RemoveSink(nosuch): %v", err)
	}

	chunks := byMinute(msgs)
	if len(chunks) < 35 {
		t.Fatalf("%d minutes of workload", len(chunks))
	}
	var sizes []int
	for i, c := range chunks {
		if _, err := e.Replay(context.Background(), []Source{&sliceSource{key: fmt.Sprint("chunk", i), msgs: c}}, ReplayOptions{}); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if err := e.RemoveSink("old"); err != nil {
				t.Fatal(err)
			}
		}
		// The retention pass the pipeline runs after each checkpoint; run here too, so
		// the size is measured after one (the background one may or may not have run).
		if _, err := e.trimOutbox(); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, outboxSize(t, e))
		mock.Add(10 * time.Minute)
	}
	t.Logf("outbox sizes by minute: %v", sizes)

	// Until the last run is an hour old (6 minutes of workload) the outbox is kept and
	// grows; retention says for whom.
	if !(sizes[0] > 0 && sizes[3] > sizes[1] && sizes[5] > sizes[3]) {
		t.Errorf("the outbox was not kept for the sink before it was stale: %v", sizes)
	}
	if !strings.Contains(logs.String(), "outbox retention: kept for a sink that is not running") ||
		!strings.Contains(logs.String(), "sink=clickhouse") {
		t.Errorf("retention did not name the sink that keeps the outbox:\n%s", logs.String())
	}
	// Stale from then on: the outbox holds at most what one pass leaves, and stops growing.
	limit := sizes[5] / 5
	for i := 8; i < len(sizes); i++ {
		if sizes[i] > limit {
			t.Errorf("outbox after minute %d holds %d items (kept %d before the sink was stale): not bounded", i, sizes[i], sizes[5])
		}
	}
	sinks, err := e.Sinks()
	if err != nil {
		t.Fatal(err)
	}
	if len(sinks) != 1 || sinks[0].Name != "clickhouse" || !sinks[0].Stale || sinks[0].Running ||
		sinks[0].Lost.Items == 0 || sinks[0].Target != "test://clickhouse" || sinks[0].Backlog > limit {
		t.Fatalf("Sinks() = %+v, want only clickhouse, stale, with lost items", sinks)
	}
	lost := sinks[0].Lost
	if lost.From >= lost.To || lost.From < msgs[0].TS-int64(time.Minute) || lost.To > msgs[len(msgs)-1].TS {
		t.Errorf("lost range %s…%s outside the workload", fmtTS(lost.From), fmtTS(lost.To))
	}
	if v, ok := gauge(t, reg, "quotes_sink_stale", "clickhouse"); !ok || v != 1 {
		t.Errorf("quotes_sink_stale{sink=clickhouse} = %v (present %v), want 1", v, ok)
	}
	if v, ok := gauge(t, reg, "quotes_sink_last_run_age_seconds", "clickhouse"); !ok || v < 3600 {
		t.Errorf("quotes_sink_last_run_age_seconds{sink=clickhouse} = %v (present %v)", v, ok)
	}
	if _, ok := gauge(t, reg, "quotes_sink_stale", "old"); ok {
		t.Error("the removed sink is still reported")
	}

	// The sink runs again: it starts after what was dropped and reports it.
	back := drainAs(t, e, "clickhouse", mock, logger)
	if back.items > limit {
		t.Errorf("the returning sink got %d items: more than the bounded outbox", back.items)
	}
	if !strings.Contains(logs.String(), "retention dropped outbox items of this sink") {
		t.Error("the returning sink did not report what it lost")
	}
	if sinks, _ := e.Sinks(); len(sinks) != 1 || sinks[0].Stale {
		t.Errorf("after it ran again: %+v", sinks)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Reported once an hour of the (mock) clock while stale, not on every pass: ~34
	// minutes of workload stale at 10 min each is ~5–6 hours.
	n := strings.Count(logs.String(), "sink is stale")
	if n < 2 || n > 7 {
		t.Errorf("%d stale reports over ~6 hours of clock", n)
	}
}
