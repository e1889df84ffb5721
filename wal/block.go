package wal

import (
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// This file is the record encoding, kept apart from the log mechanics (log.go), in the spirit
// of Prometheus' tsdb/record vs tsdb/wlog. The layout is drawn in doc.go.

const (
	// blockVersion is the format version written in byte 0 of every block.
	blockVersion = 1
	// blockHeaderSize is the fixed header: version(1) count(4) firstSeq(8) minTS(8) maxTS(8)
	// cumMaxTS(8).
	blockHeaderSize = 1 + 4 + 8 + 8 + 8 + 8
	// blockTrailerSize is the crc32c at the end.
	blockTrailerSize = 4
	// maxRecordSize bounds what one record can take in a block (the description length is
	// checked against it on decode, so a corrupt length cannot make the decoder allocate).
	maxRecordSize = 1 << 24
)

// keyPrefixBlock, keyPrefixWatermark and keyPrefixPosition are the wal's parts of the Badger
// key space (see ARCHITECTURE.md).
const (
	keyPrefixBlock     = "w/"
	keyPrefixWatermark = "m/"
	keyPrefixPosition  = "p/"
)

// blockKey returns "w/" + be64(first).
func blockKey(first uint64) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, len(keyPrefixBlock)+8)}
	e.PutString(keyPrefixBlock)
	e.PutBE64(first)
	return e.Get()
}

// parseBlockKey returns the first sequence encoded in a block key.
func parseBlockKey(k []byte) (uint64, bool) {
	d := encoding.NewDecbuf(k)
	if string(d.Bytes(len(keyPrefixBlock))) != keyPrefixBlock {
		return 0, false
	}
	first := d.BE64()
	return first, d.Done() == nil
}

func castagnoli() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) } // cached by hash/crc32

// blockHeader is the decoded fixed header of a block.
type blockHeader struct {
	Version  uint8
	Count    uint32
	FirstSeq uint64
	MinTS    int64
	MaxTS    int64
	// CumMaxTS is the largest TS of any record in this block or any earlier block (ever
	// written, truncated or not): non-decreasing along the log, which makes SeqAtTime a
	// binary search.
	CumMaxTS int64
}

// lastSeq is the sequence of the block's last record.
func (h blockHeader) lastSeq() uint64 { return h.FirstSeq + uint64(h.Count) - 1 }

// blockEncoder builds one block in a reusable buffer.
type blockEncoder struct {
	buf    encoding.Encbuf
	count  uint32
	first  uint64
	prevTS int64
	minTS  int64
	maxTS  int64
}

// reset starts a new block whose first record gets sequence first.
func (e *blockEncoder) reset(first uint64) {
	e.buf.Reset()
	e.buf.PutBytes(make([]byte, blockHeaderSize)) // filled in by finish
	e.count = 0
	e.first = first
	e.prevTS = 0
}

// add appends one record.
func (e *blockEncoder) add(m *feed.Message) {
	if e.count == 0 || m.TS < e.minTS {
		e.minTS = m.TS
	}
	if e.count == 0 || m.TS > e.maxTS {
		e.maxTS = m.TS
	}
	e.buf.PutVarint(m.TS - e.prevTS) // zigzag delta to the previous record
	e.prevTS = m.TS
	e.buf.PutByte(byte(m.Kind))
	e.buf.PutBytes(m.ISIN[:])
	e.buf.PutVarint(int64(m.Price))
	e.buf.PutUvarintString(m.Description)
	e.count++
}

// size is the current encoded size (without trailer).
func (e *blockEncoder) size() int { return e.buf.Len() }

// finish fills in the header and the checksum. prevCumMax is the CumMaxTS of the previous
// block; the block's own CumMaxTS is returned. The returned slice aliases the encoder's
// buffer.
func (e *blockEncoder) finish(prevCumMax int64) ([]byte, int64) {
	cum := max(prevCumMax, e.maxTS)
	// The header overwrites the placeholder at the start of the buffer.
	h := encoding.Encbuf{B: e.buf.B[:0]}
	h.PutByte(blockVersion)
	h.PutBE32(e.count)
	h.PutBE64(e.first)
	h.PutBE64int64(e.minTS)
	h.PutBE64int64(e.maxTS)
	h.PutBE64int64(cum)
	e.buf.PutBE32(crc32.Checksum(e.buf.Get(), castagnoli()))
	return e.buf.Get(), cum
}

// errors of the decoder; wrapped in a CorruptionError by the caller.
var (
	errChecksum  = errors.New("checksum mismatch")
	errShort     = errors.New("block too short")
	errTruncRec  = errors.New("record runs past the end of the block")
	errTrailing  = errors.New("trailing bytes after the last record")
	errBadHeader = errors.New("inconsistent block header")
)

// decodeError marks errors produced by decoding a block (the data is at fault).
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// decodeHeader verifies the checksum of a block and returns its header. If first is not 0,
// the header's first sequence must equal it (the sequence in the block's key).
func decodeHeader(b []byte, first uint64) (blockHeader, error) {
	h, err := decodeHeader1(b)
	if err == nil && first != 0 && h.FirstSeq != first {
		err = fmt.Errorf("%w: key says seq %d, header %d", errBadHeader, first, h.FirstSeq)
	}
	if err != nil {
		return h, &decodeError{err}
	}
	return h, nil
}

func decodeHeader1(b []byte) (blockHeader, error) {
	var h blockHeader
	if len(b) < blockHeaderSize+blockTrailerSize {
		return h, fmt.Errorf("%w: %d bytes", errShort, len(b))
	}
	body := b[:len(b)-blockTrailerSize]
	trailer := encoding.NewDecbuf(b[len(body):])
	want := trailer.BE32()
	if got := crc32.Checksum(body, castagnoli()); got != want {
		return h, fmt.Errorf("%w: stored %08x, computed %08x", errChecksum, want, got)
	}
	d := encoding.NewDecbuf(body[:blockHeaderSize])
	h.Version = d.Byte()
	if h.Version != blockVersion {
		return h, fmt.Errorf("unsupported block format version %d (this build reads %d)", h.Version, blockVersion)
	}
	h.Count = d.BE32()
	h.FirstSeq = d.BE64()
	h.MinTS = d.BE64int64()
	h.MaxTS = d.BE64int64()
	h.CumMaxTS = d.BE64int64()
	if h.Count == 0 || h.FirstSeq == 0 || h.MinTS > h.MaxTS || h.CumMaxTS < h.MaxTS {
		return h, fmt.Errorf("%w: count %d first %d ts [%d,%d] cum %d", errBadHeader,
			h.Count, h.FirstSeq, h.MinTS, h.MaxTS, h.CumMaxTS)
	}
	return h, nil
}

// decodeBlock verifies and decodes a whole block, appending its records to dst. first is
// as for decodeHeader.
func decodeBlock(b []byte, first uint64, dst []Record) ([]Record, blockHeader, error) {
	h, err := decodeHeader(b, first)
	if err != nil {
		return dst, h, err
	}
	dst, err = decodeRecords(b, h, dst)
	if err != nil {
		return dst, h, &decodeError{err}
	}
	return dst, h, nil
}

func decodeRecords(b []byte, h blockHeader, dst []Record) ([]Record, error) {
	d := encoding.NewDecbuf(b[blockHeaderSize : len(b)-blockTrailerSize])
	var ts int64
	seq := h.FirstSeq
	for i := uint32(0); i < h.Count; i++ {
		var r Record
		r.Seq = seq
		seq++
		ts += d.Varint()
		r.TS = ts
		r.Kind = feed.Kind(d.Byte())
		copy(r.ISIN[:], d.Bytes(feed.ISINLen))
		r.Price = feed.Price(d.Varint())
		l := d.Uvarint()
		if l > maxRecordSize {
			d.Failf("description of %d bytes", l)
		}
		if desc := d.Bytes(int(l)); len(desc) > 0 {
			r.Description = string(desc)
		}
		if err := d.Err(); err != nil {
			return dst, fmt.Errorf("record %d: %w: %w", i, errTruncRec, err)
		}
		dst = append(dst, r)
	}
	if d.Len() != 0 {
		return dst, fmt.Errorf("%w: %d bytes", errTrailing, d.Len())
	}
	return dst, nil
}
