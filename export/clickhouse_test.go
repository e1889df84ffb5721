package export

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/store"
)

// t0 is a minute start (2026-11-26 23:50 UTC): ten minutes before a day boundary, so that
// test flushes cross a partition boundary.
var t0 = time.Date(2026, 11, 26, 23, 50, 0, 0, time.UTC).UnixNano()

func isin(s string) feed.ISIN {
	i, ok := feed.ParseISIN(s)
	if !ok {
		panic("bad test ISIN " + s)
	}
	return i
}

func newSink(t testing.TB, srv *chtest.Server, chunkRows int) *ClickHouseSink {
	t.Helper()
	s, err := NewClickHouseSink(context.Background(), ClickHouseOptions{DSN: srv.DSN, ChunkRows: chunkRows, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// quote is one aggregated quote of a test workload.
type quote struct {
	key   aggregate.Key
	ts    int64
	seq   uint64
	price feed.Price
}

// workload makes n quotes over a few ISINs, two incarnations of one of them (a reused ISIN
// quoting in the same minute as its earlier life), twelve minutes around t0 and many
// (ts, seq) ties.
func workload(rng *rand.Rand, n int) []quote {
	keys := []struct {
		isin feed.ISIN
		inc  uint64
	}{{isin("AAAAAAAAAAA1"), 1}, {isin("BBBBBBBBBBB2"), 2}, {isin("AAAAAAAAAAA1"), 7}, {isin("CCCCCCCCCCC3"), 3}}
	qs := make([]quote, n)
	for i := range qs {
		k := keys[rng.IntN(len(keys))]
		// few distinct timestamps per minute, so (ts, seq) ties on ts are common
		ts := t0 + int64(rng.IntN(12))*aggregate.MinuteNanos + int64(rng.IntN(3))*int64(time.Second)
		qs[i] = quote{
			key:   aggregate.Key{ISIN: k.isin, Incarnation: k.inc, Minute: aggregate.MinuteOf(ts)},
			ts:    ts,
			seq:   uint64(1000 + i),
			price: feed.Price(rng.IntN(2000)+1) * 1000,
		}
	}
	return qs
}

// fold aggregates quotes into one candle per key.
func fold(qs []quote) []aggregate.Candle {
	m := map[aggregate.Key]*aggregate.Candle{}
	for _, q := range qs {
		c := m[q.key]
		if c == nil {
			c = &aggregate.Candle{Key: q.key}
			m[q.key] = c
		}
		c.Add(q.ts, q.seq, q.price)
	}
	out := make([]aggregate.Candle, 0, len(m))
	for _, c := range m {
		out = append(out, *c)
	}
	return out
}

// expected returns the merged candles of isin from all flushes, ordered like Candles.
func expected(all []quote, isin feed.ISIN) []aggregate.Candle {
	var out []aggregate.Candle
	for _, c := range fold(all) {
		if c.ISIN == isin {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b aggregate.Candle) int {
		if a.Incarnation != b.Incarnation {
			return int(a.Incarnation) - int(b.Incarnation)
		}
		return int((a.Minute - b.Minute) / 1e9)
	})
	return out
}

func checkCandles(t *testing.T, s *ClickHouseSink, all []quote) {
	t.Helper()
	ctx := context.Background()
	for _, id := range []string{"AAAAAAAAAAA1", "BBBBBBBBBBB2", "CCCCCCCCCCC3"} {
		got, err := s.Candles(ctx, isin(id), t0, t0+60*aggregate.MinuteNanos)
		if err != nil {
			t.Fatalf("Candles(%s): %v", id, err)
		}
		want := expected(all, isin(id))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Candles(%s):\n got %d candles %+v\nwant %d candles %+v", id, len(got), got, len(want), want)
		}
	}
}

func TestClickHouseWriteReadBackWithLateCorrections(t *testing.T) {
	srv := chtest.Start(t)
	s := newSink(t, srv, 0)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	all := workload(rng, 3000)
	// Flush 100 has most quotes; flushes 101 and 102 are late corrections for the same
	// minutes, each quote a state of its own (two corrections of one key in flush 102 are
	// merged by Write).
	main, late1, late2 := all[:2500], all[2500:2800], all[2800:]
	if err := s.Write(ctx, 100, fold(main)); err != nil {
		t.Fatal(err)
	}
	checkCandles(t, s, main)
	var l1 []aggregate.Candle
	for _, q := range late1 {
		l1 = append(l1, fold([]quote{q})...)
	}
	if err := s.Write(ctx, 101, fold(late1)); err != nil {
		t.Fatal(err)
	}
	var l2 []aggregate.Candle
	for _, q := range late2 {
		l2 = append(l2, fold([]quote{q})...)
	}
	if err := s.Write(ctx, 102, l2); err != nil {
		t.Fatal(err)
	}
	checkCandles(t, s, all)

	// Partial candles, gap-filled (empty) candles and a range not on minute boundaries.
	if err := s.Write(ctx, 103, []aggregate.Candle{{Key: aggregate.Key{ISIN: isin("DDDDDDDDDDD4"), Minute: t0}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Candles(ctx, isin("DDDDDDDDDDD4"), t0, t0+aggregate.MinuteNanos)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty candle was stored: %v %v", got, err)
	}
	got, err = s.Candles(ctx, isin("AAAAAAAAAAA1"), t0+1, t0+2*aggregate.MinuteNanos+1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got {
		if c.Minute != t0+aggregate.MinuteNanos && c.Minute != t0+2*aggregate.MinuteNanos {
			t.Errorf("range (t0+1ns, t0+2m+1ns] returned minute %v", time.Unix(0, c.Minute).UTC())
		}
	}
	st := s.Stats()
	if st.Flushes != 4-1 || st.ChunksSkipped != 0 {
		// flush 103 held only an empty candle: nothing to write, not counted
		t.Errorf("stats %+v", st)
	}
	if st.Chunks != 6 {
		t.Errorf("%d chunks for 3 flushes spanning 2 days, want 6", st.Chunks)
	}
}

func TestClickHouseWriteSameFlushTwice(t *testing.T) {
	srv := chtest.Start(t)
	s := newSink(t, srv, 0)
	ctx := context.Background()
	all := workload(rand.New(rand.NewPCG(3, 4)), 1000)
	for i := 0; i < 3; i++ {
		if err := s.Write(ctx, 7, fold(all)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	checkCandles(t, s, all)
	if st := s.Stats(); st.Chunks != 2 || st.ChunksSkipped != 4 {
		t.Errorf("stats %+v, want 2 chunks written and 4 skipped", st)
	}
	// A fresh sink (a restarted process) skips it too.
	s2 := newSink(t, srv, 0)
	if err := s2.Write(ctx, 7, fold(all)); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.Chunks != 0 || st.ChunksSkipped != 2 {
		t.Errorf("restarted sink stats %+v, want everything skipped", st)
	}
	checkCandles(t, s, all)
}

// A crash between two chunks of one flush: the retry writes only the missing chunks.
func TestClickHouseWriteCrashBetweenChunks(t *testing.T) {
	srv := chtest.Start(t)
	s := newSink(t, srv, 10)
	ctx := context.Background()
	all := workload(rand.New(rand.NewPCG(5, 6)), 2000)
	candles := fold(all)
	crash := errors.New("simulated crash")
	s.testAfterFn = func(chunk int) error {
		if chunk == 3 {
			return crash
		}
		return nil
	}
	if err := s.Write(ctx, 9, candles); !errors.Is(err, crash) {
		t.Fatalf("write with a crash after chunk 3: %v", err)
	}
	s.testAfterFn = nil
	if err := s.Write(ctx, 9, candles); err != nil {
		t.Fatal(err)
	}
	checkCandles(t, s, all)
	chunks := len(splitChunks(mustPrepare(t, candles), 10))
	if st := s.Stats(); st.Chunks != uint64(chunks) || st.ChunksSkipped != 4 {
		t.Errorf("stats %+v, want %d chunks written once and 4 skipped", st, chunks)
	}
	// The same flush id with other contents is refused, not half-applied.
	if err := s.Write(ctx, 9, candles[:len(candles)-1]); !errors.Is(err, ErrFlushConflict) {
		t.Errorf("rewrite of flush 9 with other candles: %v, want ErrFlushConflict", err)
	}
	checkCandles(t, s, all)
}

func mustPrepare(t *testing.T, c []aggregate.Candle) []aggregate.Candle {
	t.Helper()
	rows, err := prepare(c)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// ClickHouse stopped mid-run (killed between two chunks of a flush) and restarted.
func TestClickHouseServerKilledAndRestarted(t *testing.T) {
	srv := chtest.Start(t)
	s := newSink(t, srv, 5)
	ctx := context.Background()
	all := workload(rand.New(rand.NewPCG(7, 8)), 3000)
	first, second := all[:1500], all[1500:]
	if err := s.Write(ctx, 1, fold(first)); err != nil {
		t.Fatal(err)
	}
	s.testBeforeFn = func(chunk int) error {
		if chunk == 2 {
			srv.Kill()
		}
		return nil
	}
	if err := s.Write(ctx, 2, fold(second)); err == nil {
		t.Fatal("write succeeded while the server was killed")
	}
	s.testBeforeFn = nil
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := s.Write(tctx, 2, fold(second)); err == nil {
		t.Fatal("write succeeded while the server was down")
	}
	cancel()
	srv.Restart(t)
	// The retry after the restart (and a repeat of the first flush) lands exactly once.
	var err error
	for try := 0; try < 3; try++ { // the pool may hand out a dead connection first
		if err = s.Write(ctx, 2, fold(second)); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("write after restart: %v", err)
	}
	if err := s.Write(ctx, 1, fold(first)); err != nil {
		t.Fatal(err)
	}
	checkCandles(t, s, all)
	if st := s.Stats(); st.ChunksSkipped < 2+1 {
		t.Errorf("stats %+v: want the two chunks landed before the kill and all of flush 1 skipped", st)
	}
}

func TestClickHouseWriteRejectsBadCandles(t *testing.T) {
	srv := chtest.Start(t)
	s := newSink(t, srv, 0)
	ctx := context.Background()
	ok := aggregate.Candle{Key: aggregate.Key{ISIN: isin("AAAAAAAAAAA1"), Minute: t0}}
	ok.Add(t0, 1, 100)
	for name, c := range map[string]aggregate.Candle{
		"zero ISIN":          {Key: aggregate.Key{Minute: t0}, Quotes: 1},
		"minute not aligned": {Key: aggregate.Key{ISIN: ok.ISIN, Minute: t0 + 1}, Quotes: 1},
		"negative minute":    {Key: aggregate.Key{ISIN: ok.ISIN, Minute: -aggregate.MinuteNanos}, Quotes: 1},
	} {
		if err := s.Write(ctx, 1, []aggregate.Candle{ok, c}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := s.Write(ctx, 1, nil); err != nil {
		t.Errorf("empty flush: %v", err)
	}
	if _, err := NewClickHouseSink(ctx, ClickHouseOptions{DSN: srv.DSN, ChunkRows: MaxChunkRows + 1}); err == nil {
		t.Error("chunk rows above the maximum accepted")
	}
	if _, err := NewClickHouseSink(ctx, ClickHouseOptions{DSN: "http://" + srv.HTTPAddr}); err == nil {
		t.Error("HTTP DSN accepted")
	}
}

func TestClickHouseInstruments(t *testing.T) {
	srv := chtest.Start(t)
	s := newSink(t, srv, 0)
	ctx := context.Background()
	a, b, c := isin("AAAAAAAAAAA1"), isin("BBBBBBBBBBB2"), isin("CCCCCCCCCCC3")
	events := []InstrumentEvent{
		{Seq: 1, TS: t0 + 1, Kind: feed.KindAdd, ISIN: a, Incarnation: 1, Description: "alpha"},
		{Seq: 2, TS: t0 + 2, Kind: feed.KindAdd, ISIN: b, Incarnation: 2, Description: "beta"},
		{Seq: 3, TS: t0 + 3, Kind: feed.KindAdd, ISIN: c, Incarnation: 3, Description: "gamma"},
		{Seq: 4, TS: t0 + 4, Kind: feed.KindAdd, ISIN: a, Incarnation: 1, Description: "alpha 'renamed'\n\\"},
		{Seq: 5, TS: t0 + 5, Kind: feed.KindDelete, ISIN: b, Incarnation: 2, Description: "beta"},
		{Seq: 6, TS: t0 + 6, Kind: feed.KindAdd, ISIN: b, Incarnation: 6, Description: "beta reborn"},
		{Seq: 7, TS: t0 + 7, Kind: feed.KindDelete, ISIN: c, Incarnation: 3, Description: "gamma"},
	}
	// Written in two batches, the second batch twice (a retry), and the first again.
	for _, batch := range [][]InstrumentEvent{events[:3], events[3:], events[3:], events[:3]} {
		if err := s.WriteInstruments(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Instruments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Instrument{
		{ISIN: a, Incarnation: 1, Description: "alpha 'renamed'\n\\", AddedTS: t0 + 1},
		{ISIN: b, Incarnation: 6, Description: "beta reborn", AddedTS: t0 + 6},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Instruments:\n got %+v\nwant %+v", got, want)
	}
	hist, err := s.InstrumentHistory(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	wantHist := []Instrument{
		{ISIN: b, Incarnation: 2, Description: "beta", AddedTS: t0 + 2, DeletedTS: t0 + 5, Deleted: true},
		{ISIN: b, Incarnation: 6, Description: "beta reborn", AddedTS: t0 + 6},
	}
	if !reflect.DeepEqual(hist, wantHist) {
		t.Errorf("InstrumentHistory(B):\n got %+v\nwant %+v", hist, wantHist)
	}
	if err := s.WriteInstruments(ctx, []InstrumentEvent{{Seq: 9, Kind: feed.KindQuote, ISIN: a}}); err == nil {
		t.Error("QUOTE event accepted")
	}
}

// TestClickHouseOutboxSinkSkipsHotEvents: the hot events in a flush (for the alert sinks)
// are not written to ClickHouse; the flush's candles and instruments are.
func TestClickHouseOutboxSinkSkipsHotEvents(t *testing.T) {
	srv := chtest.Start(t)
	s := newSink(t, srv, 0)
	ctx := context.Background()
	a := isin("AAAAAAAAAAA1")
	c := aggregate.Candle{Key: aggregate.Key{ISIN: a, Incarnation: 1, Minute: t0}}
	c.Add(t0+1, 2, 100_000_000)
	ev := hot.Event{ID: 3, ISIN: a, Incarnation: 1, TS: t0 + 2, Price: 150_000_000, ReferencePrice: 100_000_000, ReferenceTS: t0 - 1}
	items := []store.OutboxItem{
		{Tag: 1, Kind: store.OutboxInstrument, Instrument: store.InstrumentEvent{Seq: 1, TS: t0, Kind: feed.KindAdd, New: true, ISIN: a, Incarnation: 1, Description: "alpha"}},
		{Tag: 3, Idx: 0, Kind: store.OutboxClosed, Candle: c},
		{Tag: 3, Idx: store.OutboxHotIdx, Kind: store.OutboxHot, Event: ev},
	}
	if err := s.OutboxSink().Write(ctx, 1, items); err != nil {
		t.Fatal(err)
	}
	got, err := s.Candles(ctx, a, t0, t0+aggregate.MinuteNanos)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []aggregate.Candle{c}) {
		t.Errorf("Candles:\n got %+v\nwant %+v", got, []aggregate.Candle{c})
	}
	if ins, err := s.Instruments(ctx); err != nil || len(ins) != 1 {
		t.Errorf("Instruments = %+v, %v", ins, err)
	}
}

// BenchmarkClickHouseWrite writes flushes of 50,000 candles (one minute of the spec
// workload) and reports candle rows per second.
func BenchmarkClickHouseWrite(b *testing.B) {
	srv := chtest.Start(b)
	s := newSink(b, srv, 0)
	ctx := context.Background()
	const n = 50_000
	candles := make([]aggregate.Candle, n)
	for i := range candles {
		c := &candles[i]
		var id feed.ISIN
		copy(id[:], fmt.Sprintf("X%011d", i))
		c.Key = aggregate.Key{ISIN: id, Incarnation: uint64(i + 1)}
		for j := 0; j < 30; j++ {
			c.Add(int64(j)*2e9, uint64(i*30+j), feed.Price(1_000_000+i+j))
		}
	}
	if err := s.Ping(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		minute := t0 + int64(i)*aggregate.MinuteNanos
		for j := range candles {
			candles[j].Minute = minute
		}
		if err := s.Write(ctx, uint64(i+1), candles); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "rows/s")
}
