package pipeline

import (
	"bytes"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/wal"
)

// TestChunkWriter: a blob streamed in pieces of any size lands in chunks of exactly
// checkpointChunk bytes (the last shorter), with the size and checksum of the whole; an
// empty blob is one empty chunk.
func TestChunkWriter(t *testing.T) {
	log, err := wal.Open(wal.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	db := log.DB()
	rng := rand.New(rand.NewPCG(1, 2))
	blob := make([]byte, 2*checkpointChunk+12345)
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		seq  uint64
		blob []byte
	}{{7, blob}, {8, nil}, {9, blob[:checkpointChunk]}} {
		w := &chunkWriter{db: db, seq: tc.seq}
		for rest := tc.blob; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(100_000))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.close(); err != nil {
			t.Fatal(err)
		}
		wantChunks := uint32((len(tc.blob) + checkpointChunk - 1) / checkpointChunk)
		if wantChunks == 0 {
			wantChunks = 1
		}
		if w.chunks != wantChunks || w.size != uint64(len(tc.blob)) || w.crc != crc32.Checksum(tc.blob, castagnoli) {
			t.Fatalf("seq %d: %d chunks, %d bytes, crc %08x; want %d, %d", tc.seq, w.chunks, w.size, w.crc, wantChunks, len(tc.blob))
		}
		var back []byte
		err := db.View(func(txn *badger.Txn) error {
			for i := uint32(0); i < w.chunks; i++ {
				item, err := txn.Get(chunkKey(tc.seq, i))
				if err != nil {
					return err
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				if i+1 < w.chunks && len(v) != checkpointChunk {
					t.Errorf("seq %d chunk %d has %d bytes", tc.seq, i, len(v))
				}
				back = append(back, v...)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, tc.blob) {
			t.Fatalf("seq %d: chunks do not add up to the blob", tc.seq)
		}
	}
}
