package pipeline

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
	"github.com/quotesdev/quotes/wal"
)

// A checkpoint is the aggregator's and the hot detector's state as of a WAL sequence. It is
// one file, CheckpointFile in the WAL's directory (Badger leaves files without its suffixes
// alone), replaced atomically (written as CheckpointFile.tmp, synced, renamed, directory
// synced):
//
//	┌────────┬────────────┬──────────┬────────────────┬───────────┬──────────────┬───────────┐
//	│ "QCKP" │ version(1) │ seq(be64)│ watermark(be64)│ size(be64)│ crc32c(be32) │ state     │
//	└────────┴────────────┴──────────┴────────────────┴───────────┴──────────────┴───────────┘
//	  4 B      1 B          8 B        8 B              8 B         4 B            size bytes
//
// The state is uvarint(len(aggregator state)) aggregator state, then the hot detector state
// (hot.Detector.WriteState); the checksum covers it. The file is not in Badger because it is
// replaced whole every 40 s or so (Options.CheckpointRecords): in the value log each one
// (~65 MB at 50,000 instruments) stayed as garbage until value-log GC, and its pages in
// the resident set.
//
// Directories written before hold the checkpoint in Badger (legacy layout, still read; the
// first file checkpoint deletes it):
//
//	k/current               → header: version(1) seq(be64) watermark(be64) chunks(be32) size(be64) crc32c(be32)
//	k/d/ seq(be64) idx(be32) → chunk idx of the same state (at most 4 MiB)
var (
	keyCheckpoint    = []byte("k/current")
	prefixCkptChunks = []byte("k/d/")
	castagnoli       = crc32.MakeTable(crc32.Castagnoli)
	ckptMagic        = []byte("QCKP")
)

const (
	// CheckpointFile is the name of the checkpoint file in the WAL's directory.
	CheckpointFile    = "checkpoint"
	checkpointVersion = 1
	ckptFileHeader    = 4 + 1 + 8 + 8 + 8 + 4
	// WatermarkCheckpoint is the WAL watermark name under which the last checkpoint's
	// sequence is kept: retention never removes records after it.
	WatermarkCheckpoint = "checkpoint"
)

// ErrCheckpointCorrupt means the stored checkpoint fails its checksum or cannot be decoded.
// It also matches encoding.ErrCorrupt.
var ErrCheckpointCorrupt = encoding.NewCorruptSentinel("pipeline: checkpoint corrupt")

// ckptHeader is the header of a checkpoint (file or legacy k/current).
type ckptHeader struct {
	seq       uint64
	watermark int64
	chunks    uint32 // legacy layout only
	size      uint64
	crc       uint32
}

func (h *ckptHeader) encodeFile() []byte {
	e := encoding.Encbuf{B: make([]byte, 0, ckptFileHeader)}
	e.PutBytes(ckptMagic)
	e.PutByte(checkpointVersion)
	e.PutBE64(h.seq)
	e.PutBE64int64(h.watermark)
	e.PutBE64(h.size)
	e.PutBE32(h.crc)
	return e.Get()
}

func decodeFileHeader(v []byte) (ckptHeader, error) {
	var h ckptHeader
	if len(v) < ckptFileHeader || !bytes.Equal(v[:len(ckptMagic)], ckptMagic) {
		return h, fmt.Errorf("%w: file header of %d bytes, or not a checkpoint", ErrCheckpointCorrupt, len(v))
	}
	d := encoding.NewDecbuf(v[len(ckptMagic):ckptFileHeader])
	if version := d.Byte(); version != checkpointVersion {
		d.Failf("version %d", version)
	}
	h.seq = d.BE64()
	h.watermark = d.BE64int64()
	h.size = d.BE64()
	h.crc = d.BE32()
	if err := d.Done(); err != nil {
		return ckptHeader{}, fmt.Errorf("%w: file header: %w", ErrCheckpointCorrupt, err)
	}
	return h, nil
}

// decodeCkptHeader decodes the legacy k/current value.
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

func chunkKey(seq uint64, idx uint32) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, len(prefixCkptChunks)+8+4)}
	e.PutBytes(prefixCkptChunks)
	e.PutBE64(seq)
	e.PutBE32(idx)
	return e.Get()
}

// checkpoint writes the state as of seq: aggState (taken by derive) and the hot detector's
// state, which p.commitMu holds at the same point. The state is streamed to the file, never
// held whole (the hot state of 50,000 instruments is about 63 MB).
func (p *Pipeline) checkpoint(seq uint64, watermark int64, aggState []byte) error {
	start := time.Now()
	// The checkpoint must never be ahead of the durable WAL (with --sync none the records
	// up to seq may still be in the page cache only).
	if err := p.log.Sync(); err != nil {
		return fmt.Errorf("pipeline: checkpoint at seq %d: %w", seq, err)
	}
	size, err := writeCheckpointFile(p.log.Dir(), seq, watermark, func(w io.Writer) error {
		e := encoding.Encbuf{B: make([]byte, 0, binary.MaxVarintLen64)}
		e.PutUvarint(uint64(len(aggState)))
		if _, err := w.Write(e.Get()); err != nil {
			return err
		}
		if _, err := w.Write(aggState); err != nil {
			return err
		}
		return p.det.WriteState(w)
	})
	if err != nil {
		return fmt.Errorf("pipeline: write checkpoint at seq %d: %w", seq, err)
	}
	db := p.log.DB()
	err = db.Update(func(txn *badger.Txn) error {
		return txn.Set(wal.WatermarkKey(WatermarkCheckpoint), wal.EncodeWatermark(seq))
	})
	if err == nil {
		err = p.log.Persist()
	}
	if err != nil {
		return fmt.Errorf("pipeline: commit checkpoint at seq %d: %w", seq, err)
	}
	p.opts.Metrics.observeCheckpoint(start, int(size))
	if p.legacyCkpt {
		if err := deleteLegacyCheckpoint(db); err != nil {
			p.opts.Logger.Warn("could not delete the checkpoint kept in Badger by an older version", "err", err)
		} else {
			p.legacyCkpt = false
		}
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

// writeCheckpointFile writes the checkpoint with the state body writes, replacing the
// previous one atomically, and returns the state's size.
func writeCheckpointFile(dir string, seq uint64, watermark int64, body func(io.Writer) error) (uint64, error) {
	final := filepath.Join(dir, CheckpointFile)
	tmp := final + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := bw.Write(make([]byte, ckptFileHeader)); err != nil { // the header, once known
		return 0, err
	}
	cw := &checksumWriter{w: bw}
	if err := body(cw); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	hdr := (&ckptHeader{seq: seq, watermark: watermark, size: cw.size, crc: cw.crc}).encodeFile()
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	err = f.Close()
	f = nil
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return cw.size, syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checksumWriter passes writes on, keeping their total size and CRC-32C.
type checksumWriter struct {
	w    io.Writer
	size uint64
	crc  uint32
}

func (c *checksumWriter) Write(b []byte) (int, error) {
	c.size += uint64(len(b))
	c.crc = crc32.Update(c.crc, castagnoli, b)
	return c.w.Write(b)
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

// deleteLegacyCheckpoint removes a checkpoint kept in Badger by an older version.
func deleteLegacyCheckpoint(db *badger.DB) error {
	var keys [][]byte
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("k/")
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
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

// loadCheckpoint restores the aggregator from the last checkpoint, if any, and returns its
// sequence (0: none) and the hot detector's state, for restoreHot: the file, or else one
// an older version kept in Badger. The hot state may be in the mapped file: the caller
// calls release, never nil, once the hot detector is restored (on an error it is done).
func (p *Pipeline) loadCheckpoint() (seq uint64, hotState []byte, release func(), err error) {
	release = func() {}
	legacySeq, legacyBlob, err := readLegacyCheckpoint(p.log.DB())
	if err != nil {
		return 0, nil, release, fmt.Errorf("pipeline: read checkpoint: %w", err)
	}
	p.legacyCkpt = legacySeq != 0
	data, unmap, err := readCheckpointFile(filepath.Join(p.log.Dir(), CheckpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		if legacySeq == 0 {
			return 0, nil, release, nil
		}
		hotState, err := p.restore(legacySeq, legacyBlob)
		return legacySeq, hotState, release, err
	}
	if err != nil {
		return 0, nil, release, fmt.Errorf("pipeline: read checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			unmap()
		}
	}()
	hdr, err := decodeFileHeader(data)
	if err != nil {
		return 0, nil, release, fmt.Errorf("pipeline: read checkpoint %s: %w", CheckpointFile, err)
	}
	blob := data[ckptFileHeader:]
	if uint64(len(blob)) != hdr.size || crc32.Checksum(blob, castagnoli) != hdr.crc {
		return 0, nil, release, fmt.Errorf("%w: checksum of checkpoint file at seq %d (%d state bytes, header says %d)", ErrCheckpointCorrupt, hdr.seq, len(blob), hdr.size)
	}
	if hdr.seq == 0 {
		return 0, nil, release, fmt.Errorf("%w: checkpoint file at seq 0", ErrCheckpointCorrupt)
	}
	if hotState, err = p.restore(hdr.seq, blob); err != nil {
		return 0, nil, release, err
	}
	return hdr.seq, hotState, unmap, nil
}

// readLegacyCheckpoint reads a checkpoint kept in Badger by an older version (seq 0: none).
func readLegacyCheckpoint(db *badger.DB) (seq uint64, blob []byte, err error) {
	err = db.View(func(txn *badger.Txn) (err error) {
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
	return seq, blob, err
}

// restore restores the aggregator from the checkpoint state blob taken at seq and returns
// the hot detector's part of it, for restoreHot.
func (p *Pipeline) restore(seq uint64, blob []byte) ([]byte, error) {
	d := encoding.NewDecbuf(blob)
	aggState := d.UvarintBytes()
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("%w: state lengths at seq %d: %w", ErrCheckpointCorrupt, seq, err)
	}
	if err := p.agg.RestoreState(aggState); err != nil {
		return nil, fmt.Errorf("%w: aggregator state at seq %d: %w", ErrCheckpointCorrupt, seq, err)
	}
	return d.Get(), nil
}

// restoreHot restores the hot detector from its part of the checkpoint taken at seq.
func (p *Pipeline) restoreHot(seq uint64, watermark int64, hotState []byte) error {
	if err := p.det.RestoreStateNear(hotState, watermark); err != nil {
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
	seq, hotState, release, err := p.loadCheckpoint()
	if err != nil {
		return err
	}
	defer release()
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
	// halves overlap as in Writer, which roughly halves restart time on two cores. That
	// goroutine, the only user of the detector, first restores the hot state (most of the
	// checkpoint, ~0.6 s at the spec load); the channel has room for the runs (a few MB
	// each) aggregated meanwhile.
	commits := make(chan *derived, 16)
	commitErr := make(chan error, 1)
	ckptWatermark := p.lastCkpt // every quote of the hot state is at or before it
	go func() {
		var err error
		if hotState != nil {
			err = p.restoreHot(seq, ckptWatermark, hotState)
		}
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
