package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/feed"
)

// TestFormat1LogStillOpens: a log written in block format 1 (before the ISIN dictionary)
// opens, reads, and takes appends in format 2 after it; the whole log reads back in order,
// also after a reopen and with Repair (which verifies every block of both formats).
func TestFormat1LogStillOpens(t *testing.T) {
	dir := t.TempDir()
	var old []feed.Message
	for n := uint64(0); n < 300; n++ {
		old = append(old, testMsg(7, n))
	}
	// Two format-1 blocks written straight into Badger, as the old writer did.
	l := openTest(t, DefaultOptions(dir))
	cum := int64(-1 << 63)
	err := l.DB().Update(func(txn *badger.Txn) error {
		for _, part := range [][]feed.Message{old[:100], old[100:]} {
			var e blockEncoder
			first := uint64(1)
			if len(part) == 200 {
				first = 101
			}
			e.reset(first)
			for i := range part {
				e.addV1(&part[i])
			}
			var v []byte
			v, cum = e.finishVersion(cum, blockVersion1)
			if err := txn.Set(blockKey(first), bytes.Clone(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openTest(t, DefaultOptions(dir))
	if l.LastSeq() != 300 {
		t.Fatalf("LastSeq %d after opening a format-1 log, want 300", l.LastSeq())
	}
	more := append(quoteBatch(0, 500), old[:50]...) // new ISINs and ISINs of the old blocks
	if first, err := l.Append(more); err != nil || first != 301 {
		t.Fatalf("append: first %d, %v", first, err)
	}
	want := append(append([]feed.Message(nil), old...), more...)
	check := func(l *Log) {
		t.Helper()
		recs := readAll(t, l, 1)
		if len(recs) != len(want) {
			t.Fatalf("%d records, want %d", len(recs), len(want))
		}
		for i, r := range recs {
			if r.Seq != uint64(i+1) || r.Message != want[i] {
				t.Fatalf("record %d: %+v, want %+v", i+1, r, want[i])
			}
		}
	}
	check(l)
	ids := len(l.dict.snapshot())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions(dir)
	opts.Repair = true
	l = openTest(t, opts)
	check(l)
	if n := len(l.dict.snapshot()); n != ids {
		t.Fatalf("dictionary of %d ids after reopen, %d before", n, ids)
	}
	// Appending known ISINs again adds no dictionary entry.
	if _, err := l.Append(more[:100]); err != nil {
		t.Fatal(err)
	}
	if n := len(l.dict.snapshot()); n != ids {
		t.Fatalf("dictionary grew to %d ids for known ISINs (was %d)", n, ids)
	}
}

// TestDictionaryDamage: a dictionary with a hole fails Open with a *CorruptionError; Repair
// drops the entries from the hole on and the blocks that use them, and the log goes on.
func TestDictionaryDamage(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, DefaultOptions(dir))
	if _, err := l.Append(quoteBatch(0, 100)); err != nil {
		t.Fatal(err)
	}
	var second []feed.Message
	for n := uint64(0); n < 100; n++ {
		second = append(second, testMsg(3, n)) // new ISINs: new ids
	}
	if _, err := l.Append(second); err != nil {
		t.Fatal(err)
	}
	idsFirst := 0
	for _, m := range quoteBatch(0, 100) {
		if id, ok := l.dict.ids.Get(&m.ISIN); ok && int(id)+1 > idsFirst {
			idsFirst = int(id) + 1
		}
	}
	ids := len(l.dict.snapshot())
	if idsFirst >= ids {
		t.Fatalf("the second append added no ISIN (%d, %d): the test needs new ones", idsFirst, ids)
	}
	if err := l.DB().Update(func(txn *badger.Txn) error { return txn.Delete(dictKey(uint32(ids - 1))) }); err != nil {
		t.Fatal(err)
	}
	if err := l.DB().Update(func(txn *badger.Txn) error { return txn.Delete(dictKey(uint32(idsFirst))) }); err != nil {
		t.Fatal(err)
	}
	l.Close()
	opts := DefaultOptions(dir)
	opts.Logger = quietLogger()
	if _, err := Open(opts); !errors.As(err, new(*CorruptionError)) {
		t.Fatalf("open with a dictionary hole: %v, want a *CorruptionError", err)
	}
	opts.Repair = true
	l = openTest(t, opts)
	if l.LastSeq() != 100 {
		t.Fatalf("after repair LastSeq %d, want 100 (the second block uses the lost ids)", l.LastSeq())
	}
	if got := readAll(t, l, 1); len(got) != 100 {
		t.Fatalf("%d records after repair", len(got))
	}
	if _, err := l.Append(second); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, l, 1); len(got) != 200 || got[150].Message != second[50] {
		t.Fatalf("after repair and append: %d records", len(got))
	}
}

// TestManyNewISINsInOneGroup: a group that brings more new ISINs than fit in one Badger
// transaction with its blocks (the first group of a log at 100,000 instruments, ~4 MB of
// ids, over the cap of the default memtable) is written, and the ids are there after a
// reopen.
func TestManyNewISINsInOneGroup(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions(dir)
	l := openTest(t, opts)
	var msgs []feed.Message
	for n := uint64(0); n < 100_000; n++ {
		msgs = append(msgs, testMsg(7, n))
	}
	if _, err := l.Append(msgs); err != nil {
		t.Fatalf("append of %d new ISINs: %v", len(msgs), err)
	}
	ids := len(l.dict.snapshot())
	if ids < 90_000 {
		t.Fatalf("%d ids, want about 100,000 new ones", ids)
	}
	l.Close()
	l = openTest(t, opts)
	if got := len(l.dict.snapshot()); got != ids {
		t.Fatalf("%d ids after reopen, want %d", got, ids)
	}
	got := readAll(t, l, 1)
	if len(got) != len(msgs) {
		t.Fatalf("read %d records, want %d", len(got), len(msgs))
	}
	for i := range got {
		if got[i].ISIN != msgs[i].ISIN {
			t.Fatalf("record %d: ISIN %s, want %s", i, got[i].ISIN, msgs[i].ISIN)
		}
	}
}

// TestLookupThenEncode: encoding records with the ids dict.lookup found for groups of them
// gives the bytes, and the dictionary, of asking the dictionary record by record — with
// ISINs new within a group (some twice), zero ISINs (ticks) and invalid ones.
func TestLookupThenEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	isins := make([]feed.ISIN, 300)
	for i := range isins {
		copy(isins[i][:], fmt.Sprintf("XS%010d", rng.IntN(1e9)))
	}
	isins[7] = feed.ISIN{}            // a tick's
	copy(isins[8][:], "not an isin!") // not valid: stored raw
	var msgs []feed.Message
	for i := range 2000 {
		k := rng.IntN(len(isins))
		if i < 64 {
			k = i / 2 // new ISINs, each twice in a row, within the first groups
		}
		msgs = append(msgs, feed.Message{TS: int64(i) * 1e6, Kind: feed.KindQuote, ISIN: isins[k], Price: feed.Price(1e6 + i)})
	}
	one, group := newDict(), newDict()
	var a, b blockEncoder
	a.reset(1)
	b.reset(1)
	a.dict, b.dict = one, group
	var ids [dictPrefetch]uint32
	for i := range msgs {
		a.add(&msgs[i])
		if i%dictPrefetch == 0 {
			group.lookup(msgs[i:min(i+dictPrefetch, len(msgs))], &ids)
		}
		b.addWithID(&msgs[i], ids[i%dictPrefetch])
	}
	va, _ := a.finish(0)
	vb, _ := b.finish(0)
	if !bytes.Equal(va, vb) {
		t.Fatal("the block encoded with looked-up ids differs")
	}
	if na, nb := one.snapshot(), group.snapshot(); !slices.Equal(na, nb) || len(na) < 250 {
		t.Fatalf("dictionaries of %d and %d ISINs differ (or too few)", len(na), len(nb))
	}
}
