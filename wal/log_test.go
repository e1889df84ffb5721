package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/dgraph-io/badger/v4"
	"github.com/quotesdev/quotes/feed"
)

func TestParseSyncMode(t *testing.T) {
	for s, want := range map[string]SyncMode{"always": SyncAlways, "batch": SyncBatch, "none": SyncNone, " Batch ": SyncBatch} {
		got, err := ParseSyncMode(s)
		if err != nil || got != want {
			t.Errorf("ParseSyncMode(%q) = %v, %v; want %v", s, got, err, want)
		}
		if got.String() != want.String() {
			t.Errorf("String mismatch")
		}
	}
	if _, err := ParseSyncMode("sometimes"); err == nil {
		t.Error("ParseSyncMode(sometimes): no error")
	}
}

func TestBlockRoundTrip(t *testing.T) {
	var e blockEncoder
	e.reset(42)
	d := newDict()
	e.dict = d
	var msgs []feed.Message
	for n := uint64(0); n < 500; n++ {
		m := testMsg(1, n)
		if n == 7 {
			m.TS = -5 // out of order, negative
		}
		msgs = append(msgs, m)
		e.add(&m)
	}
	v, cum := e.finish(1_800_000_000_000_000_000)
	if cum != 1_800_000_000_000_000_000 {
		t.Errorf("cum max = %d", cum)
	}
	names := d.snapshot()
	recs, h, err := decodeBlock(v, 42, nil, names)
	if err != nil {
		t.Fatal(err)
	}
	if h.Count != 500 || h.FirstSeq != 42 || h.MinTS != -5 {
		t.Errorf("header %+v", h)
	}
	for i, r := range recs {
		if r.Seq != 42+uint64(i) || content(r.Message) != msgs[i] {
			t.Fatalf("record %d: got %+v want %+v", i, r, msgs[i])
		}
	}
	if _, _, err := decodeBlock(v, 43, nil, names); err == nil {
		t.Error("key/header mismatch not detected")
	}
	// Every single-byte flip and every truncation must be detected.
	for i := range v {
		c := append([]byte(nil), v...)
		c[i] ^= 0x10
		if _, _, err := decodeBlock(c, 42, nil, names); err == nil {
			t.Fatalf("flip at byte %d not detected", i)
		}
	}
	for n := 0; n < len(v); n += 7 {
		if _, _, err := decodeBlock(v[:n], 42, nil, names); err == nil {
			t.Fatalf("truncation to %d bytes not detected", n)
		}
	}
	if avg := float64(len(v)) / 500; avg > 12 {
		t.Errorf("%.1f bytes/record, want ≤ 12 (dictionary ids, millisecond deltas)", avg)
	}
}

func TestAppendReadTail(t *testing.T) {
	l := openTest(t, Options{InMemory: true, Sync: SyncAlways})
	if l.LastSeq() != 0 || l.FirstSeq() != 1 {
		t.Fatalf("empty log: last %d first %d", l.LastSeq(), l.FirstSeq())
	}
	r := l.NewReader(0)
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("empty: %v", err)
	}
	var want []feed.Message
	for b := 0; b < 20; b++ {
		var msgs []feed.Message
		for i := 0; i < b*37+1; i++ {
			msgs = append(msgs, testMsg(0, uint64(len(want)+len(msgs))))
		}
		first, err := l.Append(msgs)
		if err != nil {
			t.Fatal(err)
		}
		if first != uint64(len(want))+1 {
			t.Fatalf("append %d: first %d, want %d", b, first, len(want)+1)
		}
		want = append(want, msgs...)
		// the tailing reader sees exactly the new records, then EOF
		for i := range msgs {
			rec, err := r.Next()
			if err != nil || rec.Seq != first+uint64(i) || rec.Message != msgs[i] {
				t.Fatalf("tail: %+v %v", rec, err)
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("tail end: %v", err)
		}
	}
	if l.LastSeq() != uint64(len(want)) {
		t.Fatalf("LastSeq %d want %d", l.LastSeq(), len(want))
	}
	// readers from every position, including mid-block
	for from := uint64(1); from <= uint64(len(want))+1; from += 13 {
		got := readAll(t, l, from)
		if len(got) != len(want)-int(from)+1 {
			t.Fatalf("from %d: %d records", from, len(got))
		}
		for i, rec := range got {
			if rec.Seq != from+uint64(i) || rec.Message != want[rec.Seq-1] {
				t.Fatalf("from %d: record %d = %+v", from, i, rec)
			}
		}
	}
	if first, err := l.Append(nil); err != nil || first != uint64(len(want))+1 {
		t.Fatalf("empty append: %d %v", first, err)
	}
}

func TestLargeAppendSplitsBlocksAtomically(t *testing.T) {
	l := openTest(t, Options{InMemory: true, Sync: SyncAlways, MaxBlockBytes: 1000})
	msgs := quoteBatch(0, 5000)
	first, err := l.Append(msgs)
	if err != nil || first != 1 {
		t.Fatal(first, err)
	}
	got := readAll(t, l, 1)
	if len(got) != 5000 {
		t.Fatalf("%d records", len(got))
	}
	for i := range got {
		if got[i].Message != msgs[i] {
			t.Fatalf("record %d differs", i)
		}
	}
	blocks := 0
	for s := uint64(1); s <= 5000; {
		err := l.db.View(func(txn *badger.Txn) error {
			return l.findBlock(txn, s, func(f uint64, v []byte) error {
				h, err := decodeHeader(v, f)
				s = h.lastSeq() + 1
				return err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		blocks++
	}
	if blocks < 50 {
		t.Errorf("%d blocks, expected the group to be split", blocks)
	}
}

func TestReopenContinuesSequence(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		l, err := Open(Options{Dir: dir, Sync: SyncAlways, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if want := uint64(round * 100); l.LastSeq() != want {
			t.Fatalf("round %d: LastSeq %d want %d", round, l.LastSeq(), want)
		}
		first, err := l.Append(quoteBatch(round*100, 100))
		if err != nil || first != uint64(round*100+1) {
			t.Fatalf("round %d: append first %d err %v", round, first, err)
		}
		got := readAll(t, l, 1)
		want := quoteBatch(0, (round+1)*100)
		for i := range want {
			if content(got[i].Message) != want[i] {
				t.Fatalf("record %d differs", i)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentAppends(t *testing.T) {
	l := openTest(t, Options{InMemory: true, Sync: SyncAlways})
	const G, N = 8, 200
	var wg sync.WaitGroup
	firsts := make([][]uint64, G)
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < N; n++ {
				k := n%5 + 1
				msgs := make([]feed.Message, k)
				for i := range msgs {
					msgs[i] = testMsg(uint64(g), uint64(n*10+i))
				}
				first, err := l.Append(msgs)
				if err != nil {
					t.Error(err)
					return
				}
				firsts[g] = append(firsts[g], first)
			}
		}(g)
	}
	wg.Wait()
	recs := readAll(t, l, 1)
	if uint64(len(recs)) != l.LastSeq() {
		t.Fatalf("%d records, LastSeq %d", len(recs), l.LastSeq())
	}
	bySeq := map[uint64]feed.Message{}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("seq %d at %d", r.Seq, i)
		}
		bySeq[r.Seq] = content(r.Message)
	}
	for g := range firsts {
		for n, first := range firsts[g] {
			for i := 0; i < n%5+1; i++ {
				if bySeq[first+uint64(i)] != testMsg(uint64(g), uint64(n*10+i)) {
					t.Fatalf("g %d append %d: record %d not where Append said", g, n, i)
				}
			}
		}
	}
}

func TestSyncBatchGroupsOnMockClock(t *testing.T) {
	mock := clock.NewMock()
	mock.Set(time.Unix(1_700_000_000, 0))
	l := openTest(t, Options{InMemory: true, Sync: SyncBatch, Clock: mock, BatchInterval: 5 * time.Millisecond})
	// The first append is written at once: no write happened in the last interval.
	if _, err := l.Append(quoteBatch(0, 10)); err != nil {
		t.Fatal(err)
	}
	// Now the writer holds further appends until the interval since that write passed.
	const G = 6
	var wg sync.WaitGroup
	errs := make(chan error, G)
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			_, err := l.Append(quoteBatch(100+g*10, 10))
			errs <- err
		}(g)
	}
	waitGathered(t, l, G*10)
	if l.LastSeq() != 10 {
		t.Fatalf("group written before the interval: LastSeq %d", l.LastSeq())
	}
	mock.Add(5 * time.Millisecond)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if l.LastSeq() != 10+G*10 {
		t.Fatalf("LastSeq %d", l.LastSeq())
	}
	checkOneBlock(t, l, 11, G*10) // all six appends went into one block
}

// waitGathered waits until the writer has gathered n records into its current group.
func waitGathered(t *testing.T, l *Log, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.gathered.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("writer gathered %d records, want %d", l.gathered.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkOneBlock checks that the block starting at first holds count records.
func checkOneBlock(t *testing.T, l *Log, first uint64, count uint32) {
	t.Helper()
	err := l.db.View(func(txn *badger.Txn) error {
		return l.findBlock(txn, first, func(f uint64, v []byte) error {
			h, err := decodeHeader(v, f)
			if err == nil && (h.FirstSeq != first || h.Count != count) {
				t.Errorf("group block %+v, want one block of %d from %d", h, count, first)
			}
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// StartAppend returns at once; appends started while the writer waits are written in the
// order they were started, as one group (one block, one sync), and the position of the
// last one is the source's.
func TestStartAppendGroupsInOrder(t *testing.T) {
	mock := clock.NewMock()
	mock.Set(time.Unix(1_700_000_000, 0))
	l := openTest(t, Options{InMemory: true, Sync: SyncBatch, Clock: mock, BatchInterval: 5 * time.Millisecond})
	if _, err := l.Append(quoteBatch(0, 10)); err != nil {
		t.Fatal(err)
	}
	const G = 3
	var pending [G]PendingAppend
	for g := range pending {
		var err error
		pos := []byte(fmt.Sprintf("offset=%d", g))
		if pending[g], err = l.StartAppend(quoteBatch(100+g*10, 10), "a.jsonl", pos); err != nil {
			t.Fatal(err)
		}
	}
	waitGathered(t, l, G*10)
	if l.LastSeq() != 10 {
		t.Fatalf("group written before the interval: LastSeq %d", l.LastSeq())
	}
	mock.Add(5 * time.Millisecond)
	for g, p := range pending {
		first, err := p.Wait()
		if err != nil || first != uint64(11+g*10) {
			t.Fatalf("append %d: first %d, %v; want %d", g, first, err, 11+g*10)
		}
	}
	checkOneBlock(t, l, 11, G*10)
	if pos, ok, err := l.SourcePosition("a.jsonl"); err != nil || !ok || string(pos) != "offset=2" {
		t.Fatalf("position %q %v %v, want the last append's", pos, ok, err)
	}
	// Without a source, StartAppend is Append.
	p, err := l.StartAppend(quoteBatch(200, 5), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	mock.Add(5 * time.Millisecond)
	if first, err := p.Wait(); err != nil || first != 41 {
		t.Fatalf("first %d, %v; want 41", first, err)
	}
}

func TestAppendFromPosition(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, Options{Dir: dir, Sync: SyncAlways})
	if _, ok, err := l.SourcePosition("a.jsonl"); ok || err != nil {
		t.Fatalf("no position yet: %v %v", ok, err)
	}
	if _, err := l.AppendFrom(quoteBatch(0, 10), "a.jsonl", []byte("offset=100")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendFrom(nil, "a.jsonl", []byte("offset=150")); err != nil { // rejected lines only
		t.Fatal(err)
	}
	if _, err := l.AppendFrom(nil, "", nil); err == nil {
		t.Fatal("empty source accepted")
	}
	pos, ok, err := l.SourcePosition("a.jsonl")
	if err != nil || !ok || string(pos) != "offset=150" {
		t.Fatalf("position %q %v %v", pos, ok, err)
	}
	if l.LastSeq() != 10 {
		t.Fatalf("LastSeq %d", l.LastSeq())
	}
}

func TestWatermarks(t *testing.T) {
	l := openTest(t, Options{InMemory: true})
	if wm, err := l.Watermark("store"); wm != 0 || err != nil {
		t.Fatal(wm, err)
	}
	if err := l.SetWatermark("store", 42); err != nil {
		t.Fatal(err)
	}
	// another package writes its watermark in its own transaction
	err := l.DB().Update(func(txn *badger.Txn) error {
		return txn.Set(WatermarkKey("clickhouse"), EncodeWatermark(7))
	})
	if err != nil {
		t.Fatal(err)
	}
	if wm, err := l.Watermark("clickhouse"); wm != 7 || err != nil {
		t.Fatal(wm, err)
	}
	all, err := l.Watermarks()
	if err != nil || len(all) != 2 || all["store"] != 42 || all["clickhouse"] != 7 {
		t.Fatal(all, err)
	}
}

func TestWaitAndClose(t *testing.T) {
	l, err := Open(Options{InMemory: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background(), 0) }()
	if _, err := l.Append(quoteBatch(0, 1)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- l.Wait(ctx, 1) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	go func() { done <- l.Wait(context.Background(), 1) }()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after close: %v", err)
	}
	if _, err := l.Append(quoteBatch(0, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after close: %v", err)
	}
	if _, err := l.NewReader(1).Next(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCloseCompletesConcurrentAppends(t *testing.T) {
	l, err := Open(Options{InMemory: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := uint64(0)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				first, err := l.Append(quoteBatch(0, 3))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = max(acked, first+2)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	last := l.LastSeq()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if acked < last {
		t.Fatalf("acked %d < last %d", acked, last)
	}
}

// TestRefs: Append gives each message the Ref its record is read back with, one per ISIN
// (its dictionary id + 1: dense, in order of first use), 0 for a record without an ISIN;
// the refs stay those of the ISINs after a reopen.
func TestRefs(t *testing.T) {
	dir := t.TempDir()
	refOf := map[feed.ISIN]uint32{}
	for round := range 2 {
		l, err := Open(Options{Dir: dir, Sync: SyncNone, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		msgs := quoteBatch(round*500, 1000) // the second round repeats half of the first's ISINs
		msgs = append(msgs, feed.Message{TS: msgs[0].TS, Kind: KindTick})
		first, err := l.Append(msgs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range readAll(t, l, first) {
			m := &msgs[i]
			if r.Ref != m.Ref {
				t.Fatalf("round %d record %d: read with ref %d, Append set %d", round, i, r.Ref, m.Ref)
			}
			if m.ISIN == (feed.ISIN{}) {
				if m.Ref != 0 {
					t.Fatalf("record %d without an ISIN has ref %d", i, m.Ref)
				}
				continue
			}
			want, seen := refOf[m.ISIN]
			if !seen {
				want = uint32(len(refOf)) + 1
				refOf[m.ISIN] = want
			}
			if m.Ref != want {
				t.Fatalf("round %d record %d (%s): ref %d, want %d", round, i, m.ISIN, m.Ref, want)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
