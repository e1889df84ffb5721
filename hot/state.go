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
	keys := d.index.keys(make([]uint64, 0, d.index.len()))
	slices.Sort(keys)
	e := encoding.Encbuf{B: make([]byte, 0, stateFlush+1024)}
	e.PutByte(stateVersion)
	e.PutUvarint(uint64(len(keys)))
	for _, k := range keys {
		s, _ := d.index.get(k)
		var err error
		if s&wideBit == 0 {
			err = writeWindow(&e, out, k, &d.compact[s], d.cdom)
		} else {
			err = writeWindow(&e, out, k, &d.wide[s&^wideBit], d.wideDom)
		}
		if err != nil {
			return err
		}
	}
	if _, err := out.Write(e.Get()); err != nil {
		return fmt.Errorf("write hot state: %w", err)
	}
	return nil
}

// writeWindow appends the window of incarnation inc to e, handing e to out whenever it
// grows past stateFlush.
func writeWindow[T word](e *encoding.Encbuf, out io.Writer, inc uint64, w *window[T], dm domain) error {
	e.PutUvarint(inc)
	e.PutUvarint(w.lastSeq)
	var flags byte
	if w.hot {
		flags |= flagHot
	}
	e.PutByte(flags)
	e.PutUvarint(uint64(w.n - w.lh))
	var prev entry
	for i := w.lh; i < w.n; i++ {
		en := w.entry(dm, i)
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
	// The compact windows' time base: the newest time in the snapshot (first pass), so
	// that the recent points, which are most of them, fit.
	nd := New(d.opts)
	if t, ok := newestTime(b); ok {
		nd.cdom.tbase, nd.baseSet = nd.cdom.key(t)*msNanos, true
	}
	var es []entry
	for range count {
		inc := r.Uvarint()
		seq := r.Uvarint()
		flags := r.Byte()
		n := r.Uvarint()
		if err := r.Err(); err != nil {
			return fmt.Errorf("restore hot state: truncated: %w: %w", ErrCorruptState, err)
		}
		if _, dup := nd.index.get(inc); dup {
			return fmt.Errorf("restore hot state: incarnation %d twice: %w", inc, ErrCorruptState)
		}
		if flags&^flagHot != 0 {
			return fmt.Errorf("restore hot state: incarnation %d: bad flags %#x: %w", inc, flags, ErrCorruptState)
		}
		// Every entry takes at least 2 bytes.
		if n == 0 || n > uint64(r.Len())/2 || n > math.MaxInt32/2 {
			return fmt.Errorf("restore hot state: incarnation %d: bad entry count: %w", inc, ErrCorruptState)
		}
		es = es[:0]
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
			es = append(es, e)
			prev = e
		}
		nd.restoreWindow(inc, seq, flags&flagHot != 0, es)
	}
	if r.Len() != 0 {
		return fmt.Errorf("restore hot state: %d trailing bytes: %w", r.Len(), ErrCorruptState)
	}
	*d = *nd
	return nil
}

// restoreWindow adds the window of incarnation inc holding es (oldest first), compact
// when it fits.
func (d *Detector) restoreWindow(inc, seq uint64, hot bool, es []entry) {
	fits := d.baseSet
	for _, e := range es {
		_, ok := d.cdom.pointKey(e.ts)
		if dp := e.price - es[0].price; !ok || dp != int64(int32(dp)) {
			fits = false
			break
		}
	}
	if fits {
		s := d.allocCompact(inc)
		d.compact[s] = restored[int32](d.cdom, es[0].price, seq, hot, es)
		d.index.put(inc, s)
		return
	}
	s := d.allocWide(inc)
	d.wide[s] = restored[int64](d.wideDom, 0, seq, hot, es)
	d.index.put(inc, s|wideBit)
}

// restored returns a window holding es in domain dm with price base pbase; every entry
// must fit.
func restored[T word](dm domain, pbase int64, seq uint64, hot bool, es []entry) window[T] {
	w := window[T]{buf: make([]point[T], max(len(es), 8)), n: int32(len(es)), cur: -1, lastSeq: seq, pbase: pbase, used: true, hot: hot}
	for i, e := range es {
		k := e.ts
		if dm.compact {
			ck, _ := dm.pointKey(e.ts)
			k = int64(ck)
		}
		w.buf[i] = point[T]{key: T(k), price: T(e.price - pbase)}
	}
	w.setNext()
	return w
}

// newestTime returns the largest entry time in the snapshot b, reading it without checks
// (RestoreState checks); ok is false when there is none.
func newestTime(b []byte) (int64, bool) {
	r := encoding.NewDecbuf(b)
	r.Byte()
	count := r.Uvarint()
	newest, ok := int64(math.MinInt64), false
	for c := uint64(0); c < count && r.Err() == nil; c++ {
		r.Uvarint()
		r.Uvarint()
		r.Byte()
		n := r.Uvarint()
		var ts int64
		for i := uint64(0); i < n && r.Err() == nil; i++ {
			if i == 0 {
				ts = r.Varint()
			} else {
				ts += int64(r.Uvarint())
			}
			r.Varint()
		}
		if n > 0 && r.Err() == nil {
			newest, ok = max(newest, ts), true
		}
	}
	return newest, ok
}
