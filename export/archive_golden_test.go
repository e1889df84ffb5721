package export

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
	"github.com/quotesdev/quotes/wal"
)

var update = flag.Bool("update", false, "rewrite the testdata golden files")

// goldenHex compares got with the hex golden file (64 bytes a line); -update rewrites it.
func goldenHex(t *testing.T, path string, got []byte) []byte {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(got); i += 64 {
		b.WriteString(hex.EncodeToString(got[i:min(i+64, len(got))]))
		b.WriteByte('\n')
	}
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	want, err := hex.DecodeString(strings.ReplaceAll(string(text), "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: encoding differs from the golden:\n got %x\nwant %x", path, got, want)
	}
	return want
}

// goldenRecords are a few minutes of two instruments, one deleted with an open minute, and
// a quote for an unknown ISIN (held).
func goldenRecords() []wal.Record {
	t0 := time.Date(2026, 3, 1, 10, 58, 0, 0, time.UTC).UnixNano()
	a, _ := feed.ParseISIN("US0378331005")
	b, _ := feed.ParseISIN("DE0007164600")
	c, _ := feed.ParseISIN("GB0002634946")
	msgs := []feed.Message{
		{Kind: feed.KindAdd, TS: t0, ISIN: a, Description: "Apple"},
		{Kind: feed.KindAdd, TS: t0 + 1e9, ISIN: b, Description: "SAP"},
		{Kind: feed.KindQuote, TS: t0 + 2e9, ISIN: a, Price: 170_250_000},
		{Kind: feed.KindQuote, TS: t0 + 3e9, ISIN: b, Price: 120_000_000},
		{Kind: feed.KindQuote, TS: t0 + 61e9, ISIN: a, Price: 171_000_000},
		{Kind: feed.KindQuote, TS: t0 + 125e9, ISIN: a, Price: 169_500_000},
		{Kind: feed.KindQuote, TS: t0 + 126e9, ISIN: b, Price: 121_500_000},
		{Kind: feed.KindDelete, TS: t0 + 127e9, ISIN: b},
		{Kind: feed.KindQuote, TS: t0 + 128e9, ISIN: c, Price: 5_000_000},
		{Kind: feed.KindQuote, TS: t0 + 129e9, ISIN: a, Price: 169_000_000},
	}
	recs := make([]wal.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = wal.Record{Seq: uint64(i + 1), Message: m}
	}
	return recs
}

// TestArchiveStateGolden: the archiver's committed state (a/state/…) and its candle spool
// encode byte-identically to testdata written by the code before internal/encoding, and the
// golden decodes to the same state.
func TestArchiveStateGolden(t *testing.T) {
	spool, err := newCandleSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer spool.close()
	a := &Archiver{agg: aggregate.New(aggregate.DefaultOptions()), pending: map[int64]uint64{}}
	for _, rec := range goldenRecords() {
		a.agg.Apply(rec, spool)
	}
	if spool.n == 0 {
		t.Fatal("no candle closed: the spool golden would be empty")
	}
	hour := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano()
	pending := map[int64]uint64{hour: 1, hour + int64(time.Hour): 5, -int64(time.Hour): 3}
	want := goldenHex(t, "testdata/archive_state.golden", a.encodeState(10, pending))

	b := &Archiver{agg: aggregate.New(aggregate.DefaultOptions()), pending: map[int64]uint64{}}
	if err := b.decodeState(want); err != nil {
		t.Fatal(err)
	}
	if b.cutSeq != 10 || b.applied != 10 || !maps.Equal(b.pending, pending) {
		t.Errorf("decoded cut %d applied %d pending %v", b.cutSeq, b.applied, b.pending)
	}
	if again := b.encodeState(b.cutSeq, b.pending); !bytes.Equal(again, want) {
		t.Errorf("decoded state encodes differently:\n got %x\nwant %x", again, want)
	}
	for n := range len(want) - 1 {
		c := &Archiver{agg: aggregate.New(aggregate.DefaultOptions()), pending: map[int64]uint64{}}
		if err := c.decodeState(want[:n]); !errors.Is(err, encoding.ErrCorrupt) {
			t.Fatalf("state truncated to %d of %d bytes: error %v, want encoding.ErrCorrupt", n, len(want), err)
		}
	}

	// The spool: what it wrote, and what it reads back.
	if err := spool.w.Flush(); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, spool.n*spoolRecordSize)
	if _, err := spool.f.ReadAt(raw, 0); err != nil {
		t.Fatal(err)
	}
	goldenHex(t, "testdata/archive_spool.golden", raw)
	var got []string
	if err := spool.each(func(c *aggregate.Candle) error {
		got = append(got, fmt.Sprintf("%+v", *c))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != spool.n {
		t.Fatalf("spool read %d candles, wrote %d", len(got), spool.n)
	}
	wantText := "{Key:{ISIN:DE0007164600 Incarnation:2 Minute:1772362680000000000} Open:120 High:120 Low:120 Close:120 OpenTS:1772362683000000000 CloseTS:1772362683000000000 OpenSeq:4 CloseSeq:4 Quotes:1}"
	if got[0] != wantText {
		t.Errorf("first spooled candle\n got %s\nwant %s", got[0], wantText)
	}
}
