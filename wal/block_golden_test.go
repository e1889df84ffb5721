package wal

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

var update = flag.Bool("update", false, "rewrite the testdata golden files")

// goldenBlockMessages cover every field: kinds (a tick with the zero ISIN), a negative and a
// zero ts delta, an empty, a short and a long (multi-byte length) description, negative and
// large prices.
func goldenBlockMessages() []feed.Message {
	a, _ := feed.ParseISIN("US0378331005")
	b, _ := feed.ParseISIN("DE0007164600")
	const t0 = 1_767_225_600_000_000_000
	return []feed.Message{
		{Kind: feed.KindAdd, TS: t0, ISIN: a, Description: "Apple Inc."},
		{Kind: feed.KindQuote, TS: t0 + 1_500_000, ISIN: a, Price: 170_250_000},
		{Kind: feed.KindQuote, TS: t0 - 90_000_000_000, ISIN: a, Price: 169_999_999},
		{Kind: feed.KindQuote, TS: t0 - 90_000_000_000, ISIN: b, Price: feed.MaxPrice},
		{Kind: KindTick, TS: t0 + 60_000_000_000},
		{Kind: feed.KindAdd, TS: t0 + 60_000_000_001, ISIN: b, Description: strings.Repeat("SAP SE ", 40)},
		{Kind: feed.KindDelete, TS: t0 + 61_000_000_000, ISIN: a},
		{Kind: feed.KindQuote, TS: t0 + 62_000_000_000, ISIN: b, Price: -1},
	}
}

// TestBlockGolden: a format-1 block encodes byte-identically to testdata/block.golden
// (written by the encoder before internal/encoding), and the golden decodes to the messages.
// Existing WALs must keep opening: format 1 is still read (not written any more).
func TestBlockGolden(t *testing.T) {
	msgs := goldenBlockMessages()
	var e blockEncoder
	e.reset(4242)
	for i := range msgs {
		e.addV1(&msgs[i])
	}
	got, cum := e.finishVersion(1_767_225_700_000_000_000, blockVersion1)
	if cum != 1_767_225_700_000_000_000 {
		t.Errorf("CumMaxTS %d", cum)
	}
	var text strings.Builder
	for i := 0; i < len(got); i += 64 {
		text.WriteString(hex.EncodeToString(got[i:min(i+64, len(got))]) + "\n")
	}
	const path = "testdata/block.golden"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	want, err := hex.DecodeString(strings.ReplaceAll(string(raw), "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("block encoding differs from the golden:\n got %x\nwant %x", got, want)
	}
	recs, h, err := decodeBlock(want, 4242, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantH := blockHeader{Version: 1, Count: uint32(len(msgs)), FirstSeq: 4242,
		MinTS: msgs[2].TS, MaxTS: msgs[7].TS, CumMaxTS: 1_767_225_700_000_000_000}
	if h != wantH {
		t.Errorf("header %+v, want %+v", h, wantH)
	}
	var back []feed.Message
	for i, r := range recs {
		if r.Seq != 4242+uint64(i) {
			t.Errorf("record %d has seq %d", i, r.Seq)
		}
		back = append(back, content(r.Message))
	}
	if !slices.Equal(back, msgs) {
		t.Errorf("decoded %+v\nwant %+v", back, msgs)
	}
	// The watermark value is a plain be64.
	if w := EncodeWatermark(0x0102030405060708); !bytes.Equal(w, []byte{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Errorf("EncodeWatermark: %x", w)
	}
	if s, err := DecodeWatermark([]byte{1, 2, 3, 4, 5, 6, 7, 8}); err != nil || s != 0x0102030405060708 {
		t.Errorf("DecodeWatermark: %d, %v", s, err)
	}
	if _, err := DecodeWatermark([]byte{1, 2, 3}); !errors.Is(err, encoding.ErrCorrupt) {
		t.Errorf("DecodeWatermark of 3 bytes: %v, want encoding.ErrCorrupt", err)
	}

	// Damage: every error is a decode error, and as a CorruptionError it matches both
	// ErrCorrupt and encoding.ErrCorrupt.
	flipped := bytes.Clone(want)
	flipped[len(flipped)/2] ^= 0x40
	short := bytes.Clone(want[:blockHeaderSize+3])
	short = binary.BigEndian.AppendUint32(short, crc32.Checksum(short, castagnoli()))
	for name, b := range map[string][]byte{"checksum": flipped, "short": want[:10], "truncated records": short} {
		_, _, err := decodeBlock(b, 4242, nil, nil)
		var de *decodeError
		if !errors.As(err, &de) {
			t.Fatalf("%s: error %v is not a decodeError", name, err)
		}
		ce := error(&CorruptionError{Seq: 4242, Err: err})
		if !errors.Is(ce, ErrCorrupt) || !errors.Is(ce, encoding.ErrCorrupt) {
			t.Errorf("%s: %v does not match ErrCorrupt and encoding.ErrCorrupt", name, ce)
		}
	}
	if !errors.Is(ErrCorrupt, encoding.ErrCorrupt) {
		t.Error("ErrCorrupt does not match encoding.ErrCorrupt")
	}
}

// TestBlockGoldenV2: a format-2 block (the current one) encodes byte-identically to
// testdata/block2.golden, assigns dictionary ids in order of first use, and decodes back to
// the messages with that dictionary, each with its id + 1 as Ref; without it, the ids are
// unknown and the block is corrupt.
func TestBlockGoldenV2(t *testing.T) {
	msgs := goldenBlockMessages()
	// Kinds outside 1…7 and a raw ISIN (dictionary full) take the escape paths.
	c, _ := feed.ParseISIN("FR0000120271")
	msgs = append(msgs,
		feed.Message{Kind: 9, TS: msgs[7].TS + 1, ISIN: c, Price: 5},
		feed.Message{Kind: feed.KindQuote, TS: msgs[7].TS + 3_000_000, ISIN: c, Price: 1})
	d := newDict()
	var e blockEncoder
	e.reset(4242)
	e.dict = d
	for i := range msgs {
		if i == len(msgs)-1 {
			e.dict = nil // as if the dictionary were full: the ISIN goes raw
		}
		e.add(&msgs[i])
	}
	got, _ := e.finish(1_767_225_700_000_000_000)
	if names := d.snapshot(); len(names) != 3 || names[0] != msgs[0].ISIN || names[1] != msgs[3].ISIN || names[2] != c {
		t.Fatalf("dictionary %q, want the ISINs in order of first use", names)
	}
	var text strings.Builder
	for i := 0; i < len(got); i += 64 {
		text.WriteString(hex.EncodeToString(got[i:min(i+64, len(got))]) + "\n")
	}
	const path = "testdata/block2.golden"
	if *update {
		if err := os.WriteFile(path, []byte(text.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	want, err := hex.DecodeString(strings.ReplaceAll(string(raw), "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("block encoding differs from the golden:\n got %x\nwant %x", got, want)
	}
	recs, h, err := decodeBlock(want, 4242, nil, d.snapshot())
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 2 || h.Count != uint32(len(msgs)) {
		t.Errorf("header %+v", h)
	}
	var back []feed.Message
	var refs []uint32
	for _, r := range recs {
		back = append(back, content(r.Message))
		refs = append(refs, r.Ref)
	}
	if !slices.Equal(back, msgs) {
		t.Errorf("decoded %+v\nwant %+v", back, msgs)
	}
	// Ref is the dictionary id + 1; 0 for the tick (no ISIN) and the ISIN stored raw.
	if want := []uint32{1, 1, 1, 2, 0, 2, 1, 2, 3, 0}; !slices.Equal(refs, want) {
		t.Errorf("decoded refs %v, want %v", refs, want)
	}
	if _, _, err := decodeBlock(want, 4242, nil, d.snapshot()[:1]); err == nil {
		t.Error("a block with ids missing from the dictionary decoded")
	}
}
