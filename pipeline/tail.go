package pipeline

import (
	"math"
	"unsafe"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
)

// DefaultTailMinutes is the default of Options.TailMinutes: the closed minutes a query of
// the last 30 minutes needs besides the open ones — 29 closed minutes and the previous
// close before them.
const DefaultTailMinutes = 30

// candleTail keeps the recently closed candles of every active incarnation in memory, so
// that a query of a recent range (last=30m) is answered without reading the store. It is
// updated in derive, under p.mu, from the aggregator's output (Closed and Late), so it
// holds what the store holds once the derived run is committed: a minute's closed state
// with its late corrections merged in (the same Merge, in the same order, as
// store.Apply). Queries read it under p.mu's read lock.
//
// What it knows. Every minute ≥ from that closed while the tail ran went through it: from
// is the aggregator's ClosedThrough when the tail started (math.MinInt64 for a new data
// directory; after a restart, the checkpoint's). Per incarnation it keeps the minutes of a
// window of n minutes ending with the newest minute written (older ones are evicted as
// newer ones arrive); minutes after the newest one up to the last closed minute had no
// quotes. So for an incarnation the tail answers exactly every closed minute ≥ lo (see
// entryLow); a query reaching below it goes to the store.
//
// What it keeps of a candle: the prices and the quote count a query answers with, not the
// times and sequences of the first and last quotes, which only merging a late correction
// needs. So a late correction is not merged here: the tail stops answering for its minute
// and the ones before it (tailEntry.floor), and the queries that reach them read the store,
// which merges it exactly. A live feed has none (quotes are stamped on arrival).
//
// Memory. One entry (48 bytes) per incarnation plus n slots of 20 bytes (tailSlot: the
// candle packed as 32-bit deltas; a candle whose deltas do not fit goes whole to an
// overflow map, which stays empty in practice: the base follows a drifting price): ~31
// MiB for 50,000 instruments × 30 minutes. Slots live in chunks of tailChunk entries,
// without pointers (the collector does not scan them), and freed entries are reused.
type candleTail struct {
	n    int   // minutes per incarnation (0: the tail is off)
	from int64 // every minute ≥ from that closed is known; valid once started
	// started is set by the first derive: from is the aggregator's ClosedThrough then.
	started bool

	index    map[feed.ISIN]int32 // entry of the ISIN's incarnation
	entries  []tailEntry
	chunks   [][]tailSlot // entry i's slots: chunks[i/tailChunk][(i%tailChunk)*n:][:n]
	free     []int32      // free entries
	overflow map[tailSlotRef]aggregate.Candle
}

// tailChunk is how many entries' slots are allocated together.
const tailChunk = 1024

// tailEntry is one incarnation in the tail.
type tailEntry struct {
	isin feed.ISIN
	inc  uint64 // 0: free
	// newest is the minute of the newest candle written (math.MinInt64: none yet); the
	// slots hold the minutes newest−(n−1)…newest, slot (minute/1m) mod n.
	newest int64
	// floor is the first minute the tail may answer for: the one after the latest minute a
	// late correction changed (math.MinInt64: none).
	floor int64
	// base is the price the slots' opens are relative to: the open of the first candle
	// stored since the entry was last empty.
	base int64
}

// tailSlot is one candle, packed: Open relative to the entry's base, the other prices
// relative to Open, and the quote count. quotes = 0: no candle; quotes = tailOverflow: the
// candle is in candleTail.overflow.
type tailSlot struct {
	open             int32 // − tailEntry.base
	high, low, close int32 // − open
	quotes           uint32
}

// tailOverflow marks a slot whose candle is in the overflow map.
const tailOverflow = math.MaxUint32

// tailSlotSize and tailEntrySize are the bytes per candle and per incarnation.
const (
	tailSlotSize  = int(unsafe.Sizeof(tailSlot{}))
	tailEntrySize = int(unsafe.Sizeof(tailEntry{}))
)

// tailSlotRef names a slot: entry and index.
type tailSlotRef struct {
	entry, slot int32
}

// newCandleTail returns a tail of n minutes per incarnation; n ≤ 0: an empty tail that
// keeps nothing and covers nothing.
func newCandleTail(n int) *candleTail {
	return &candleTail{n: max(n, 0), from: math.MaxInt64, index: map[feed.ISIN]int32{}}
}

// enabled reports whether the tail keeps anything.
func (t *candleTail) enabled() bool { return t.n > 0 }

// start marks the point from which the tail sees every close: the aggregator's
// ClosedThrough before the first record the tail is given.
func (t *candleTail) start(closedThrough int64) {
	if !t.started {
		t.started = true
		t.from = closedThrough
	}
}

// forget makes the tail not answer for minutes before closedThrough: something other than
// the pipeline may have written the store's candles up to it (a backfill).
func (t *candleTail) forget(closedThrough int64) {
	if t.started {
		t.from = max(t.from, closedThrough)
	}
}

func (t *candleTail) slots(e int32) []tailSlot {
	return t.chunks[e/tailChunk][int(e%tailChunk)*t.n:][:t.n]
}

// slotOf returns the slot index of minute m.
func (t *candleTail) slotOf(m int64) int {
	k := m / aggregate.MinuteNanos % int64(t.n)
	if k < 0 {
		k += int64(t.n)
	}
	return int(k)
}

// lookup returns the entry of isin's incarnation inc, or -1.
func (t *candleTail) lookup(isin feed.ISIN, inc uint64) int32 {
	e, ok := t.index[isin]
	if !ok || t.entries[e].inc != inc {
		return -1
	}
	return e
}

// alloc returns a fresh entry for (isin, inc).
func (t *candleTail) alloc(isin feed.ISIN, inc uint64) int32 {
	var e int32
	if n := len(t.free); n > 0 {
		e, t.free = t.free[n-1], t.free[:n-1]
	} else {
		e = int32(len(t.entries))
		t.entries = append(t.entries, tailEntry{})
		if int(e)/tailChunk == len(t.chunks) {
			t.chunks = append(t.chunks, make([]tailSlot, tailChunk*t.n))
		}
	}
	t.entries[e] = tailEntry{isin: isin, inc: inc, newest: math.MinInt64, floor: math.MinInt64}
	t.index[isin] = e
	return e
}

// clearSlot empties slot i of entry e.
func (t *candleTail) clearSlot(e int32, s []tailSlot, i int) {
	if s[i].quotes == tailOverflow {
		delete(t.overflow, tailSlotRef{e, int32(i)})
	}
	s[i] = tailSlot{}
}

// reset empties entry e.
func (t *candleTail) reset(e int32) {
	s := t.slots(e)
	for i := range s {
		t.clearSlot(e, s, i)
	}
	t.entries[e].newest, t.entries[e].floor = math.MinInt64, math.MinInt64
}

// drop removes the incarnation inc of isin (a DELETE ended it).
func (t *candleTail) drop(isin feed.ISIN, inc uint64) {
	e := t.lookup(isin, inc)
	if e < 0 {
		return
	}
	t.reset(e)
	t.entries[e] = tailEntry{}
	delete(t.index, isin)
	t.free = append(t.free, e)
}

// put records c: the closed state of its minute (late false) or a late correction of it,
// after which the tail no longer answers for that minute and the ones before. active
// reports whether an incarnation without an entry is the ISIN's active one (else c belongs
// to an ended incarnation, which queries never ask for).
func (t *candleTail) put(c *aggregate.Candle, late bool, active func(feed.ISIN, uint64) bool) {
	e, ok := t.index[c.ISIN]
	switch {
	case ok && t.entries[e].inc == c.Incarnation:
	case ok && t.entries[e].inc > c.Incarnation:
		return // an ended incarnation's minute closing after the ISIN's next ADD
	case !active(c.ISIN, c.Incarnation):
		return
	case ok: // an older incarnation (ended without its DELETE reaching the tail)
		t.reset(e)
		t.entries[e].inc = c.Incarnation
	default:
		e = t.alloc(c.ISIN, c.Incarnation)
	}
	en := &t.entries[e]
	s := t.slots(e)
	m := c.Minute
	if late {
		en.floor = max(en.floor, m+aggregate.MinuteNanos)
		return
	}
	if en.newest == math.MinInt64 || m > en.newest {
		// Advance the window: the minutes after the old newest one had no quotes, and the
		// slots they take over held minutes now out of the window. An entry without a
		// newest minute has only empty slots (alloc and reset leave it so).
		if en.newest != math.MinInt64 {
			lo := max(m-int64(t.n-1)*aggregate.MinuteNanos, en.newest+aggregate.MinuteNanos)
			for x := lo; x <= m; x += aggregate.MinuteNanos {
				t.clearSlot(e, s, t.slotOf(x))
			}
		}
		if en.newest == math.MinInt64 {
			en.base = int64(c.Open) // every slot is empty
		}
		en.newest = m
	} else if m <= en.newest-int64(t.n)*aggregate.MinuteNanos {
		return // before the window: not covered (entryLow)
	}
	t.store(e, s, t.slotOf(m), c)
}

// store writes c into slot i of entry e, or into the overflow map when it does not pack.
func (t *candleTail) store(e int32, s []tailSlot, i int, c *aggregate.Candle) {
	if s[i].quotes == tailOverflow {
		delete(t.overflow, tailSlotRef{e, int32(i)})
	}
	s[i] = tailSlot{}
	if pack(&s[i], c, t.entries[e].base) {
		return
	}
	if !fitsInt32(int64(c.Open) - t.entries[e].base) {
		t.rebase(e, s, int64(c.Open))
		if pack(&s[i], c, t.entries[e].base) {
			return
		}
	}
	t.spill(e, s, i, *c)
}

// spill puts c, the candle of slot i of entry e, into the overflow map.
func (t *candleTail) spill(e int32, s []tailSlot, i int, c aggregate.Candle) {
	if t.overflow == nil {
		t.overflow = map[tailSlotRef]aggregate.Candle{}
	}
	t.overflow[tailSlotRef{e, int32(i)}] = queryCandle(c)
	s[i] = tailSlot{quotes: tailOverflow}
}

// rebase moves entry e's base to base, when a candle's open is too far from it to pack (a
// price that drifted more than ±2,147 units from the entry's first would otherwise send
// every later candle to the overflow map). Packed candles whose opens do not fit the new
// base go to the overflow map; they leave the window within n minutes.
func (t *candleTail) rebase(e int32, s []tailSlot, base int64) {
	en := &t.entries[e]
	top := t.slotOf(en.newest)
	for i := range s {
		x := s[i]
		if x.quotes == 0 || x.quotes == tailOverflow {
			continue
		}
		if d := en.base + int64(x.open) - base; fitsInt32(d) {
			s[i].open = int32(d)
			continue
		}
		back := int64((top - i + t.n) % t.n) // slot i holds minute newest − back
		c, _ := t.decode(e, s, i, en.newest-back*aggregate.MinuteNanos)
		t.spill(e, s, i, c)
	}
	en.base = base
}

func fitsInt32(d int64) bool { return d >= math.MinInt32 && d <= math.MaxInt32 }

// pack packs c into s, its open relative to base, and reports whether it fits.
func pack(s *tailSlot, c *aggregate.Candle, base int64) bool {
	do, dh, dl, dc := int64(c.Open)-base, int64(c.High-c.Open), int64(c.Low-c.Open), int64(c.Close-c.Open)
	if !fitsInt32(do) || !fitsInt32(dh) || !fitsInt32(dl) || !fitsInt32(dc) || c.Quotes == 0 || c.Quotes >= tailOverflow ||
		// Differences of int64 prices that overflowed.
		(int64(c.Open) >= base) != (do >= 0) ||
		(c.High >= c.Open) != (dh >= 0) || (c.Low >= c.Open) != (dl >= 0) || (c.Close >= c.Open) != (dc >= 0) {
		return false
	}
	*s = tailSlot{open: int32(do), high: int32(dh), low: int32(dl), close: int32(dc), quotes: uint32(c.Quotes)}
	return true
}

// queryCandle returns c as queries answer it: without the times and sequences of its
// first and last quotes (which the tail does not keep).
func queryCandle(c aggregate.Candle) aggregate.Candle {
	c.OpenTS, c.CloseTS, c.OpenSeq, c.CloseSeq = 0, 0, 0, 0
	return c
}

// decode returns the candle in slot i of entry e, whose minute is m, if the slot holds one.
func (t *candleTail) decode(e int32, s []tailSlot, i int, m int64) (aggregate.Candle, bool) {
	x := &s[i]
	switch x.quotes {
	case 0:
		return aggregate.Candle{}, false
	case tailOverflow:
		return t.overflow[tailSlotRef{e, int32(i)}], true
	}
	en := &t.entries[e]
	open := feed.Price(en.base + int64(x.open))
	return aggregate.Candle{
		Key:    aggregate.Key{ISIN: en.isin, Incarnation: en.inc, Minute: m},
		Open:   open,
		High:   open + feed.Price(x.high),
		Low:    open + feed.Price(x.low),
		Close:  open + feed.Price(x.close),
		Quotes: uint64(x.quotes),
	}, true
}

// entryLow returns the first minute from which the tail knows every closed candle of the
// incarnation in entry e (e < 0: an incarnation without an entry, of which no minute closed
// with quotes while the tail ran).
func (t *candleTail) entryLow(e int32) int64 {
	if e < 0 {
		return t.from
	}
	en := &t.entries[e]
	if en.newest == math.MinInt64 {
		return max(t.from, en.floor)
	}
	return max(t.from, en.floor, en.newest-int64(t.n-1)*aggregate.MinuteNanos)
}

// appendRange appends the candles of entry e with lo ≤ minute < hi, oldest first.
func (t *candleTail) appendRange(out []aggregate.Candle, e int32, lo, hi int64) []aggregate.Candle {
	if e < 0 {
		return out
	}
	en := &t.entries[e]
	if en.newest == math.MinInt64 {
		return out
	}
	s := t.slots(e)
	lo = max(lo, en.newest-int64(t.n-1)*aggregate.MinuteNanos)
	for m := lo; m < hi && m <= en.newest; m += aggregate.MinuteNanos {
		if c, ok := t.decode(e, s, t.slotOf(m), m); ok {
			out = append(out, c)
		}
	}
	return out
}

// before returns the latest candle of entry e with lo ≤ minute < m.
func (t *candleTail) before(e int32, lo, m int64) (aggregate.Candle, bool) {
	if e < 0 {
		return aggregate.Candle{}, false
	}
	en := &t.entries[e]
	if en.newest == math.MinInt64 {
		return aggregate.Candle{}, false
	}
	s := t.slots(e)
	lo = max(lo, en.newest-int64(t.n-1)*aggregate.MinuteNanos)
	for x := min(m-aggregate.MinuteNanos, en.newest); x >= lo; x -= aggregate.MinuteNanos {
		if c, ok := t.decode(e, s, t.slotOf(x), x); ok {
			return c, true
		}
	}
	return aggregate.Candle{}, false
}

// Bytes returns the memory the tail holds: slots, entries, free list and the ISIN index
// (estimated: 17 bytes a slot of Go's map, 8 slots a group at most 7/8 full), not the
// overflow map.
func (t *candleTail) bytes() int {
	b := len(t.chunks)*tailChunk*t.n*tailSlotSize + cap(t.entries)*tailEntrySize + cap(t.free)*4
	b += len(t.index) * (feed.ISINLen + 4 + 1) * 8 / 7
	return b
}
