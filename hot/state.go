package hot

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// stateVersion is the first byte of a snapshot; bump it when the format changes.
const stateVersion = 1

// flagHot marks a window whose last quote was hot in a snapshot.
const flagHot = 1

// ErrCorruptState is wrapped by every RestoreState error about malformed input. It also
// matches encoding.ErrCorrupt.
var ErrCorruptState = encoding.NewCorruptSentinel("corrupt hot detector state")

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
	w := appender{b: b}
	_ = d.WriteState(&w) // appender never fails
	return w.b
}

// appender is an io.Writer appending to b.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// stateFlush is the size at which WriteState hands its buffer to the writer.
const stateFlush = 64 << 10

// WriteState writes the snapshot of AppendState to w, in pieces of about 64 KiB, without
// ever holding it whole: a checkpoint of 50,000 full windows is over 100 MB.
func (d *Detector) WriteState(out io.Writer) error {
	keys := make([]uint64, 0, d.index.n)
	for _, e := range d.index.slots {
		if e.slot != 0 {
			keys = append(keys, e.key)
		}
	}
	slices.Sort(keys)
	e := encoding.Encbuf{B: make([]byte, 0, stateFlush+1024)}
	e.PutByte(stateVersion)
	e.PutUvarint(uint64(len(keys)))
	for _, k := range keys {
		s, _ := d.index.get(k)
		w := &d.windows[s]
		e.PutUvarint(k)
		e.PutUvarint(w.lastSeq)
		var flags byte
		if w.hot {
			flags |= flagHot
		}
		e.PutByte(flags)
		e.PutUvarint(uint64(w.n - w.lh))
		var prev entry
		for i := w.lh; i < w.n; i++ {
			en := w.at(i)
			if i == w.lh {
				e.PutVarint(en.ts)
				e.PutVarint(en.price)
			} else {
				e.PutUvarint(uint64(en.ts - prev.ts))
				e.PutVarint(en.price - prev.price)
			}
			prev = en
			if e.Len() >= stateFlush {
				if _, err := out.Write(e.Get()); err != nil {
					return fmt.Errorf("write hot state: %w", err)
				}
				e.Reset()
			}
		}
	}
	if _, err := out.Write(e.Get()); err != nil {
		return fmt.Errorf("write hot state: %w", err)
	}
	return nil
}

// RestoreState replaces all state of d with the snapshot b written by AppendState. After
// it, Observe continues exactly as the snapshotted detector would have. On error d is
// unchanged.
func (d *Detector) RestoreState(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("restore hot state: empty snapshot: %w", ErrCorruptState)
	}
	r := encoding.NewDecbuf(b)
	if v := r.Byte(); v != stateVersion {
		return fmt.Errorf("restore hot state: unknown version %d: %w", v, ErrCorruptState)
	}
	// Every window takes at least 4 bytes: reject absurd counts before allocating.
	count := r.Count(4)
	if err := r.Err(); err != nil {
		return fmt.Errorf("restore hot state: bad window count: %w: %w", ErrCorruptState, err)
	}
	windows := make([]window, 0, count)
	var index slotTable
	for range count {
		inc := r.Uvarint()
		seq := r.Uvarint()
		flags := r.Byte()
		n := r.Uvarint()
		if err := r.Err(); err != nil {
			return fmt.Errorf("restore hot state: truncated: %w: %w", ErrCorruptState, err)
		}
		if _, dup := index.get(inc); dup {
			return fmt.Errorf("restore hot state: incarnation %d twice: %w", inc, ErrCorruptState)
		}
		if flags&^flagHot != 0 {
			return fmt.Errorf("restore hot state: incarnation %d: bad flags %#x: %w", inc, flags, ErrCorruptState)
		}
		// Every entry takes at least 2 bytes.
		if n == 0 || n > uint64(r.Len())/2 || n > math.MaxInt32/2 {
			return fmt.Errorf("restore hot state: incarnation %d: bad entry count: %w", inc, ErrCorruptState)
		}
		w := window{
			buf:     make([]entry, max(int(n), 8)),
			n:       int32(n),
			cur:     -1,
			lastSeq: seq,
			used:    true,
			hot:     flags&flagHot != 0,
		}
		var prev entry
		for i := range int(n) {
			var e entry
			if i == 0 {
				e.ts, e.price = r.Varint(), r.Varint()
			} else {
				dt, dp := r.Uvarint(), r.Varint()
				if dt > uint64(1<<63-1) || prev.ts > 1<<63-1-int64(dt) {
					return fmt.Errorf("restore hot state: incarnation %d: ts overflow: %w", inc, ErrCorruptState)
				}
				e.ts, e.price = prev.ts+int64(dt), prev.price+dp
			}
			if err := r.Err(); err != nil {
				return fmt.Errorf("restore hot state: truncated: %w: %w", ErrCorruptState, err)
			}
			if e.price <= 0 || e.price > int64(feed.MaxPrice) {
				return fmt.Errorf("restore hot state: incarnation %d: bad price %d: %w", inc, e.price, ErrCorruptState)
			}
			w.buf[i] = e
			prev = e
		}
		w.setNext()
		index.put(inc, int32(len(windows)))
		windows = append(windows, w)
	}
	if r.Len() != 0 {
		return fmt.Errorf("restore hot state: %d trailing bytes: %w", r.Len(), ErrCorruptState)
	}
	d.windows = windows
	d.index = index
	d.free = nil
	return nil
}
