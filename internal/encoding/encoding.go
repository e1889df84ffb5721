// Package encoding is the binary codec of every on-disk format of quotes: Encbuf appends
// fixed-width big-endian integers, varints and length-prefixed bytes to a buffer, and Decbuf
// reads them back with a sticky error, in the spirit of Prometheus' tsdb/encoding.
//
//	write                                  read
//	var e encoding.Encbuf                  d := encoding.NewDecbuf(v)
//	e.PutByte(version)                     version := d.Byte()
//	e.PutBE64(seq)                         seq := d.BE64()
//	e.PutVarint(ts)                        ts := d.Varint()
//	e.PutUvarintString(desc)               desc := d.UvarintString()
//	v := e.Get()                           if err := d.Done(); err != nil { … } // ErrCorrupt
//
// A Decbuf never panics and never allocates more than its input on bad data: a read past
// the end, a malformed varint, a length or count larger than what is left stops it at the
// first failure, later reads return zero values, and Err (or Done, which also rejects
// trailing bytes) reports the first failure with its offset. Decoders validate the values
// themselves and report what is wrong with Failf, so every failure of a format surfaces the
// same way.
//
// # Who writes what
//
//	format                                 package            value
//	WAL block (w/…)                        wal                fixed header, varint records, crc32c
//	watermarks (m/…), s/applied            wal, store         be64 sequence
//	candles (c/…)                          store              format byte, varints (format 1: be64 fields)
//	hot events (h/…)                       store              be64 fields
//	checkpoint (k/…)                       pipeline           fixed header + uvarint-prefixed states
//	aggregator state                       aggregate          magic, varints
//	hot detector state                     hot                version, varints
//	archive state (a/state/…), spool       export             be64/be32 + aggregator state
//
// The byte layouts are documented with each format; they are unchanged by this package
// (testdata goldens in wal, pipeline and export pin them).
//
// # Corruption: one sentinel convention
//
// Bytes that do not decode are corruption, whatever package reads them, and every such
// error matches errors.Is(err, ErrCorrupt):
//
//   - every Decbuf failure is a *DecodeError, which matches ErrCorrupt;
//   - each package keeps its own sentinel for callers that care which format failed
//     (store.ErrCorrupt, hot.ErrCorruptState, pipeline.ErrCheckpointCorrupt,
//     wal.ErrCorrupt and *wal.CorruptionError), created with NewCorruptSentinel so that it
//     matches both itself and ErrCorrupt, and wraps it (%w) in its decode errors, along
//     with the DecodeError when there is one;
//   - errors that are not about the bytes (I/O, a closed database) never match ErrCorrupt.
//
// So errors.Is(err, encoding.ErrCorrupt) answers "is the stored data bad?" across packages,
// and errors.Is(err, store.ErrCorrupt) still answers "is a store value bad?".
package encoding

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is matched (errors.Is) by every error about stored bytes that cannot be
// decoded: every Decbuf failure and every package's corruption sentinel (see the package
// doc).
var ErrCorrupt = errors.New("corrupt data")

// NewCorruptSentinel returns a new sentinel error with the given text that also matches
// ErrCorrupt: errors.Is(err, sentinel) and errors.Is(err, ErrCorrupt) both hold for an err
// wrapping it. Packages declare their corruption sentinels with it.
func NewCorruptSentinel(text string) error { return &corruptSentinel{text} }

type corruptSentinel struct{ text string }

func (e *corruptSentinel) Error() string        { return e.text }
func (e *corruptSentinel) Is(target error) bool { return target == ErrCorrupt }

// DecodeError is the error a Decbuf stops at: what could not be read or was invalid, and
// the offset in the Decbuf's input where it happened. It matches ErrCorrupt.
type DecodeError struct {
	// Offset is the number of bytes read before the failure.
	Offset int
	// Err says what failed.
	Err error
}

// Error implements error.
func (e *DecodeError) Error() string { return fmt.Sprintf("%v at offset %d", e.Err, e.Offset) }

// Unwrap returns Err.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *DecodeError) Is(target error) bool { return target == ErrCorrupt }

// Encbuf appends encoded values to B. The zero value is ready to use; set B to append to an
// existing buffer. Every Put method only appends.
type Encbuf struct {
	B []byte
}

// Reset empties the buffer, keeping its capacity.
func (e *Encbuf) Reset() { e.B = e.B[:0] }

// Get returns the encoded bytes (aliasing the buffer).
func (e *Encbuf) Get() []byte { return e.B }

// Len returns the number of encoded bytes.
func (e *Encbuf) Len() int { return len(e.B) }

// PutByte appends one byte.
func (e *Encbuf) PutByte(c byte) { e.B = append(e.B, c) }

// PutBytes appends b as it is (a fixed-size field: no length).
func (e *Encbuf) PutBytes(b []byte) { e.B = append(e.B, b...) }

// PutString appends s as it is (no length).
func (e *Encbuf) PutString(s string) { e.B = append(e.B, s...) }

// PutBE32 appends x as 4 bytes, big-endian.
func (e *Encbuf) PutBE32(x uint32) { e.B = binary.BigEndian.AppendUint32(e.B, x) }

// PutBE64 appends x as 8 bytes, big-endian.
func (e *Encbuf) PutBE64(x uint64) { e.B = binary.BigEndian.AppendUint64(e.B, x) }

// PutBE64int64 appends x as 8 bytes, big-endian two's complement.
func (e *Encbuf) PutBE64int64(x int64) { e.PutBE64(uint64(x)) }

// PutUvarint appends x as an unsigned varint (encoding/binary).
func (e *Encbuf) PutUvarint(x uint64) { e.B = binary.AppendUvarint(e.B, x) }

// PutVarint appends x as a zig-zag signed varint (encoding/binary).
func (e *Encbuf) PutVarint(x int64) { e.B = binary.AppendVarint(e.B, x) }

// PutUvarintBytes appends the length of b as a uvarint, then b.
func (e *Encbuf) PutUvarintBytes(b []byte) {
	e.PutUvarint(uint64(len(b)))
	e.B = append(e.B, b...)
}

// PutUvarintString appends the length of s as a uvarint, then s.
func (e *Encbuf) PutUvarintString(s string) {
	e.PutUvarint(uint64(len(s)))
	e.B = append(e.B, s...)
}

// Decbuf reads encoded values from a byte slice. The first failure sticks: it is kept in
// Err, and every later read returns the zero value and consumes nothing. Byte slices it
// returns alias the input.
type Decbuf struct {
	b    []byte // unread input; nil after a failure
	size int    // length of the whole input, for offsets
	err  error  // the first failure: a *DecodeError, or errShort until Err makes it one
	// A fixed-size read past the end sets err to errShort and records what it needed and
	// how much was left, without a call, so that the reads stay inlinable.
	need, left int
}

// errShort marks a fixed-size read past the end until Err describes it.
var errShort = errors.New("short")

// NewDecbuf returns a Decbuf reading b.
func NewDecbuf(b []byte) Decbuf { return Decbuf{b: b, size: len(b)} }

// Err returns the first failure (a *DecodeError), or nil.
func (d *Decbuf) Err() error {
	if d.err == errShort {
		d.describeShort()
	}
	return d.err
}

//go:noinline
func (d *Decbuf) describeShort() {
	d.err = &DecodeError{Offset: d.size - d.left,
		Err: fmt.Errorf("%d-byte value needs more than the %d bytes left", d.need, d.left)}
}

// Done returns Err, or a *DecodeError if input is left unread.
func (d *Decbuf) Done() error {
	if d.err == nil && len(d.b) != 0 {
		d.Failf("%d trailing bytes", len(d.b))
	}
	return d.Err()
}

// Len returns the number of unread bytes (0 after a failure).
func (d *Decbuf) Len() int { return len(d.b) }

// Offset returns the number of bytes read so far (the whole input after a failure: the
// failure's own offset is in its DecodeError).
func (d *Decbuf) Offset() int { return d.size - len(d.b) }

// Get returns the unread bytes without consuming them (nil after a failure).
func (d *Decbuf) Get() []byte { return d.b }

// Failf records a failure at the current offset unless one is recorded already: for
// decoders that find a value invalid. The message is formatted by fmt.Errorf (%w wraps).
func (d *Decbuf) Failf(format string, args ...any) {
	if d.err == nil {
		d.err = &DecodeError{Offset: d.Offset(), Err: fmt.Errorf(format, args...)}
		d.b = nil
	}
}

// The fast paths below stay small enough to be inlined into decoders: they need not check
// d.err because a failure empties d.b. Failures and multi-byte varints are out of line.

// Byte reads one byte.
func (d *Decbuf) Byte() byte {
	if len(d.b) < 1 {
		if d.err == nil {
			d.err, d.need, d.left = errShort, 1, len(d.b)
		}
		d.b = nil
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// BE32 reads 4 bytes, big-endian.
func (d *Decbuf) BE32() uint32 {
	if len(d.b) < 4 {
		if d.err == nil {
			d.err, d.need, d.left = errShort, 4, len(d.b)
		}
		d.b = nil
		return 0
	}
	x := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return x
}

// BE64 reads 8 bytes, big-endian.
func (d *Decbuf) BE64() uint64 {
	if len(d.b) < 8 {
		if d.err == nil {
			d.err, d.need, d.left = errShort, 8, len(d.b)
		}
		d.b = nil
		return 0
	}
	x := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return x
}

// BE64int64 reads 8 bytes, big-endian two's complement.
func (d *Decbuf) BE64int64() int64 { return int64(d.BE64()) }

// Uvarint reads an unsigned varint.
func (d *Decbuf) Uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.badVarint(n, "uvarint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// Varint reads a zig-zag signed varint.
func (d *Decbuf) Varint() int64 {
	u, n := binary.Uvarint(d.b) // inlined, unlike binary.Varint
	if n <= 0 {
		d.badVarint(n, "varint")
		return 0
	}
	d.b = d.b[n:]
	return int64(u>>1) ^ -int64(u&1) // zig-zag, as binary.Varint
}

// badVarint records a varint that could not be read (n as from encoding/binary).
//
//go:noinline
func (d *Decbuf) badVarint(n int, what string) {
	if n == 0 {
		d.Failf("%s runs past the end", what)
	} else {
		d.Failf("%s overflows 64 bits", what)
	}
}

// Bytes reads n bytes (a fixed-size field).
func (d *Decbuf) Bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		if d.err == nil {
			d.err, d.need, d.left = errShort, n, len(d.b)
		}
		d.b = nil
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

// UvarintBytes reads a uvarint length and that many bytes.
func (d *Decbuf) UvarintBytes() []byte {
	n := d.Uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.Failf("length %d exceeds the %d bytes left", n, len(d.b))
		return nil
	}
	return d.Bytes(int(n))
}

// UvarintString reads a uvarint length and that many bytes as a string.
func (d *Decbuf) UvarintString() string { return string(d.UvarintBytes()) }

// Count reads a uvarint element count whose elements take at least minSize bytes each (≥ 1),
// and fails if the unread input cannot hold that many: a corrupt count never makes the
// caller allocate more than the input justifies.
func (d *Decbuf) Count(minSize int) int {
	n := d.Uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/max(minSize, 1)) {
		d.Failf("count %d too large for the %d bytes left", n, len(d.b))
		return 0
	}
	return int(n)
}
