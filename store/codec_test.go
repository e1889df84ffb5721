package store

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/internal/encoding"
)

// TestCodecLayout pins the candle and event values and keys byte by byte (candles in
// format 2, events in be64 fields, in the documented order); pipeline's data-directory
// golden pins them as written before internal/encoding (candles in format 1).
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
	// Format 2: zigzag varints of 1, 2-1, -3-1, 4-1, 5, 6-5, uvarint 7, varint 8-7, uvarint 9.
	if got, want := encodeCandle(&c), []byte{2, 2, 2, 7, 6, 10, 2, 7, 2, 9}; !bytes.Equal(got, want) {
		t.Errorf("candle value %x, want %x", got, want)
	}
	// Format 1 (72 bytes, written before issue 15) is still read.
	v1 := aggregate.Candle{Key: c.Key}
	if err := decodeCandle(be(1, 2, -3, 4, 5, 6, 7, 8, 9), &v1); err != nil || v1 != c {
		t.Errorf("format-1 candle: %+v, %v", v1, err)
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

// TestCandleRoundTrip: extreme and ordinary candles survive format 2, including one whose
// encoding is padded to tell it from format 1 by its length.
func TestCandleRoundTrip(t *testing.T) {
	const maxI, minI = math.MaxInt64, math.MinInt64
	// Six 10-byte varints (2^62 and differences of 2^62, wrapping), a 9-byte OpenSeq and two
	// 1-byte ones: 72 bytes with the format byte, so padded.
	padded := aggregate.Candle{Open: 1 << 62, High: minI, Low: minI, Close: minI, OpenTS: 1 << 62, CloseTS: minI, OpenSeq: 1 << 56, CloseSeq: 1 << 56}
	cases := []struct {
		name string
		c    aggregate.Candle
	}{
		{"zero", aggregate.Candle{}},
		{"spec quote", aggregate.Candle{Open: 1234567, High: 1250000, Low: 1200000, Close: 1240000,
			OpenTS: 1_796_000_000_123_456_789, CloseTS: 1_796_000_059_987_654_321, OpenSeq: 30_000_000, CloseSeq: 32_999_999, Quotes: 60}},
		{"gap-filled", aggregate.Candle{Open: 5, High: 5, Low: 5, Close: 5}},
		{"extremes", aggregate.Candle{Open: minI, High: maxI, Low: minI, Close: maxI, OpenTS: minI, CloseTS: maxI, OpenSeq: math.MaxUint64, CloseSeq: 1, Quotes: math.MaxUint64}},
		{"padded", padded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := encodeCandle(&tc.c)
			if len(v) == candleV1Size || len(v) > candleMaxSize {
				t.Fatalf("%d bytes", len(v))
			}
			var back aggregate.Candle
			if err := decodeCandle(v, &back); err != nil || back != tc.c {
				t.Fatalf("round trip: %+v, %v", back, err)
			}
		})
	}
	// The case above is chosen to be padded; a non-zero padding byte is corrupt.
	v := encodeCandle(&padded)
	if len(v) != candleV1Size+1 || v[len(v)-1] != 0 {
		t.Fatalf("padded candle: %d bytes, last %x", len(v), v[len(v)-1])
	}
	v[len(v)-1] = 1
	if err := decodeCandle(v, new(aggregate.Candle)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("non-zero padding: %v", err)
	}
}

// FuzzCandle: any nine fields round-trip through format 2; any bytes decode or fail with
// ErrCorrupt, never panic, and what decodes re-encodes to something that decodes the same.
func FuzzCandle(f *testing.F) {
	f.Add(int64(1), int64(2), int64(-3), int64(4), int64(5), int64(6), uint64(7), uint64(8), uint64(9), []byte{2, 2, 2, 7, 6, 10, 2, 7, 2, 9})
	f.Add(int64(math.MaxInt64), int64(math.MinInt64), int64(0), int64(-1), int64(1<<62), int64(-1<<62), uint64(math.MaxUint64), uint64(0), uint64(1), make([]byte, candleV1Size))
	f.Fuzz(func(t *testing.T, o, h, l, c, ots, cts int64, oseq, cseq, n uint64, raw []byte) {
		in := aggregate.Candle{Open: feed.Price(o), High: feed.Price(h), Low: feed.Price(l), Close: feed.Price(c), OpenTS: ots, CloseTS: cts, OpenSeq: oseq, CloseSeq: cseq, Quotes: n}
		var back aggregate.Candle
		if err := decodeCandle(encodeCandle(&in), &back); err != nil || back != in {
			t.Fatalf("round trip of %+v: %+v, %v", in, back, err)
		}
		var got aggregate.Candle
		if err := decodeCandle(raw, &got); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		var again aggregate.Candle
		if err := decodeCandle(encodeCandle(&got), &again); err != nil || again != got {
			t.Fatalf("re-encoding %+v: %+v, %v", got, again, err)
		}
	})
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
	s := New(db, nil)
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
