package pipeline

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/internal/encoding"
	"github.com/quotesdev/quotes/store"
	"github.com/quotesdev/quotes/wal"
)

var update = flag.Bool("update", false, "rewrite the testdata golden files")

// The data-directory golden: testdata/datadir.kv.gz holds every Badger key and value of a
// data directory written by the codecs before internal/encoding existed (WAL blocks and
// watermarks, store candles, hot events and watermark, the pipeline checkpoint, the
// outbox), and testdata/datadir.dump what the pipeline derived from it (dump). The tests
// below prove that the current code reads such a directory the same way and writes
// byte-identical values.
const (
	goldenKV    = "testdata/datadir.kv.gz"
	goldenDump  = "testdata/datadir.dump"
	goldenMsgs  = 5000
	goldenBatch = 250
)

// goldenOptions never removes anything, so the directory is a deterministic function of the
// messages and the batch boundaries.
func goldenOptions() Options {
	opts := DefaultOptions()
	opts.CheckpointEvery = time.Minute
	opts.WALRetention = 100_000 * time.Hour
	opts.EventRetention = 100_000 * time.Hour
	return opts
}

func openGolden(t testing.TB, dir string) (*wal.Log, *Pipeline) {
	t.Helper()
	log, err := wal.Open(wal.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	// A registered outbox consumer that never delivers: retention keeps the whole outbox.
	if _, err := store.New(log.DB(), log.Persist).RegisterConsumer("test"); err != nil {
		t.Fatal(err)
	}
	p, err := Open(log, goldenOptions())
	if err != nil {
		log.Close()
		t.Fatal(err)
	}
	return log, p
}

// writeGoldenDir applies msgs in batches of goldenBatch to a new pipeline in dir, closes it
// and returns every key/value of the directory and the dump.
func writeGoldenDir(t testing.TB, dir string, msgs []feed.Message) ([]kv, string) {
	t.Helper()
	log, p := openGolden(t, dir)
	defer log.Close()
	for i := 0; i < len(msgs); i += goldenBatch {
		if err := p.Append(msgs[i:min(i+goldenBatch, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
	// No Finish: the checkpoint Close writes holds open candles and held quotes.
	d := dump(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return dumpKV(t, log.DB()), d
}

type kv struct{ k, v []byte }

func dumpKV(t testing.TB, db *badger.DB) []kv {
	t.Helper()
	var out []kv
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, kv{it.Item().KeyCopy(nil), v})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The kv file: per pair, be32 key length, key, be32 value length, value; gzipped.
func writeKVFile(t testing.TB, path string, kvs []kv) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	for _, p := range kvs {
		for _, b := range [][]byte{p.k, p.v} {
			n := len(b)
			zw.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
			zw.Write(b)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readKVFile(t testing.TB, path string) []kv {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var out []kv
	next := func() []byte {
		n := int(raw[0])<<24 | int(raw[1])<<16 | int(raw[2])<<8 | int(raw[3])
		b := raw[4 : 4+n]
		raw = raw[4+n:]
		return b
	}
	for len(raw) > 0 {
		k := next()
		out = append(out, kv{k, next()})
	}
	return out
}

// isEpoch reports the one random value of a data directory: an outbox consumer's flush-id
// epoch.
func isEpoch(k []byte) bool {
	return bytes.HasPrefix(k, []byte("x/")) && bytes.HasSuffix(k, []byte("/epoch"))
}

// TestGoldenDataDir writes a data directory from a simulated feed; with -update it records
// it as the golden.
func TestGoldenDataDir(t *testing.T) {
	if !*update {
		t.Skip("only with -update: the goldens are checked by TestGoldenDataDirReads and TestGoldenDataDirWrites")
	}
	msgs := goldenFeed()
	kvs, d := writeGoldenDir(t, filepath.Join(t.TempDir(), "gen"), msgs)
	if strings.Count(d, "H {") < 5 || !regexp.MustCompile(` Late:[1-9]`).MatchString(d) || !strings.Contains(d, "DELETE") {
		t.Fatal("the golden derives no hot events or no late candles; it would prove little")
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	writeKVFile(t, goldenKV, kvs)
	if err := os.WriteFile(goldenDump, []byte(d), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadGoldenDir creates a data directory holding the golden's keys and values.
func loadGoldenDir(t testing.TB, dir string, kvs []kv) {
	t.Helper()
	log, err := wal.Open(wal.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	wb := log.DB().NewWriteBatch()
	for _, p := range kvs {
		if err := wb.Set(p.k, p.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGoldenDataDirReads opens the golden data directory: the WAL, the checkpoint (the
// aggregator and hot detector states), the stored candles and events and the outbox decode
// to exactly what the code that wrote them derived.
func TestGoldenDataDirReads(t *testing.T) {
	kvs := readKVFile(t, goldenKV)
	want, err := os.ReadFile(goldenDump)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	loadGoldenDir(t, dir, kvs)
	log, p := openGolden(t, dir)
	defer log.Close()
	if s := p.Stats(); s.Records == 0 {
		t.Fatalf("nothing recovered: %+v", s)
	}
	got := dump(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	compareLines(t, "dump of the golden directory", got, string(want))
	for _, prefix := range []string{"w/", "m/checkpoint", "c/", "h/", "k/current", "k/d/", "s/applied", "o/", "x/test/"} {
		if !slices.ContainsFunc(kvs, func(p kv) bool { return bytes.HasPrefix(p.k, []byte(prefix)) }) {
			t.Errorf("the golden has no key %s…", prefix)
		}
	}
	// The WAL decodes to the records of the messages (deterministic simulator).
	msgs := goldenWAL(t, log)
	if want := goldenFeed(); !slices.Equal(msgs, want) {
		t.Fatalf("golden WAL has %d records, not the %d messages of goldenFeed", len(msgs), len(want))
	}
	// Reopening with the current code wrote nothing but the checkpoint, moved from Badger
	// to its file (issue 15) with the same state.
	after := dumpKV(t, log.DB())
	compareKV(t, after, slices.DeleteFunc(slices.Clone(kvs), func(p kv) bool { return bytes.HasPrefix(p.k, []byte("k/")) }))
	wantHdr, wantState := goldenCheckpoint(t, kvs)
	data, err := os.ReadFile(filepath.Join(dir, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if hdr, err := decodeFileHeader(data); err != nil || hdr.seq != wantHdr.seq || !sameCheckpointState(t, data[ckptFileHeader:], wantState) {
		t.Errorf("the moved checkpoint differs from the golden's (%v)", err)
	}
}

// goldenWAL reads every message of the log.
func goldenWAL(t testing.TB, log *wal.Log) []feed.Message {
	t.Helper()
	var msgs []feed.Message
	r := log.NewReader(1)
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return msgs
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Seq != uint64(len(msgs)+1) {
			t.Fatalf("record %d has seq %d", len(msgs)+1, rec.Seq)
		}
		msgs = append(msgs, rec.Message)
	}
}

// TestGoldenDataDirWrites feeds the golden WAL's messages to a new pipeline: every key and
// value it writes (WAL blocks, checkpoint, candles, events, watermarks, outbox) is
// byte-identical to the golden's, the outbox consumer's random epoch aside.
func TestGoldenDataDirWrites(t *testing.T) {
	kvs := readKVFile(t, goldenKV)
	dir := t.TempDir()
	loadGoldenDir(t, dir, kvs)
	log, err := wal.Open(wal.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	all := goldenWAL(t, log)
	log.Close()
	newDir := filepath.Join(t.TempDir(), "new")
	got, d := writeGoldenDir(t, newDir, all)
	want, err := os.ReadFile(goldenDump)
	if err != nil {
		t.Fatal(err)
	}
	compareLines(t, "dump of a directory written now", d, string(want))
	// Hot events go to the outbox since the golden was written: new keys (o/ tag idx ≥
	// store.OutboxHotIdx), one per stored event; everything else is byte-identical.
	hotKeys := 0
	got = slices.DeleteFunc(got, func(p kv) bool {
		isHot := bytes.HasPrefix(p.k, []byte("o/")) && len(p.k) == 2+8+4 &&
			uint32(p.k[10])<<24|uint32(p.k[11])<<16|uint32(p.k[12])<<8|uint32(p.k[13]) >= store.OutboxHotIdx
		if isHot {
			hotKeys++
		}
		return isHot
	})
	if n := strings.Count(d, "H {"); hotKeys != n {
		t.Errorf("%d hot events in the outbox, %d stored", hotKeys, n)
	}
	// The WAL is written in block format 2 since issue 15 (records name their ISIN by an id
	// of the dictionary under d/, one entry per ISIN): the blocks have the golden's keys, are
	// version 2 and hold the same records; the golden's format-1 blocks are still read (above).
	isWAL := func(p kv) bool { return bytes.HasPrefix(p.k, []byte("w/")) }
	var gotBlocks, wantBlocks [][]byte
	for _, p := range got {
		if isWAL(p) {
			gotBlocks = append(gotBlocks, p.k)
			if p.v[0] != 2 {
				t.Errorf("block %x written in format %d, want 2", p.k, p.v[0])
			}
		}
	}
	for _, p := range kvs {
		if isWAL(p) {
			wantBlocks = append(wantBlocks, p.k)
		}
	}
	if !slices.EqualFunc(gotBlocks, wantBlocks, bytes.Equal) {
		t.Errorf("%d WAL blocks, golden %d, or other keys", len(gotBlocks), len(wantBlocks))
	}
	dictKeys := 0
	got = slices.DeleteFunc(got, func(p kv) bool {
		if bytes.HasPrefix(p.k, []byte("d/")) {
			dictKeys++
			return true
		}
		return isWAL(p)
	})
	if dictKeys != 16 {
		t.Errorf("%d ISIN dictionary entries, want one per ISIN of goldenFeed (16)", dictKeys)
	}
	nlog, err := wal.Open(wal.DefaultOptions(newDir))
	if err != nil {
		t.Fatal(err)
	}
	if again := goldenWAL(t, nlog); !slices.Equal(again, all) {
		t.Errorf("the new WAL reads back %d records that differ from the golden's %d", len(again), len(all))
	}
	nlog.Close()
	// The checkpoint is a file since issue 15: its state is byte-identical to the state the
	// golden keeps in Badger (k/current and its chunks), and Badger holds no k/ key.
	wantHdr, wantState := goldenCheckpoint(t, kvs)
	data, err := os.ReadFile(filepath.Join(newDir, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := decodeFileHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.seq != wantHdr.seq || hdr.watermark != wantHdr.watermark || !sameCheckpointState(t, data[ckptFileHeader:], wantState) {
		t.Errorf("checkpoint file at seq %d (%d state bytes) differs from the golden's at seq %d (%d bytes)", hdr.seq, len(data)-ckptFileHeader, wantHdr.seq, len(wantState))
	}
	isCkpt := func(p kv) bool { return bytes.HasPrefix(p.k, []byte("k/")) }
	wantKV := slices.DeleteFunc(slices.DeleteFunc(slices.Clone(kvs), isWAL), isCkpt)
	// Candle states are written in format 2 since issue 15 (the golden's are format 1, still
	// read): stored candles and the outbox's closed and late items have the golden's keys,
	// their values are format 2, and the dump above compares what they hold.
	candles := 0
	for i := 0; i < min(len(got), len(wantKV)); i++ {
		if off := candleValueAt(got[i]); off >= 0 && bytes.Equal(got[i].k, wantKV[i].k) {
			if got[i].v[off] != 2 {
				t.Errorf("candle value of %q in format %d, want 2", got[i].k, got[i].v[off])
			}
			got[i].v, wantKV[i].v = nil, nil
			candles++
		}
	}
	if n := strings.Count(d, "C {"); candles < n {
		t.Errorf("%d candle values compared, %d candles stored", candles, n)
	}
	compareKV(t, got, wantKV)
}

// candleValueAt returns the offset of the candle state in p's value if p is a stored candle
// or an outbox item that carries one (store.OutboxClosed, store.OutboxLate), or -1.
func candleValueAt(p kv) int {
	switch {
	case bytes.HasPrefix(p.k, []byte("c/")):
		return 0
	case bytes.HasPrefix(p.k, []byte("o/")) && len(p.v) > 0 && (p.v[0] == byte(store.OutboxClosed) || p.v[0] == byte(store.OutboxLate)):
		return 1 + feed.ISINLen + 8 + 8
	}
	return -1
}

// sameCheckpointState reports whether the checkpoint state got holds the same state as the
// golden's want: the aggregator state byte-identical, the hot detector state the same
// once restored (the golden's is in hot state format 1, the code writes format 2 since).
func sameCheckpointState(t testing.TB, got, want []byte) bool {
	t.Helper()
	split := func(b []byte) ([]byte, []byte) {
		d := encoding.NewDecbuf(b)
		agg := d.UvarintBytes()
		if err := d.Err(); err != nil {
			t.Fatalf("checkpoint state: %v", err)
		}
		return agg, d.Get()
	}
	gotAgg, gotHot := split(got)
	wantAgg, wantHot := split(want)
	if !bytes.Equal(gotAgg, wantAgg) {
		return false
	}
	det := hot.New(goldenOptions().Hot)
	if err := det.RestoreState(wantHot); err != nil {
		t.Fatalf("the golden's hot state: %v", err)
	}
	return bytes.Equal(det.AppendState(nil), gotHot)
}

// goldenCheckpoint returns the header and state of the golden's checkpoint (legacy layout).
func goldenCheckpoint(t testing.TB, kvs []kv) (ckptHeader, []byte) {
	t.Helper()
	var hdr ckptHeader
	chunks := map[string][]byte{}
	for _, p := range kvs {
		switch {
		case string(p.k) == "k/current":
			h, err := decodeCkptHeader(p.v)
			if err != nil {
				t.Fatal(err)
			}
			hdr = h
		case bytes.HasPrefix(p.k, []byte("k/d/")):
			chunks[string(p.k)] = p.v
		}
	}
	var state []byte
	for i := uint32(0); i < hdr.chunks; i++ {
		state = append(state, chunks[string(chunkKey(hdr.seq, i))]...)
	}
	if hdr.seq == 0 || uint64(len(state)) != hdr.size {
		t.Fatalf("the golden's checkpoint: header %+v, %d state bytes", hdr, len(state))
	}
	return hdr, state
}

func compareKV(t testing.TB, got, want []kv) {
	t.Helper()
	for i := 0; i < min(len(got), len(want)); i++ {
		g, w := got[i], want[i]
		if !bytes.Equal(g.k, w.k) {
			t.Fatalf("key %d: got %q, want %q", i, g.k, w.k)
		}
		if !bytes.Equal(g.v, w.v) && !isEpoch(g.k) {
			t.Fatalf("value of %q differs:\n got %x\nwant %x", g.k, g.v, w.v)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d keys, golden %d", len(got), len(want))
	}
}

func compareLines(t testing.TB, what, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			t.Fatalf("%s differs at line %d:\n got %s\nwant %s", what, i+1, g[i], w[i])
		}
	}
	t.Fatalf("%s differs in length: %d vs %d lines", what, len(g), len(w))
}

// goldenFeed is a deterministic feed (math/rand/v2's PCG is specified) of goldenMsgs
// messages over 16 instruments and about ten minutes: adds (new and duplicate), deletes,
// quotes with hot moves and late quotes.
func goldenFeed() []feed.Message {
	rng := rand.New(rand.NewPCG(2026, 12))
	ts := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC).UnixNano()
	const n = 16
	isins := make([]feed.ISIN, n)
	prices := make([]feed.Price, n)
	msgs := make([]feed.Message, 0, goldenMsgs)
	add := func(i int) {
		msgs = append(msgs, feed.Message{Kind: feed.KindAdd, TS: ts, ISIN: isins[i],
			Description: fmt.Sprintf("Instrument %d rev %d", i, rng.IntN(3))})
	}
	for i := range isins {
		id, ok := feed.ParseISIN(fmt.Sprintf("DE%09d%d", 100+i, i%10))
		if !ok {
			panic("bad golden isin")
		}
		isins[i], prices[i] = id, feed.Price(10+rng.IntN(500))*feed.PriceScale
		add(i)
	}
	for len(msgs) < goldenMsgs {
		ts += rng.Int64N(int64(250 * time.Millisecond))
		i := rng.IntN(n)
		switch x := rng.IntN(1000); {
		case x < 10:
			add(i)
		case x < 16:
			msgs = append(msgs, feed.Message{Kind: feed.KindDelete, TS: ts, ISIN: isins[i]})
		default:
			p := prices[i]
			switch y := rng.IntN(100); {
			case y < 2:
				p = p * 115 / 100
			case y < 4:
				p = p * 87 / 100
			default:
				p += feed.Price(rng.Int64N(int64(p)/100+1) - int64(p)/200)
			}
			prices[i] = max(p, 1)
			m := feed.Message{Kind: feed.KindQuote, TS: ts, ISIN: isins[i], Price: prices[i]}
			if rng.IntN(100) < 3 {
				m.TS -= rng.Int64N(int64(90 * time.Second))
			}
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// TestCorruptCheckpoint: a damaged checkpoint (header or state) makes Open fail with an
// error matching ErrCheckpointCorrupt and encoding.ErrCorrupt; it never panics.
func TestCorruptCheckpoint(t *testing.T) {
	kvs := readKVFile(t, goldenKV)
	var hdr []byte
	var chunk kv
	for _, p := range kvs {
		switch {
		case string(p.k) == "k/current":
			hdr = p.v
		case bytes.HasPrefix(p.k, []byte("k/d/")) && chunk.k == nil:
			chunk = p
		}
	}
	if hdr == nil || chunk.k == nil {
		t.Fatal("the golden has no checkpoint")
	}
	h, err := decodeCkptHeader(hdr)
	if err != nil || h.chunks == 0 || h.seq != goldenMsgs {
		t.Fatalf("golden header %+v, %v", h, err)
	}
	flipped := bytes.Clone(chunk.v)
	flipped[len(flipped)/2] ^= 1
	// A checkpoint whose checksum matches but whose aggregator state length is garbage.
	badState := []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2}
	badHdr := encodeLegacyHeader(ckptHeader{seq: h.seq, watermark: h.watermark, chunks: 1, size: uint64(len(badState)),
		crc: crc32.Checksum(badState, castagnoli)})
	for name, change := range map[string][]kv{
		"empty header":   {{[]byte("k/current"), []byte{}}},
		"short header":   {{[]byte("k/current"), hdr[:len(hdr)-1]}},
		"long header":    {{[]byte("k/current"), append(bytes.Clone(hdr), 0)}},
		"header version": {{[]byte("k/current"), append([]byte{2}, hdr[1:]...)}},
		"chunk checksum": {{chunk.k, flipped}},
		"state length":   {{[]byte("k/current"), badHdr}, {chunkKey(h.seq, 0), badState}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			loadGoldenDir(t, dir, append(slices.Clone(kvs), change...))
			log, err := wal.Open(wal.DefaultOptions(dir))
			if err != nil {
				t.Fatal(err)
			}
			defer log.Close()
			p, err := Open(log, goldenOptions())
			if err == nil {
				p.Close()
				t.Fatal("opened a corrupt checkpoint")
			}
			if !errors.Is(err, ErrCheckpointCorrupt) || !errors.Is(err, encoding.ErrCorrupt) {
				t.Fatalf("error %v, want ErrCheckpointCorrupt and encoding.ErrCorrupt", err)
			}
		})
	}
}

// encodeLegacyHeader encodes a k/current value of the legacy layout.
func encodeLegacyHeader(h ckptHeader) []byte {
	e := encoding.Encbuf{}
	e.PutByte(checkpointVersion)
	e.PutBE64(h.seq)
	e.PutBE64int64(h.watermark)
	e.PutBE32(h.chunks)
	e.PutBE64(h.size)
	e.PutBE32(h.crc)
	return e.Get()
}

// TestCorruptCheckpointFile: a damaged checkpoint file makes Open fail with an error matching
// ErrCheckpointCorrupt and encoding.ErrCorrupt; a leftover checkpoint.tmp (a crash while
// writing one) is ignored.
func TestCorruptCheckpointFile(t *testing.T) {
	kvs := readKVFile(t, goldenKV)
	src := t.TempDir()
	loadGoldenDir(t, src, kvs)
	// Open the golden (legacy checkpoint) and close: Close writes the checkpoint file.
	log, err := wal.Open(wal.DefaultOptions(src))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Open(log, goldenOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := dump(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := dumpKV(t, log.DB()); slices.ContainsFunc(got, func(p kv) bool { return bytes.HasPrefix(p.k, []byte("k/")) }) {
		t.Error("the legacy checkpoint is still in Badger after a file checkpoint")
	}
	log.Close()
	good, err := os.ReadFile(filepath.Join(src, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	for name, data := range map[string][]byte{
		"empty":          {},
		"short header":   good[:ckptFileHeader-1],
		"magic":          flip(0),
		"version":        flip(4),
		"truncated":      good[:len(good)-1],
		"longer":         append(bytes.Clone(good), 0),
		"state checksum": flip(ckptFileHeader + (len(good)-ckptFileHeader)/2),
		"ok":             good,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, src, dir)
			if err := os.WriteFile(filepath.Join(dir, CheckpointFile), data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, CheckpointFile+".tmp"), []byte("half-written"), 0o644); err != nil {
				t.Fatal(err)
			}
			log, err := wal.Open(wal.DefaultOptions(dir))
			if err != nil {
				t.Fatal(err)
			}
			defer log.Close()
			p, err := Open(log, goldenOptions())
			if name == "ok" {
				if err != nil {
					t.Fatal(err)
				}
				if got := dump(t, p); got != want {
					t.Error("the pipeline restored from the checkpoint file differs from the one that wrote it")
				}
				p.Close()
				return
			}
			if err == nil {
				p.Close()
				t.Fatal("opened a corrupt checkpoint")
			}
			if !errors.Is(err, ErrCheckpointCorrupt) || !errors.Is(err, encoding.ErrCorrupt) {
				t.Fatalf("error %v, want ErrCheckpointCorrupt and encoding.ErrCorrupt", err)
			}
		})
	}
}

// copyDir copies the regular files of src into dst.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
