package export

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/simulator"
	"github.com/quotesdev/quotes/wal"
)

func TestPartKey(t *testing.T) {
	h := time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC).UnixNano()
	k := PartKey(DatasetQuotes, h, 17, 52311)
	if want := "quotes/date=2026-11-26/hour=13/part-17-52311.parquet"; k != want {
		t.Fatalf("PartKey = %q, want %q", k, want)
	}
	p, ok := parsePartKey(k)
	if !ok || p.dataset != DatasetQuotes || p.hour != h || p.first != 17 || p.last != 52311 {
		t.Fatalf("parsePartKey(%q) = %+v, %v", k, p, ok)
	}
	for _, bad := range []string{"quotes/x.parquet", "quotes/date=2026-11-26/hour=24/part-1-2.parquet",
		"quotes/date=2026-11-26/hour=13/part-3-2.parquet", "quotes/date=2026-11-26/hour=13/part-1-2.tmp"} {
		if _, ok := parsePartKey(bad); ok {
			t.Errorf("parsePartKey(%q) ok", bad)
		}
	}
	if got := hourOf(h + HourNanos - 1); got != h {
		t.Errorf("hourOf = %d, want %d", got, h)
	}
}

// recording returns a deterministic feed of about d with churn (ADDs and DELETEs).
func recording(t testing.TB, d time.Duration, instruments int, interval time.Duration) []feed.Message {
	t.Helper()
	opts := simulator.DefaultOptions()
	opts.Instruments, opts.QuoteInterval, opts.Duration, opts.Speed, opts.Seed = instruments, interval, d, simulator.SpeedMax, 7
	opts.Churn = 0.01
	opts.Start = time.Date(2026, 11, 26, 12, 40, 0, 0, time.UTC)
	var buf bytes.Buffer
	if _, err := simulator.Record(context.Background(), &buf, opts, nil); err != nil {
		t.Fatal(err)
	}
	rr := feed.NewRecordingReader(&buf)
	var msgs []feed.Message
	for {
		var m feed.Message
		err := rr.Next(&m)
		if errors.Is(err, io.EOF) {
			return msgs
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
}

func openLog(t testing.TB, dir string) *wal.Log {
	t.Helper()
	o := wal.DefaultOptions(dir)
	o.Sync = wal.SyncNone
	o.Logger = slog.New(slog.DiscardHandler)
	l, err := wal.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// appendAll appends msgs in batches and, like pipeline.Finish, a final tick that closes every
// minute.
func appendAll(t testing.TB, l *wal.Log, msgs []feed.Message, finish bool) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		if _, err := l.Append(msgs[:n]); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
	if finish {
		wm := maxTS(t, l)
		tick := feed.Message{TS: aggregate.MinuteOf(wm) + aggregate.MinuteNanos + int64(aggregate.DefaultGrace), Kind: wal.KindTick}
		if _, err := l.Append([]feed.Message{tick}); err != nil {
			t.Fatal(err)
		}
	}
}

func walRecords(t testing.TB, l *wal.Log) []wal.Record {
	t.Helper()
	var out []wal.Record
	r := l.NewReader(1)
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

func maxTS(t testing.TB, l *wal.Log) int64 {
	var m int64
	for _, r := range walRecords(t, l) {
		m = max(m, r.TS)
	}
	return m
}

// rawRecords are the records an archive keeps: no ticks.
func rawRecords(recs []wal.Record) []wal.Record {
	out := slices.DeleteFunc(slices.Clone(recs), func(r wal.Record) bool { return r.Kind == wal.KindTick })
	for i := range out {
		out[i].Ref = 0 // the WAL's own numbering, not part of an archive
	}
	return out
}

// collector is an aggregate.Output that merges every candle state.
type collector map[aggregate.Key]aggregate.Candle

func (c collector) Quote(aggregate.AcceptedQuote)        {}
func (c collector) Instrument(aggregate.InstrumentEvent) {}
func (c collector) Closed(x *aggregate.Candle)           { c.add(x) }
func (c collector) Late(x *aggregate.Candle)             { c.add(x) }
func (c collector) add(x *aggregate.Candle) {
	m, ok := c[x.Key]
	if !ok {
		c[x.Key] = *x
		return
	}
	m.Merge(x)
	c[x.Key] = m
}

// wantCandles derives the candles of recs with a fresh aggregator, sorted like
// ReadArchiveCandles.
func wantCandles(recs []wal.Record) []aggregate.Candle {
	agg := aggregate.New(aggregate.DefaultOptions())
	c := collector{}
	for _, r := range recs {
		agg.Apply(r, c)
	}
	out := make([]aggregate.Candle, 0, len(c))
	for _, x := range c {
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b aggregate.Candle) int {
		return cmp.Or(slices.Compare(a.ISIN[:], b.ISIN[:]), cmp.Compare(a.Incarnation, b.Incarnation), cmp.Compare(a.Minute, b.Minute))
	})
	return out
}

func newTestArchiver(t testing.TB, l *wal.Log, store ArchiveStore) *Archiver {
	t.Helper()
	a, err := NewArchiver(context.Background(), l, ArchiveOptions{
		Store: store, Aggregate: aggregate.DefaultOptions(), TempDir: t.TempDir(),
		RowGroupRows: 5000, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// checkArchive compares the archive with the WAL: raw messages in order, merged candles, no
// overlapping parts.
func checkArchive(t *testing.T, store ArchiveStore, recs []wal.Record) {
	t.Helper()
	ctx := context.Background()
	var got []wal.Record
	err := ReadArchiveMessages(ctx, store, TimeRange{}, 0, func(r wal.Record) error {
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := rawRecords(recs)
	if len(got) != len(want) {
		t.Fatalf("archive holds %d messages, the WAL %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: archive %+v, WAL %+v", i, got[i], want[i])
		}
	}
	candles, err := ReadArchiveCandles(ctx, store, TimeRange{})
	if err != nil {
		t.Fatal(err)
	}
	wc := wantCandles(recs)
	if len(candles) != len(wc) {
		t.Fatalf("archive holds %d candles, want %d", len(candles), len(wc))
	}
	for i := range wc {
		if candles[i] != wc[i] {
			t.Fatalf("candle %d: archive %+v, want %+v", i, candles[i], wc[i])
		}
	}
	// Parts of one dataset and hour never overlap.
	for _, ds := range []string{DatasetQuotes, DatasetEvents, DatasetCandles} {
		parts, err := listParts(ctx, store, ds, TimeRange{})
		if err != nil {
			t.Fatal(err)
		}
		byHour := map[int64][]partInfo{}
		for _, p := range parts {
			byHour[p.hour] = append(byHour[p.hour], p)
		}
		for _, ps := range byHour {
			for i := 1; i < len(ps); i++ {
				if ps[i].first <= ps[i-1].last {
					t.Errorf("overlapping parts %s and %s", ps[i-1].key, ps[i].key)
				}
			}
		}
	}
}

// partsPerHour counts the files of a dataset per hour.
func partsPerHour(t *testing.T, store ArchiveStore, ds string) map[int64]int {
	t.Helper()
	parts, err := listParts(context.Background(), store, ds, TimeRange{})
	if err != nil {
		t.Fatal(err)
	}
	n := map[int64]int{}
	for _, p := range parts {
		n[p.hour]++
	}
	return n
}

func TestArchiveDirRoundTrip(t *testing.T) {
	msgs := recording(t, 2*time.Hour+30*time.Minute, 20, 10*time.Second)
	l := openLog(t, t.TempDir())
	defer l.Close()
	appendAll(t, l, msgs, true)
	store, err := NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newTestArchiver(t, l, store)
	ctx := context.Background()
	if err := a.advance(ctx, l.LastSeq()); err != nil {
		t.Fatal(err)
	}
	// Before Flush: only complete hours.
	if n := partsPerHour(t, store, DatasetQuotes); len(n) != 3 {
		t.Fatalf("before flush: quote files per hour %v, want 3 complete hours (12:40–15:10: 15:xx is open)", n)
	}
	if a.Needed() > l.LastSeq() || a.Needed() <= 1 {
		t.Fatalf("Needed = %d (last %d)", a.Needed(), l.LastSeq())
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Needed() != l.LastSeq()+1 {
		t.Fatalf("after flush Needed = %d, want %d", a.Needed(), l.LastSeq()+1)
	}
	for hour, n := range partsPerHour(t, store, DatasetQuotes) {
		if n != 1 {
			t.Errorf("hour %v has %d quote files, want 1", time.Unix(0, hour).UTC(), n)
		}
	}
	checkArchive(t, store, walRecords(t, l))
	// Flush again: nothing to do, nothing changes.
	keys, _ := store.List(ctx, "")
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	keys2, _ := store.List(ctx, "")
	if !slices.Equal(keys, keys2) {
		t.Fatalf("a second flush changed the archive:\n%v\n%v", keys, keys2)
	}
	st := a.Stats()
	if st.Quotes+st.Events != uint64(len(rawRecords(walRecords(t, l)))) {
		t.Errorf("stats %+v", st)
	}
}

// TestArchivePartialHours flushes in the middle of hours, restarts the archiver each time
// and checks that the parts of an hour never overlap and the whole equals the WAL.
func TestArchivePartialHours(t *testing.T) {
	msgs := recording(t, 2*time.Hour, 10, 15*time.Second)
	dir := t.TempDir()
	store, err := NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	chunks := 5
	for i := 0; i < chunks; i++ {
		l := openLog(t, dir)
		part := msgs[i*len(msgs)/chunks : (i+1)*len(msgs)/chunks]
		appendAll(t, l, part, i == chunks-1)
		a := newTestArchiver(t, l, store)
		if err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		a.Close()
		if i == chunks-1 {
			checkArchive(t, store, walRecords(t, l))
		}
		l.Close()
	}
	if n := partsPerHour(t, store, DatasetQuotes); len(n) != 3 {
		t.Errorf("quote parts per hour: %v", n)
	}
}

// TestArchiveRedo fails every cut once after its files were published and before the commit
// (a crash there): the redo must produce the same keys, so nothing is duplicated.
func TestArchiveRedo(t *testing.T) {
	msgs := recording(t, 2*time.Hour+10*time.Minute, 10, 15*time.Second)
	dir := t.TempDir()
	l := openLog(t, dir)
	appendAll(t, l, msgs, true)
	store, err := NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for round := 1; ; round++ {
		a := newTestArchiver(t, l, store)
		crashed, calls := false, 0
		a.testBeforeCommit = func() error {
			if calls++; calls == round { // each round commits one more cut than the last
				crashed = true
				return errors.New("crash before commit")
			}
			return nil
		}
		err := a.Flush(ctx)
		a.Close()
		if err == nil {
			break
		}
		if !crashed || !strings.Contains(err.Error(), "crash before commit") {
			t.Fatal(err)
		}
	}
	checkArchive(t, store, walRecords(t, l))
	l.Close()
}
