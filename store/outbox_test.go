package store

import (
	"encoding/hex"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
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
	s := New(openDB(t), nil)
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

// TestOutboxHotEvents: hot events round-trip through the outbox after the record's other
// items, are counted by CountOutboxHot, and an unknown payload version is an error rather
// than a silently wrong event.
func TestOutboxHotEvents(t *testing.T) {
	s := New(openDB(t), nil)
	isin, _ := feed.ParseISIN("HOT000000001")
	ev := hot.Event{ID: 9, ISIN: isin, Incarnation: 1, TS: 300e9, Price: 150_000_000, ReferencePrice: 100_000_000, ReferenceTS: 0}
	ev.ChangePercent = hot.Change(ev.Price, ev.ReferencePrice)
	c := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: 1, Minute: 0}}
	c.Add(1e9, 2, 100_000_000)
	items := []OutboxItem{
		{Tag: 9, Idx: OutboxHotIdx, Kind: OutboxHot, Event: ev},
		{Tag: 9, Idx: 0, Kind: OutboxClosed, Candle: c},
	}
	if err := s.Apply(&Batch{Seq: 9, Events: []hot.Event{ev}, Outbox: items}); err != nil {
		t.Fatal(err)
	}
	var got []OutboxItem
	if err := s.ScanOutbox(0, 9, func(it *OutboxItem) (bool, error) { got = append(got, *it); return true, nil }); err != nil {
		t.Fatal(err)
	}
	want := []OutboxItem{items[1], items[0]} // key order: the hot event last
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("scan:\n got %+v\nwant %+v", got, want)
	}
	if got[1].Kind.String() != "hot" || string(got[1].Event.AppendJSON(nil)) != string(ev.AppendJSON(nil)) {
		t.Fatalf("hot item %s: %s", got[1].Kind, got[1].Event.AppendJSON(nil))
	}
	if n, err := s.CountOutboxHot(0, 9); err != nil || n != 1 {
		t.Fatalf("CountOutboxHot = %d, %v", n, err)
	}
	if n, err := s.CountOutboxHot(10, 20); err != nil || n != 0 {
		t.Fatalf("CountOutboxHot after = %d, %v", n, err)
	}
	if n, err := s.CountOutbox(0, 9, 0); err != nil || n != 2 {
		t.Fatalf("CountOutbox = %d, %v", n, err)
	}

	// A payload version this build does not know (a newer one wrote it) is reported.
	v := encodeOutbox(&items[0])
	v[1] = outboxHotVersion + 1
	var it OutboxItem
	if err := decodeOutbox(OutboxKey(9, OutboxHotIdx), v, &it); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("decode of version %d: %v", v[1], err)
	}
}

// TestOutboxEncodingUnchanged pins the encodings of the kinds that existed before hot events,
// and that outboxes written by earlier builds read the same: candles are written in format 2
// since issue 15 (encodeCandle), and the format-1 item written before still decodes.
func TestOutboxEncodingUnchanged(t *testing.T) {
	isin, _ := feed.ParseISIN("DJ40J281M584")
	c := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: 3, Minute: 120e9}}
	c.Add(121e9, 7, 1_250_000)
	closedHead := "01444a34304a3238314d35383400000000000000030000001bf08eb000"
	cases := []struct {
		it  OutboxItem
		hex string
		old string // written by earlier builds, if the encoding changed since
	}{
		{OutboxItem{Kind: OutboxClosed, Candle: c}, closedHead + "02a0cb980100000080e8cbc2850700070001",
			closedHead + "00000000001312d000000000001312d000000000001312d000000000001312d00000001c" +
				"2c297a000000001c2c297a00000000000000000700000000000000070000000000000001"},
		{OutboxItem{Kind: OutboxInstrument, Instrument: InstrumentEvent{Seq: 5, TS: 10, Kind: feed.KindAdd, New: true, ISIN: isin, Incarnation: 5, Description: "a b"}},
			"03" + hex.EncodeToString([]byte{byte(feed.KindAdd)}) + "010000000000000005000000000000000a0000000000000005444a34304a3238314d353834612062", ""},
	}
	for _, tc := range cases {
		got := hex.EncodeToString(encodeOutbox(&tc.it))
		if got != tc.hex {
			t.Errorf("%s encodes as\n %s\nwas\n %s", tc.it.Kind, got, tc.hex)
		}
		for _, h := range []string{tc.hex, tc.old} {
			if h == "" {
				continue
			}
			var back OutboxItem
			v, _ := hex.DecodeString(h)
			if err := decodeOutbox(OutboxKey(0, 0), v, &back); err != nil || !reflect.DeepEqual(back, tc.it) {
				t.Errorf("%s %s decodes as %+v, %v", tc.it.Kind, h, back, err)
			}
		}
	}
}
