package wal

import (
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// This file is the record encoding, kept apart from the log mechanics (log.go), in the spirit
// of Prometheus' tsdb/record vs tsdb/wlog. The layout is drawn in doc.go.

const (
	// blockVersion is the format version written in byte 0 of every block: 2 since issue
	// 15 (records name instruments by dictionary id, see doc.go); blocks of version 1 are
	// still read.
	blockVersion  = 2
	blockVersion1 = 1
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

// The tag byte of a format-2 record.
const (
	tagKindMask  = 0x07 // the kind if 1…7; 0: a kind byte follows
	tagISINShift = 3    // bits 3-4: how the ISIN is stored
	tagISINMask  = 0x18
	tagDesc      = 0x20 // a description follows
	tagMillis    = 0x40 // the TS delta is in whole milliseconds
	tagPrice     = 0x80 // a non-zero price follows

	millis = int64(1_000_000) // nanoseconds

	isinZero = 0 // the zero ISIN (ticks): nothing stored
	isinID   = 1 // uvarint dictionary id
	isinRaw  = 2 // the 12 bytes
)

// blockEncoder builds one block in a reusable buffer.
type blockEncoder struct {
	buf    encoding.Encbuf
	count  uint32
	first  uint64
	prevTS int64
	minTS  int64
	maxTS  int64
	// dict, if set, gives ISINs their ids (format 2); without one (tests of format 1 only)
	// every ISIN is stored raw.
	dict *dict
}

// reset starts a new block whose first record gets sequence first.
func (e *blockEncoder) reset(first uint64) {
	e.buf.Reset()
	e.buf.PutBytes(make([]byte, blockHeaderSize)) // filled in by finish
	e.count = 0
	e.first = first
	e.prevTS = 0
}

// add appends one record (format 2), asking the dictionary for its id: the tests' way;
// Log.commit has the ids looked up a group at a time (addWithID).
func (e *blockEncoder) add(m *feed.Message) { e.addWithID(m, noID) }

// addWithID is add for a record whose ISIN's dictionary id is already known (dict.lookup):
// id, or noID to ask the dictionary. It returns the id the record was written with, noID
// when it carries its ISIN itself (or none).
func (e *blockEncoder) addWithID(m *feed.Message, known uint32) uint32 {
	if e.count == 0 || m.TS < e.minTS {
		e.minTS = m.TS
	}
	if e.count == 0 || m.TS > e.maxTS {
		e.maxTS = m.TS
	}
	var tag byte
	if m.Kind >= 1 && m.Kind <= tagKindMask {
		tag = byte(m.Kind)
	}
	id := known
	mode := isinRaw
	switch {
	case m.ISIN == (feed.ISIN{}):
		mode = isinZero
	case e.dict == nil:
	case known != noID:
		mode = isinID
	default:
		var ok bool
		if id, ok = e.dict.id(&m.ISIN); ok {
			mode = isinID
		}
	}
	tag |= byte(mode) << tagISINShift
	if m.Description != "" {
		tag |= tagDesc
	}
	delta := m.TS - e.prevTS // wraps like the decoder's sum
	e.prevTS = m.TS
	if delta%millis == 0 {
		tag |= tagMillis
		delta /= millis
	}
	if m.Price != 0 {
		tag |= tagPrice
	}
	e.buf.PutByte(tag)
	if tag&tagKindMask == 0 {
		e.buf.PutByte(byte(m.Kind))
	}
	e.buf.PutVarint(delta)
	switch mode {
	case isinID:
		e.buf.PutUvarint(uint64(id))
	case isinRaw:
		e.buf.PutBytes(m.ISIN[:])
	}
	if m.Price != 0 {
		e.buf.PutVarint(int64(m.Price))
	}
	if m.Description != "" {
		e.buf.PutUvarintString(m.Description)
	}
	e.count++
	if mode != isinID {
		return noID
	}
	return id
}

// addV1 appends one record in format 1 (only for the tests of reading old blocks).
func (e *blockEncoder) addV1(m *feed.Message) {
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
	return e.finishVersion(prevCumMax, blockVersion)
}

func (e *blockEncoder) finishVersion(prevCumMax int64, version byte) ([]byte, int64) {
	cum := max(prevCumMax, e.maxTS)
	// The header overwrites the placeholder at the start of the buffer.
	h := encoding.Encbuf{B: e.buf.B[:0]}
	h.PutByte(version)
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
	if h.Version != blockVersion && h.Version != blockVersion1 {
		return h, fmt.Errorf("unsupported block format version %d (this build reads %d and %d)", h.Version, blockVersion1, blockVersion)
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
// as for decodeHeader; names is the ISIN dictionary (index = id) for format 2.
func decodeBlock(b []byte, first uint64, dst []Record, names []feed.ISIN) ([]Record, blockHeader, error) {
	h, err := decodeHeader(b, first)
	if err != nil {
		return dst, h, err
	}
	if h.Version == blockVersion1 {
		dst, err = decodeRecordsV1(b, h, dst)
	} else {
		dst, err = decodeRecords(b, h, dst, names)
	}
	if err != nil {
		return dst, h, &decodeError{err}
	}
	return dst, h, nil
}

// errNonCanonical: a format-2 record that the encoder would have written differently.
var errNonCanonical = errors.New("non-canonical record")

func decodeRecords(b []byte, h blockHeader, dst []Record, names []feed.ISIN) ([]Record, error) {
	d := encoding.NewDecbuf(b[blockHeaderSize : len(b)-blockTrailerSize])
	var ts int64
	seq := h.FirstSeq
	for i := uint32(0); i < h.Count; i++ {
		var r Record
		r.Seq = seq
		seq++
		tag := d.Byte()
		r.Kind = feed.Kind(tag & tagKindMask)
		if r.Kind == 0 {
			if r.Kind = feed.Kind(d.Byte()); r.Kind >= 1 && r.Kind <= tagKindMask {
				d.Failf("%v: kind %d escaped", errNonCanonical, r.Kind)
			}
		}
		delta := d.Varint()
		if tag&tagMillis != 0 {
			if delta > math.MaxInt64/millis || delta < math.MinInt64/millis {
				d.Failf("TS delta of %d ms overflows", delta)
			}
			delta *= millis
		} else if delta%millis == 0 && d.Err() == nil {
			d.Failf("%v: TS delta %d not in milliseconds", errNonCanonical, delta)
		}
		ts += delta
		r.TS = ts
		switch (tag & tagISINMask) >> tagISINShift {
		case isinZero:
		case isinID:
			id := d.Uvarint()
			if id >= uint64(len(names)) {
				if d.Err() == nil {
					d.Failf("ISIN id %d not in the dictionary (%d ids)", id, len(names))
				}
				break
			}
			r.ISIN = names[id]
			r.Ref = uint32(id) + 1
		case isinRaw:
			copy(r.ISIN[:], d.Bytes(feed.ISINLen))
			if r.ISIN == (feed.ISIN{}) && d.Err() == nil {
				d.Failf("%v: zero ISIN stored raw", errNonCanonical)
			}
		default:
			d.Failf("bad ISIN mode in tag %#x", tag)
		}
		if tag&tagPrice != 0 {
			if r.Price = feed.Price(d.Varint()); r.Price == 0 && d.Err() == nil {
				d.Failf("%v: zero price stored", errNonCanonical)
			}
		}
		if tag&tagDesc != 0 {
			l := d.Uvarint()
			if l > maxRecordSize || l == 0 {
				d.Failf("description of %d bytes", l)
			}
			if desc := d.Bytes(int(l)); len(desc) > 0 {
				r.Description = string(desc)
			}
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

func decodeRecordsV1(b []byte, h blockHeader, dst []Record) ([]Record, error) {
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
