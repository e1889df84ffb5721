package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/wal"
)

// TestApplyManyLate: a batch of more late corrections than one Badger transaction can
// hold merges them all when their records are known (LateSeqs), in transactions that end
// at a record; without LateSeqs the single transaction is too big. The memtable is the
// WAL's default (wal.Options.MemTableSize), so the cap is 15 % of it.
func TestApplyManyLate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(wal.DefaultOptions(dir).MemTableSize))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := New(db, nil)

	const n = 4*maxLatesPerTxn + 100
	const minute = int64(60e9)
	var closed, late []aggregate.Candle
	var seqs []uint64
	for i := range n {
		isin, _ := feed.ParseISIN(fmt.Sprintf("US%010d", i))
		c := candleAt(isin, 1, minute)
		closed = append(closed, c)
		l := aggregate.Candle{Key: c.Key}
		l.Add(minute+2e9, uint64(10_000+i), 2_000_000)
		late = append(late, l)
		seqs = append(seqs, uint64(10_000+i/2)) // two corrections per record
	}
	if err := s.Apply(&Batch{Seq: 5, Closed: closed}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(&Batch{Seq: 20_000, Late: late}); !errors.Is(err, badger.ErrTxnTooBig) {
		t.Fatalf("%d merges in one transaction: %v, want ErrTxnTooBig (else the test shows nothing)", n, err)
	}
	if err := s.Apply(&Batch{Seq: 20_000, Late: late, LateSeqs: seqs}); err != nil {
		t.Fatalf("%d merges with their records: %v", n, err)
	}
	if got, err := s.Applied(); err != nil || got != 20_000 {
		t.Fatalf("Applied() = %d, %v; want 20000", got, err)
	}
	for i := range n {
		got, err := s.Candles(closed[i].ISIN, 1, minute, minute+60e9)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Quotes != 2 || got[0].High != 2_000_000 {
			t.Fatalf("candle %d after the merge: %+v", i, got)
		}
	}
}

// TestWritesInPieces: PutCandles and deleteKeys write more entries than one Badger write
// takes from the store (maxEntriesPerWrite), all of them.
func TestWritesInPieces(t *testing.T) {
	s := New(openDB(t), nil)
	const n = 2*maxEntriesPerWrite + 1
	const minute = int64(60e9)
	var cs []aggregate.Candle
	var keys [][]byte
	for i := range n {
		isin, _ := feed.ParseISIN(fmt.Sprintf("US%010d", i))
		cs = append(cs, candleAt(isin, 1, minute))
		keys = append(keys, candleKey(cs[i].Key))
	}
	if err := s.PutCandles(cs); err != nil {
		t.Fatal(err)
	}
	if k := len(storedKeys(t, s)); k != n {
		t.Fatalf("PutCandles of %d candles stored %d", n, k)
	}
	if d, err := s.deleteKeys(keys, "delete candles"); err != nil || d != n {
		t.Fatalf("deleteKeys: %d, %v; want %d", d, err, n)
	}
	if k := len(storedKeys(t, s)); k != 0 {
		t.Fatalf("%d of %d candles left after deleteKeys", k, n)
	}
}

// TestApplyMovesApplied: every kind of batch moves Applied() to its Seq, the watermark
// written with the items (no merge) or with the merges, and a batch of more items than
// one Badger write holds (maxEntriesPerWrite) is whole once Applied() says so. Every write
// is persisted (New's persist) before the next, and before the call returns.
func TestApplyMovesApplied(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// Every write is persisted before the store moves on: the last persisted version is
	// the DB's after each call.
	var persisted uint64
	persists := 0
	s := New(db, func() error { persisted = db.MaxVersion(); persists++; return nil })
	checkPersisted := func(what string) {
		t.Helper()
		if v := db.MaxVersion(); persisted != v {
			t.Fatalf("%s: version %d written, %d persisted", what, v, persisted)
		}
	}
	const minute = int64(60e9)
	isin, _ := feed.ParseISIN("US0378331005")
	many := make([]aggregate.Candle, 2*maxEntriesPerWrite+1)
	for i := range many {
		other, _ := feed.ParseISIN(fmt.Sprintf("US%010d", i))
		many[i] = candleAt(other, 1, minute)
	}
	late := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: 1, Minute: minute}}
	late.Add(minute+2e9, 90, 2_000_000)
	for _, c := range []struct {
		name  string
		batch Batch
	}{
		{"nothing", Batch{Seq: 3}},
		{"closed", Batch{Seq: 10, Closed: []aggregate.Candle{candleAt(isin, 1, minute)}}},
		{"event", Batch{Seq: 11, Events: []hot.Event{{ID: 11, ISIN: isin, TS: minute}}}},
		{"late", Batch{Seq: 20, Late: []aggregate.Candle{late}}},
		{"closed and late", Batch{Seq: 30, Closed: []aggregate.Candle{candleAt(isin, 1, 2*minute)}, Late: []aggregate.Candle{late}}},
		{"many closed", Batch{Seq: 40, Closed: many}},
	} {
		if err := s.Apply(&c.batch); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got, err := s.Applied(); err != nil || got != c.batch.Seq {
			t.Fatalf("%s: Applied() = %d, %v; want %d", c.name, got, err, c.batch.Seq)
		}
		checkPersisted(c.name)
		if c.name == "many closed" && persists < 3 {
			t.Fatalf("%d candles written in %d persisted writes, want one per %d", len(many), persists, maxEntriesPerWrite)
		}
		persists = 0
	}
	if got := len(storedKeys(t, s)); got != len(many)+2 {
		t.Fatalf("%d candles stored, want %d", got, len(many)+2)
	}
	got, err := s.Candles(isin, 1, minute, minute+60e9)
	if err != nil || len(got) != 1 || got[0].Quotes != 3 || got[0].High != 2_000_000 {
		t.Fatalf("the candle merged twice: %+v, %v", got, err)
	}
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"register", func() error { _, err := s.RegisterConsumer("c"); return err }},
		{"target", func() error { return s.SetConsumerTarget("c", "somewhere") }},
		{"unregister", func() error { return s.UnregisterConsumer("c") }},
		{"retention", func() error { _, err := s.DeleteCandlesBefore(2 * minute); return err }},
	} {
		if err := op.do(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		checkPersisted(op.name)
	}
}
