package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/internal/encoding"
)

// TestCodecLayout pins the candle and event values and keys byte by byte (be64 fields in
// the documented order); pipeline's data-directory golden pins them as written before
// internal/encoding.
func TestCodecLayout(t *testing.T) {
	isin, _ := feed.ParseISIN("US0378331005")
	c := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: 7, Minute: -60_000_000_000},
		Open: 1, High: 2, Low: -3, Close: 4, OpenTS: 5, CloseTS: 6, OpenSeq: 7, CloseSeq: 8, Quotes: 9}
	be := func(vs ...int64) []byte {
		var b []byte
		for _, v := range vs {
			b = append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		}
		return b
	}
	if got, want := encodeCandle(&c), be(1, 2, -3, 4, 5, 6, 7, 8, 9); !bytes.Equal(got, want) {
		t.Errorf("candle value %x, want %x", got, want)
	}
	wantKey := append(append([]byte("c/"), "US0378331005"...), be(7, -60_000_000_000)...)
	if got := candleKey(c.Key); !bytes.Equal(got, wantKey) {
		t.Errorf("candle key %x, want %x", got, wantKey)
	}
	if k, err := parseCandleKey(wantKey); err != nil || k != c.Key {
		t.Errorf("parseCandleKey: %+v, %v", k, err)
	}
	back := aggregate.Candle{Key: c.Key}
	if err := decodeCandle(encodeCandle(&c), &back); err != nil || back != c {
		t.Errorf("candle round trip: %+v, %v", back, err)
	}

	ev := hot.Event{ID: 11, Incarnation: 7, TS: 12, Price: 13, ReferencePrice: 10, ReferenceTS: -14, ISIN: isin}
	ev.ChangePercent = hot.Change(ev.Price, ev.ReferencePrice)
	if got, want := encodeEvent(&ev), append(be(11, 7, 12, 13, 10, -14), "US0378331005"...); !bytes.Equal(got, want) {
		t.Errorf("event value %x, want %x", got, want)
	}
	if got, want := eventKey(11), append([]byte("h/"), be(11)...); !bytes.Equal(got, want) {
		t.Errorf("event key %x, want %x", got, want)
	}
	var eb hot.Event
	if err := decodeEvent(encodeEvent(&ev), &eb); err != nil || eb != ev {
		t.Errorf("event round trip: %+v, %v", eb, err)
	}
}

// TestCorruptValues: short, long and foreign values fail with an error matching both
// ErrCorrupt and encoding.ErrCorrupt, and leave the destination unchanged.
func TestCorruptValues(t *testing.T) {
	isin, _ := feed.ParseISIN("US0378331005")
	c := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: 1}, Open: 5, High: 5, Low: 5, Close: 5, Quotes: 1}
	good := encodeCandle(&c)
	ev := hot.Event{ID: 1, ISIN: isin, Price: 2, ReferencePrice: 1}
	goodEv := encodeEvent(&ev)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, encoding.ErrCorrupt) {
			t.Errorf("%s: error %v, want ErrCorrupt and encoding.ErrCorrupt", what, err)
		}
	}
	for _, v := range [][]byte{nil, good[:len(good)-1], append(bytes.Clone(good), 0)} {
		dst := c
		check("candle", decodeCandle(v, &dst))
		if dst != c {
			t.Errorf("failed decode changed the candle: %+v", dst)
		}
		e := ev
		check("event", decodeEvent(v, &e))
		if e != ev {
			t.Errorf("failed decode changed the event: %+v", e)
		}
	}
	check("event", decodeEvent(goodEv[:len(goodEv)-1], new(hot.Event)))
	for _, k := range [][]byte{[]byte("c/"), append(candleKey(c.Key), 0), append([]byte("x/"), candleKey(c.Key)[2:]...)} {
		_, err := parseCandleKey(k)
		check("candle key", err)
	}

	// The watermark value, through the store.
	db := openDB(t)
	s := New(db)
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(keyApplied, []byte{1, 2, 3}) }); err != nil {
		t.Fatal(err)
	}
	_, err := s.Applied()
	check("applied", err)
	if err := s.Apply(&Batch{Seq: 0x0102030405060708}); err != nil {
		t.Fatal(err)
	}
	if seq, err := s.Applied(); err != nil || seq != 0x0102030405060708 {
		t.Errorf("Applied: %x, %v", seq, err)
	}
}
