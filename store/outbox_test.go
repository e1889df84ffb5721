package store

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
)

func openDB(t *testing.T) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(t.TempDir(), "db")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOutboxRoundTripScanTrim(t *testing.T) {
	s := New(openDB(t))
	isin, _ := feed.ParseISIN("DJ40J281M584")
	c := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: 3, Minute: 120e9}}
	c.Add(121e9, 7, 1_250_000)
	c.Add(122e9, 9, 1_100_000)
	items := []OutboxItem{
		{Tag: 5, Idx: 0, Kind: OutboxInstrument, Instrument: InstrumentEvent{Seq: 5, TS: 10, Kind: feed.KindAdd, New: true, ISIN: isin, Incarnation: 5, Description: "a b"}},
		{Tag: 9, Idx: 0, Kind: OutboxClosed, Candle: c},
		{Tag: 9, Idx: 1, Kind: OutboxLate, Candle: c},
		{Tag: 12, Idx: 0, Kind: OutboxInstrument, Instrument: InstrumentEvent{Seq: 12, TS: 20, Kind: feed.KindDelete, ISIN: isin, Incarnation: 5}},
	}
	if err := s.Apply(&Batch{Seq: 12, Outbox: items}); err != nil {
		t.Fatal(err)
	}
	// writing the same items again is harmless
	if err := s.Apply(&Batch{Seq: 12, Outbox: items}); err != nil {
		t.Fatal(err)
	}
	var got []OutboxItem
	scan := func(from, to uint64) {
		got = got[:0]
		if err := s.ScanOutbox(from, to, func(it *OutboxItem) (bool, error) { got = append(got, *it); return true, nil }); err != nil {
			t.Fatal(err)
		}
	}
	scan(0, 100)
	if !reflect.DeepEqual(got, items) {
		t.Fatalf("scan:\n got %+v\nwant %+v", got, items)
	}
	scan(6, 9)
	if !reflect.DeepEqual(got, items[1:3]) {
		t.Fatalf("scan 6..9: got %+v", got)
	}
	if n, err := s.CountOutbox(6, 100, 0); err != nil || n != 3 {
		t.Fatalf("CountOutbox = %d, %v", n, err)
	}

	st, err := s.RegisterConsumer("ch")
	if err != nil || st.Watermark != 0 || st.HasIntent || st.Epoch == 0 {
		t.Fatalf("register: %+v %v", st, err)
	}
	if _, err := s.RegisterConsumer("Bad/Name"); !errors.Is(err, ErrConsumerName) {
		t.Fatalf("bad name: %v", err)
	}
	// nothing delivered: nothing trimmed
	if n, err := s.TrimDelivered(); err != nil || n != 0 {
		t.Fatalf("trim = %d, %v", n, err)
	}
	in := Intent{First: 1, Last: 9, Items: 3}
	if err := s.SetIntent("ch", in); err != nil {
		t.Fatal(err)
	}
	st2, err := s.RegisterConsumer("ch")
	if err != nil || !st2.HasIntent || st2.Intent != in || st2.Epoch != st.Epoch {
		t.Fatalf("state with intent: %+v %v", st2, err)
	}
	if err := s.CompleteIntent("ch", 9); err != nil {
		t.Fatal(err)
	}
	if st3, _ := s.RegisterConsumer("ch"); st3.HasIntent || st3.Watermark != 9 {
		t.Fatalf("after complete: %+v", st3)
	}
	if n, err := s.TrimDelivered(); err != nil || n != 3 {
		t.Fatalf("trim = %d, %v", n, err)
	}
	scan(0, 100)
	if !reflect.DeepEqual(got, items[3:]) {
		t.Fatalf("after trim: %+v", got)
	}
	if err := s.UnregisterConsumer("ch"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.TrimDelivered(); err != nil || n != 1 {
		t.Fatalf("trim without consumers = %d, %v", n, err)
	}
}
