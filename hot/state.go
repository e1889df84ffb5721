package hot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/quotesdev/quotes/feed"
)

// stateVersion is the first byte of a snapshot; bump it when the format changes.
const stateVersion = 1

// flagHot marks a window whose last quote was hot in a snapshot.
const flagHot = 1

// ErrCorruptState is wrapped by every RestoreState error about malformed input.
var ErrCorruptState = errors.New("corrupt hot detector state")

// AppendState appends a compact binary snapshot of all state — every window and hot flag,
// the last sequence per incarnation — to b. The output is deterministic (incarnations in
// ascending order). It does not contain the options: a snapshot can be restored into a
// Detector with other options.
//
// Format: version byte; uvarint window count; per window: uvarint incarnation, uvarint last
// sequence, flags byte (1 = hot), uvarint entry count (≥ 1), then entries oldest first:
// the first as varint ts and varint price, the rest as uvarint ts delta and varint price
// delta.
func (d *Detector) AppendState(b []byte) []byte {
	keys := make([]uint64, 0, len(d.windows))
	for k := range d.windows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, stateVersion)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		w := d.windows[k]
		b = binary.AppendUvarint(b, k)
		b = binary.AppendUvarint(b, w.lastSeq)
		var flags byte
		if w.hot {
			flags |= flagHot
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, uint64(w.n))
		var prev entry
		for i := 0; i < w.n; i++ {
			e := w.at(i)
			if i == 0 {
				b = binary.AppendVarint(b, e.ts)
				b = binary.AppendVarint(b, e.price)
			} else {
				b = binary.AppendUvarint(b, uint64(e.ts-prev.ts))
				b = binary.AppendVarint(b, e.price-prev.price)
			}
			prev = e
		}
	}
	return b
}

// RestoreState replaces all state of d with the snapshot b written by AppendState. After
// it, Observe continues exactly as the snapshotted detector would have. On error d is
// unchanged.
func (d *Detector) RestoreState(b []byte) error {
	r := stateReader{b: b}
	if len(b) == 0 {
		return fmt.Errorf("restore hot state: empty snapshot: %w", ErrCorruptState)
	}
	if v := r.byte(); v != stateVersion {
		return fmt.Errorf("restore hot state: unknown version %d: %w", v, ErrCorruptState)
	}
	count := r.uvarint()
	// Every window takes at least 4 bytes: reject absurd counts before allocating.
	if r.bad || count > uint64(len(r.b)-r.off)/4 {
		return fmt.Errorf("restore hot state: bad window count: %w", ErrCorruptState)
	}
	windows := make(map[uint64]*window, count)
	for range count {
		inc := r.uvarint()
		seq := r.uvarint()
		flags := r.byte()
		n := r.uvarint()
		if r.bad {
			return fmt.Errorf("restore hot state: truncated: %w", ErrCorruptState)
		}
		if _, dup := windows[inc]; dup {
			return fmt.Errorf("restore hot state: incarnation %d twice: %w", inc, ErrCorruptState)
		}
		if flags&^flagHot != 0 {
			return fmt.Errorf("restore hot state: incarnation %d: bad flags %#x: %w", inc, flags, ErrCorruptState)
		}
		// Every entry takes at least 2 bytes.
		if n == 0 || n > uint64(len(r.b)-r.off)/2 {
			return fmt.Errorf("restore hot state: incarnation %d: bad entry count: %w", inc, ErrCorruptState)
		}
		w := &window{
			buf:     make([]entry, max(int(n), 8)),
			n:       int(n),
			cur:     -1,
			lastSeq: seq,
			hot:     flags&flagHot != 0,
		}
		var prev entry
		for i := range w.n {
			var e entry
			if i == 0 {
				e.ts, e.price = r.varint(), r.varint()
			} else {
				dt, dp := r.uvarint(), r.varint()
				if dt > uint64(1<<63-1) || prev.ts > 1<<63-1-int64(dt) {
					return fmt.Errorf("restore hot state: incarnation %d: ts overflow: %w", inc, ErrCorruptState)
				}
				e.ts, e.price = prev.ts+int64(dt), prev.price+dp
			}
			if r.bad {
				return fmt.Errorf("restore hot state: truncated: %w", ErrCorruptState)
			}
			if e.price <= 0 || e.price > int64(feed.MaxPrice) {
				return fmt.Errorf("restore hot state: incarnation %d: bad price %d: %w", inc, e.price, ErrCorruptState)
			}
			w.buf[i] = e
			prev = e
		}
		windows[inc] = w
	}
	if r.off != len(r.b) {
		return fmt.Errorf("restore hot state: %d trailing bytes: %w", len(r.b)-r.off, ErrCorruptState)
	}
	d.windows = windows
	d.free = nil
	return nil
}

// stateReader decodes a snapshot; a failure (input too short, bad varint) sticks in bad.
type stateReader struct {
	b   []byte
	off int
	bad bool
}

func (r *stateReader) byte() byte {
	if r.bad || r.off >= len(r.b) {
		r.bad = true
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *stateReader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	v, k := binary.Uvarint(r.b[r.off:])
	if k <= 0 {
		r.bad = true
		return 0
	}
	r.off += k
	return v
}

func (r *stateReader) varint() int64 {
	if r.bad {
		return 0
	}
	v, k := binary.Varint(r.b[r.off:])
	if k <= 0 {
		r.bad = true
		return 0
	}
	r.off += k
	return v
}
