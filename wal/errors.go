package wal

import (
	"errors"
	"fmt"

	"github.com/quotesdev/quotes/internal/encoding"
)

// ErrClosed is returned by every operation on a Log (or one of its Readers) after Close.
var ErrClosed = errors.New("wal: log closed")

// ErrCorrupt is matched (errors.Is) by every *CorruptionError: a block failed its checksum,
// could not be decoded, or the sequence of blocks has a gap. It also matches
// encoding.ErrCorrupt (the convention of internal/encoding).
var ErrCorrupt = encoding.NewCorruptSentinel("wal: corrupt log")

// ErrTruncated is returned by Reader.Next when the records the reader needs next were removed
// by Truncate while it was reading: the reader fell behind retention.
var ErrTruncated = errors.New("wal: records truncated")

// ErrFailed is wrapped by the error of every append after a write to Badger failed. A failed
// write (for example an fsync error) leaves it unknown what reached the disk, so the log
// refuses further appends until it is closed and reopened, which recovers from what is
// actually on disk.
var ErrFailed = errors.New("wal: log failed")

// CorruptionError reports a block of the log that cannot be trusted: its checksum does not
// match, it does not decode, or it is missing (a gap in the sequence). Readers and Open return
// it instead of silently skipping the records that follow; Options.Repair makes Open truncate
// the log at the first such block.
type CorruptionError struct {
	// Seq is the first sequence the corruption affects: the first sequence of the corrupt
	// block, or the first missing sequence for a gap.
	Seq uint64
	// Key is the Badger key of the corrupt block (nil for a gap).
	Key []byte
	// Kept is the last sequence before the corruption that is intact (Seq-1 in practice);
	// everything up to and including Kept can be read.
	Kept uint64
	// Err describes what is wrong.
	Err error
}

// Error implements error.
func (e *CorruptionError) Error() string {
	if e.Key != nil {
		return fmt.Sprintf("wal: corrupt block at seq %d (key %q), records up to seq %d are intact: %v",
			e.Seq, e.Key, e.Kept, e.Err)
	}
	return fmt.Sprintf("wal: corrupt log at seq %d, records up to seq %d are intact: %v", e.Seq, e.Kept, e.Err)
}

// Unwrap returns the underlying cause.
func (e *CorruptionError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt or encoding.ErrCorrupt, so errors.Is(err,
// ErrCorrupt) and errors.Is(err, encoding.ErrCorrupt) match any CorruptionError.
func (e *CorruptionError) Is(target error) bool {
	return target == ErrCorrupt || target == encoding.ErrCorrupt
}
