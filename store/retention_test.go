package store

import (
	"errors"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
)

func candleAt(isin feed.ISIN, inc uint64, minute int64) aggregate.Candle {
	c := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: inc, Minute: minute}}
	c.Add(minute+1e9, uint64(minute/1e9), 1_000_000)
	return c
}

func storedKeys(t *testing.T, s *Store) map[aggregate.Key]bool {
	t.Helper()
	out := map[aggregate.Key]bool{}
	if err := s.ScanCandles(func(c aggregate.Candle) error { out[c.Key] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeleteCandlesBefore: candles before the cut go, over several ISINs and incarnations
// (including the largest incarnation id), except those with an outbox item a registered
// consumer has not delivered; those go once it has.
func TestDeleteCandlesBefore(t *testing.T) {
	s := New(openDB(t), nil)
	a, _ := feed.ParseISIN("DJ40J281M584")
	b, _ := feed.ParseISIN("US0378331005")
	const m = int64(aggregate.MinuteNanos)
	var all []aggregate.Candle
	for _, k := range []struct {
		isin feed.ISIN
		inc  uint64
	}{{a, 1}, {a, 9}, {b, 4}, {b, ^uint64(0)}} {
		for i := int64(0); i < 10; i++ {
			all = append(all, candleAt(k.isin, k.inc, (100+i)*m))
		}
	}
	// a/9 minute 101 is in the outbox at tag 50, not yet delivered to "ch" (wm 40); a/1
	// minute 102 at tag 30, delivered.
	held, delivered := all[11], all[2]
	out := []OutboxItem{{Tag: 30, Kind: OutboxClosed, Candle: delivered}, {Tag: 50, Kind: OutboxLate, Candle: held}}
	if err := s.Apply(&Batch{Seq: 60, Closed: all, Outbox: out}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterConsumer("ch"); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteIntent("ch", 40); err != nil {
		t.Fatal(err)
	}

	n, err := s.DeleteCandlesBefore(105 * m)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4*5-1 {
		t.Errorf("deleted %d candles, want 19 (4 incarnations × 5 minutes, one held)", n)
	}
	keys := storedKeys(t, s)
	for _, c := range all {
		want := c.Minute >= 105*m || c.Key == held.Key
		if keys[c.Key] != want {
			t.Errorf("candle %s/%d minute %d: stored %v, want %v", c.ISIN, c.Incarnation, c.Minute/m, keys[c.Key], want)
		}
	}
	// Again: nothing more (idempotent), and nothing at all with an earlier cut.
	if n, err := s.DeleteCandlesBefore(105 * m); err != nil || n != 0 {
		t.Errorf("second pass deleted %d (%v)", n, err)
	}
	// Delivered: the held candle goes too.
	if err := s.CompleteIntent("ch", 60); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteCandlesBefore(105 * m); err != nil || n != 1 {
		t.Errorf("after delivery deleted %d (%v), want the held one", n, err)
	}
	if len(storedKeys(t, s)) != 4*5 {
		t.Errorf("%d candles left, want 20", len(storedKeys(t, s)))
	}
	// The store now knows its oldest minute (105) and skips passes with nothing before it;
	// but candles written later below that bound (a backfill, a late correction) are seen.
	if n, err := s.DeleteCandlesBefore(104 * m); err != nil || n != 0 {
		t.Errorf("pass below the oldest minute deleted %d (%v)", n, err)
	}
	if err := s.PutCandles([]aggregate.Candle{candleAt(a, 1, 50*m)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(&Batch{Seq: 61, Late: []aggregate.Candle{candleAt(b, 4, 60*m)}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteCandlesBefore(105 * m); err != nil || n != 2 {
		t.Errorf("after writes of minutes 50 and 60 deleted %d (%v), want 2", n, err)
	}
	// A second Store over the same data (a restart) starts without the bound and scans.
	if err := s.PutCandles([]aggregate.Candle{candleAt(a, 1, 70*m)}); err != nil {
		t.Fatal(err)
	}
	if n, err := New(s.db, nil).DeleteCandlesBefore(105 * m); err != nil || n != 1 {
		t.Errorf("new Store over old candles deleted %d (%v), want 1", n, err)
	}
}

// TestConsumerLifecycle: last run, target, expiry of a stale consumer (its undelivered
// items recorded as lost and no longer kept), refusal when it ran meanwhile, and removal.
func TestConsumerLifecycle(t *testing.T) {
	s := New(openDB(t), nil)
	a, _ := feed.ParseISIN("DJ40J281M584")
	const m = int64(aggregate.MinuteNanos)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.RegisterConsumer("ch"); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchConsumer("ch", t0, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConsumerTarget("ch", "clickhouse://h:9000/db"); err != nil {
		t.Fatal(err)
	}
	items := []OutboxItem{
		{Tag: 3, Kind: OutboxClosed, Candle: candleAt(a, 1, 100*m)},
		{Tag: 7, Kind: OutboxClosed, Candle: candleAt(a, 1, 104*m)},
		{Tag: 7, Idx: 1, Kind: OutboxInstrument, Instrument: InstrumentEvent{Seq: 7, TS: 103 * m, Kind: feed.KindDelete, ISIN: a, Incarnation: 1}},
	}
	if err := s.Apply(&Batch{Seq: 8, Outbox: items}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetIntent("ch", Intent{First: 3, Last: 3, Items: 1}); err != nil {
		t.Fatal(err)
	}
	ci, ok, err := s.ConsumerInfo("ch")
	if err != nil || !ok || !ci.LastRun.Equal(t0) || !ci.LastSuccess.Equal(t0) || ci.Target != "clickhouse://h:9000/db" || !ci.HasIntent {
		t.Fatalf("ConsumerInfo = %+v, %v, %v", ci, ok, err)
	}
	// Not stale yet at t0: refused.
	if _, err := s.ExpireConsumer("ch", t0); !errors.Is(err, ErrConsumerActive) {
		t.Fatalf("expire a consumer that ran at the limit: %v", err)
	}
	lost, err := s.ExpireConsumer("ch", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if lost != (Lost{Items: 3, FirstTag: 3, LastTag: 7, From: 100 * m, To: 104 * m}) {
		t.Errorf("lost %+v", lost)
	}
	if n, err := s.TrimDelivered(); err != nil || n != 3 {
		t.Errorf("trim after expiry: %d (%v), want all 3", n, err)
	}
	ci, _, _ = s.ConsumerInfo("ch")
	if ci.Watermark != 8 || ci.HasIntent || ci.Lost != lost {
		t.Errorf("after expiry: %+v", ci)
	}
	// More items, expired again: the lost record accumulates.
	if err := s.Apply(&Batch{Seq: 9, Outbox: []OutboxItem{{Tag: 9, Kind: OutboxClosed, Candle: candleAt(a, 1, 106*m)}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExpireConsumer("ch", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ci, _, _ = s.ConsumerInfo("ch")
	if ci.Lost != (Lost{Items: 4, FirstTag: 3, LastTag: 9, From: 100 * m, To: 106 * m}) {
		t.Errorf("accumulated lost %+v", ci.Lost)
	}
	found, err := s.RemoveConsumer("ch")
	if err != nil || !found {
		t.Fatalf("remove: %v %v", found, err)
	}
	if all, err := s.ConsumerInfos(); err != nil || len(all) != 0 {
		t.Errorf("after remove: %+v %v", all, err)
	}
	if found, err := s.RemoveConsumer("ch"); err != nil || found {
		t.Errorf("second remove: %v %v", found, err)
	}
}
