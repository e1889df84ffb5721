package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
	"github.com/quotesdev/quotes/wal"
)

// Checkpoint layout in Badger:
//
//	k/current               → header: version(1) seq(be64) watermark(be64) chunks(be32) size(be64) crc32c(be32)
//	k/d/ seq(be64) idx(be32) → chunk idx of the state blob (at most checkpointChunk bytes)
//
// The state blob is uvarint(len(aggregator state)) aggregator state, then the hot detector
// state. The chunks are written first, then k/current in its own transaction, then the older
// checkpoint's chunks are deleted: a crash leaves either the old or the new checkpoint whole.
var (
	keyCheckpoint    = []byte("k/current")
	prefixCkptChunks = []byte("k/d/")
	castagnoli       = crc32.MakeTable(crc32.Castagnoli)
)

const (
	checkpointVersion = 1
	checkpointChunk   = 4 << 20
	checkpointHeader  = 1 + 8 + 8 + 4 + 8 + 4
	// WatermarkCheckpoint is the WAL watermark name under which the last checkpoint's
	// sequence is kept: retention never removes records after it.
	WatermarkCheckpoint = "checkpoint"
)

// ErrCheckpointCorrupt means the stored checkpoint fails its checksum or cannot be decoded.
// It also matches encoding.ErrCorrupt.
var ErrCheckpointCorrupt = encoding.NewCorruptSentinel("pipeline: checkpoint corrupt")

func chunkKey(seq uint64, idx uint32) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, len(prefixCkptChunks)+8+4)}
	e.PutBytes(prefixCkptChunks)
	e.PutBE64(seq)
	e.PutBE32(idx)
	return e.Get()
}

// ckptHeader is the value of k/current (layout above).
type ckptHeader struct {
	seq       uint64
	watermark int64
	chunks    uint32
	size      uint64
	crc       uint32
}

func (h *ckptHeader) encode() []byte {
	e := encoding.Encbuf{B: make([]byte, 0, checkpointHeader)}
	e.PutByte(checkpointVersion)
	e.PutBE64(h.seq)
	e.PutBE64int64(h.watermark)
	e.PutBE32(h.chunks)
	e.PutBE64(h.size)
	e.PutBE32(h.crc)
	return e.Get()
}

func decodeCkptHeader(v []byte) (ckptHeader, error) {
	var h ckptHeader
	d := encoding.NewDecbuf(v)
	if version := d.Byte(); version != checkpointVersion {
		d.Failf("version %d", version)
	}
	h.seq = d.BE64()
	h.watermark = d.BE64int64()
	h.chunks = d.BE32()
	h.size = d.BE64()
	h.crc = d.BE32()
	if err := d.Done(); err != nil {
		return ckptHeader{}, fmt.Errorf("%w: header of %d bytes: %w", ErrCheckpointCorrupt, len(v), err)
	}
	return h, nil
}

// checkpoint writes the state as of seq: aggState (taken by derive) and the hot detector's
// state, which p.commitMu holds at the same point. The state is streamed into chunks, each
// written in its own transaction, so that it is never held whole (the hot state of 50,000
// instruments is over 100 MB).
func (p *Pipeline) checkpoint(seq uint64, watermark int64, aggState []byte) error {
	start := time.Now()
	db := p.log.DB()
	cw := &chunkWriter{db: db, seq: seq}
	e := encoding.Encbuf{B: make([]byte, 0, binary.MaxVarintLen64)}
	e.PutUvarint(uint64(len(aggState)))
	_, _ = cw.Write(e.Get())
	_, _ = cw.Write(aggState)
	if err := p.det.WriteState(cw); err != nil {
		return fmt.Errorf("pipeline: write checkpoint at seq %d: %w", seq, err)
	}
	if err := cw.close(); err != nil {
		return fmt.Errorf("pipeline: write checkpoint at seq %d: %w", seq, err)
	}
	hdr := (&ckptHeader{seq: seq, watermark: watermark, chunks: cw.chunks, size: cw.size,
		crc: cw.crc}).encode()
	err := db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(keyCheckpoint, hdr); err != nil {
			return err
		}
		return txn.Set(wal.WatermarkKey(WatermarkCheckpoint), wal.EncodeWatermark(seq))
	})
	if err != nil {
		return fmt.Errorf("pipeline: commit checkpoint at seq %d: %w", seq, err)
	}
	p.opts.Metrics.observeCheckpoint(start, int(cw.size))
	if err := deleteChunks(db, seq); err != nil {
		p.opts.Logger.Warn("could not delete old checkpoints", "err", err)
	}
	// No retention pass while Open recovers: the owner of the pipeline (whose callbacks,
	// Options.Consumers and TrimOutbox, the pass calls) does not have it yet. The first
	// checkpoint after Open runs it.
	if !p.recovering && p.retaining.TryLock() {
		go func() {
			defer p.retaining.Unlock()
			p.retain(seq, watermark)
		}()
	}
	return nil
}

// chunkWriter cuts the checkpoint blob into chunks of exactly checkpointChunk bytes (the
// last one shorter, and at least one chunk) and writes each under chunkKey(seq, idx) in its
// own transaction, keeping the running size and checksum. Write fails once a write failed.
type chunkWriter struct {
	db     *badger.DB
	seq    uint64
	buf    []byte
	chunks uint32
	size   uint64
	crc    uint32
	err    error
}

func (w *chunkWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 && w.err == nil {
		if w.buf == nil {
			w.buf = make([]byte, 0, checkpointChunk)
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], b)
		w.buf, b = w.buf[:len(w.buf)+k], b[k:]
		if len(w.buf) == checkpointChunk {
			w.flush()
		}
	}
	return n, w.err
}

// flush writes the buffered chunk; Badger keeps the slice until the write, so the next
// chunk gets a fresh buffer.
func (w *chunkWriter) flush() {
	if w.err != nil {
		return
	}
	chunk := w.buf
	w.buf = nil
	w.size += uint64(len(chunk))
	w.crc = crc32.Update(w.crc, castagnoli, chunk)
	key := chunkKey(w.seq, w.chunks)
	if err := w.db.Update(func(txn *badger.Txn) error { return txn.Set(key, chunk) }); err != nil {
		w.err = fmt.Errorf("write checkpoint chunk %d: %w", w.chunks, err)
		return
	}
	w.chunks++
}

// close writes the last chunk (an empty one if nothing was written).
func (w *chunkWriter) close() error {
	if len(w.buf) > 0 || w.chunks == 0 {
		if w.buf == nil {
			w.buf = []byte{}
		}
		w.flush()
	}
	return w.err
}

// retain removes WAL records nobody needs any more — before the checkpoint at ckpt, before
// what consumers still need, older than WALRetention —, hot events older than
// EventRetention, the outbox items every registered outbox consumer has delivered (all
// of them when none is registered), and closed candles older than CandleRetention. It runs in the background after a checkpoint, holding p.retaining; a pass
// still running makes the next one skip, and Close waits for it.
func (p *Pipeline) retain(ckpt uint64, watermark int64) {
	p.retainedSeq = ckpt
	keep := ckpt + 1
	if p.opts.Consumers != nil {
		keep = min(keep, p.opts.Consumers())
	}
	if p.opts.WALRetention >= 0 {
		s, err := p.log.SeqAtTime(watermark - int64(p.opts.WALRetention))
		if err != nil {
			p.opts.Logger.Warn("WAL retention: find sequence by time", "err", err)
			return
		}
		keep = min(keep, s)
	}
	if err := p.log.Truncate(keep); err != nil && !errors.Is(err, wal.ErrClosed) {
		p.opts.Logger.Warn("WAL retention", "before", keep, "err", err)
	}
	if err := p.store.DeleteEventsBefore(watermark - int64(p.opts.EventRetention)); err != nil {
		p.opts.Logger.Warn("hot event retention", "err", err)
	}
	trim := p.store.TrimDelivered
	if p.opts.TrimOutbox != nil {
		trim = p.opts.TrimOutbox
	}
	if _, err := trim(); err != nil && !errors.Is(err, badger.ErrDBClosed) {
		p.opts.Logger.Warn("outbox retention", "err", err)
	}
	if p.opts.CandleRetention > 0 {
		if _, err := p.store.DeleteCandlesBefore(watermark - int64(p.opts.CandleRetention)); err != nil && !errors.Is(err, badger.ErrDBClosed) {
			p.opts.Logger.Warn("candle retention", "err", err)
		}
	}
}

// deleteChunks removes the chunks of every checkpoint but keep.
func deleteChunks(db *badger.DB, keep uint64) error {
	var keys [][]byte
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixCkptChunks
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			d := encoding.NewDecbuf(it.Item().Key()[len(prefixCkptChunks):])
			if d.BE64() != keep {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// loadCheckpoint restores the last checkpoint, if any, and returns its sequence (0: none).
func (p *Pipeline) loadCheckpoint() (uint64, error) {
	db := p.log.DB()
	var blob []byte
	var seq uint64
	err := db.View(func(txn *badger.Txn) (err error) {
		item, err := txn.Get(keyCheckpoint)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		hdr, err := decodeCkptHeader(v)
		if err != nil {
			return err
		}
		seq = hdr.seq
		chunks, size, sum := hdr.chunks, hdr.size, hdr.crc
		blob = make([]byte, 0, size)
		defer func() {
			if err == nil && (uint64(len(blob)) != size || crc32.Checksum(blob, castagnoli) != sum) {
				err = fmt.Errorf("%w: checksum of checkpoint at seq %d", ErrCheckpointCorrupt, seq)
			}
		}()
		for i := uint32(0); i < chunks; i++ {
			item, err := txn.Get(chunkKey(seq, i))
			if err != nil {
				return fmt.Errorf("%w: chunk %d of checkpoint at seq %d: %w", ErrCheckpointCorrupt, i, seq, err)
			}
			if err := item.Value(func(v []byte) error { blob = append(blob, v...); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("pipeline: read checkpoint: %w", err)
	}
	if seq == 0 {
		return 0, nil
	}
	return seq, p.restore(seq, blob)
}

func (p *Pipeline) restore(seq uint64, blob []byte) error {
	d := encoding.NewDecbuf(blob)
	aggState := d.UvarintBytes()
	if err := d.Err(); err != nil {
		return fmt.Errorf("%w: state lengths at seq %d: %w", ErrCheckpointCorrupt, seq, err)
	}
	if err := p.agg.RestoreState(aggState); err != nil {
		return fmt.Errorf("%w: aggregator state at seq %d: %w", ErrCheckpointCorrupt, seq, err)
	}
	if err := p.det.RestoreState(d.Get()); err != nil {
		return fmt.Errorf("%w: hot state at seq %d: %w", ErrCheckpointCorrupt, seq, err)
	}
	return nil
}

// recover loads the last checkpoint and re-applies the WAL after it. Items derived from
// records the store already reflects are not written again.
func (p *Pipeline) recover() error {
	skip, err := p.store.Applied()
	if err != nil {
		return err
	}
	seq, err := p.loadCheckpoint()
	if err != nil {
		return err
	}
	if first := p.log.FirstSeq(); first > seq+1 {
		return fmt.Errorf("pipeline: WAL starts at seq %d but the checkpoint is at %d: records in between are gone", first, seq)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recovering = true
	defer func() { p.recovering = false }()
	p.skipTo, p.applied, p.ckptSeq, p.lastCkpt = skip, seq, seq, p.agg.Watermark()
	p.expired = math.MinInt64
	if m, ok := p.agg.CurrentMinute(); ok {
		p.expired = m
	}
	n := 0
	// Aggregation here, hot detection and store writes in a second goroutine: the two
	// halves overlap as in Writer, which roughly halves restart time on two cores.
	commits := make(chan *derived, 4)
	commitErr := make(chan error, 1)
	go func() {
		var err error
		for d := range commits {
			if err == nil {
				err = p.commit(d)
			}
		}
		commitErr <- err
	}()
	derr := p.replayTail(seq+1, &n, commits)
	close(commits)
	if err := <-commitErr; err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	if n > 0 {
		p.opts.Logger.Info("recovered from WAL", "checkpoint", seq, "replayed", n, "applied", p.applied)
	}
	return nil
}

// replayTail applies the WAL from seq first on to the aggregator, in runs of 65536
// records, and sends what each run derived to commits; it counts records in *n. p.mu must
// be held.
func (p *Pipeline) replayTail(first uint64, n *int, commits chan<- *derived) error {
	r := p.log.NewReader(first)
	msgs := make([]feed.Message, 0, 65536)
	var total uint64
	if last := p.log.LastSeq(); last >= first {
		total = last - first + 1
	}
	progress := p.opts.RecoveryProgress
	if progress != nil {
		progress(0, total)
	}
	flush := func() error {
		d, err := p.derive(first, msgs, false)
		if err != nil {
			return err
		}
		first, msgs = p.applied+1, msgs[:0]
		commits <- d
		if progress != nil {
			progress(uint64(*n), total)
		}
		return nil
	}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("pipeline: recover from WAL after seq %d: %w", p.applied, err)
		}
		if rec.Seq != first+uint64(len(msgs)) {
			return fmt.Errorf("pipeline: recover: WAL jumps from seq %d to %d", first+uint64(len(msgs))-1, rec.Seq)
		}
		msgs = append(msgs, rec.Message)
		if *n++; len(msgs) == cap(msgs) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
