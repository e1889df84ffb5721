package aggregate

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"iter"
	"slices"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/encoding"
)

// incKey is an incarnation with its sort key, (ISIN, id), in registers: sorting 50,000
// incarnations through their pointers (cmpInc) took most of a checkpoint's AppendState,
// which the pipeline's aggregation waits for.
type incKey struct {
	hi  uint64 // ISIN bytes 0–7, big-endian
	lo  uint32 // ISIN bytes 8–11, big-endian
	id  uint64
	inc *incarnation
}

// sortedIncs returns the incarnations of a snapshot ordered by (ISIN, id) as cmpInc orders
// them: the active ones and the deleted ones of dirty that still have open candles. n is
// the number of active ones.
func sortedIncs(active iter.Seq[*incarnation], dirty []*incarnation, n int) []incKey {
	// The deleted ones are counted first so that keys is allocated once: with a fixed
	// margin, more than a few deleted incarnations made append copy all 50,000 keys.
	deleted := 0
	for _, inc := range dirty {
		if !inc.active && len(inc.open) > 0 {
			deleted++
		}
	}
	keys := make([]incKey, 0, n+deleted)
	add := func(inc *incarnation) {
		keys = append(keys, incKey{
			hi:  binary.BigEndian.Uint64(inc.isin[:8]),
			lo:  binary.BigEndian.Uint32(inc.isin[8:]),
			id:  inc.id,
			inc: inc,
		})
	}
	for inc := range active {
		add(inc)
	}
	for _, inc := range dirty {
		if !inc.active && len(inc.open) > 0 {
			add(inc)
		}
	}
	slices.SortFunc(keys, func(x, y incKey) int {
		if c := cmp.Compare(x.hi, y.hi); c != 0 {
			return c
		}
		if c := cmp.Compare(x.lo, y.lo); c != 0 {
			return c
		}
		return cmp.Compare(x.id, y.id)
	})
	return keys
}

// stateMagic starts a snapshot; the last byte is the format version.
const stateMagic = "QAGG\x01"

// AppendState appends a compact binary snapshot of the whole state to b: LastSeq, watermark,
// closed-through, the registry (active incarnations with latest price, first minute and last
// close), the open candles of every incarnation (deleted ones included), the held quotes
// and the counters. The encoding is deterministic: equal states give equal bytes. The grace
// period is not part of it (it comes from New).
func (a *Aggregator) AppendState(b []byte) []byte {
	e := encoding.Encbuf{B: b}
	e.PutString(stateMagic)
	var flags byte
	if a.hasWM {
		flags |= 1
	}
	e.PutByte(flags)
	e.PutUvarint(a.lastSeq)
	e.PutVarint(a.watermark)
	e.PutVarint(a.closedThrough)

	counters := a.counters()
	e.PutUvarint(uint64(len(counters)))
	for _, c := range counters {
		e.PutUvarint(*c)
	}

	incs := sortedIncs(a.active.Values(), a.dirty, a.active.Len())
	e.PutUvarint(uint64(len(incs)))
	for _, ik := range incs {
		inc := ik.inc
		e.PutBytes(inc.isin[:])
		e.PutUvarint(inc.id)
		e.PutUvarintString(inc.desc)
		flags = 0
		if inc.active {
			flags |= 1
		}
		if inc.hasPrice {
			flags |= 2
		}
		if inc.hasLastClose {
			flags |= 4
		}
		e.PutByte(flags)
		e.PutVarint(int64(inc.price))
		e.PutVarint(inc.priceTS)
		e.PutUvarint(inc.priceSeq)
		e.PutVarint(inc.firstMinute)
		e.PutVarint(int64(inc.lastClose))
		e.PutVarint(inc.lastCloseMinute)
		e.PutVarint(inc.lastCloseTS)
		e.PutUvarint(inc.lastCloseSeq)
		e.PutUvarint(uint64(len(inc.open)))
		for i := range inc.open {
			c := &inc.open[i]
			e.PutVarint(c.Minute)
			e.PutVarint(int64(c.Open))
			e.PutVarint(int64(c.High))
			e.PutVarint(int64(c.Low))
			e.PutVarint(int64(c.Close))
			e.PutVarint(c.OpenTS)
			e.PutVarint(c.CloseTS)
			e.PutUvarint(c.OpenSeq)
			e.PutUvarint(c.CloseSeq)
			e.PutUvarint(c.Quotes)
		}
	}

	isins := make([]feed.ISIN, 0, len(a.held.byISIN))
	for isin := range a.held.byISIN {
		isins = append(isins, isin)
	}
	slices.SortFunc(isins, func(x, y feed.ISIN) int { return compareISIN(&x, &y) })
	e.PutUvarint(uint64(len(isins)))
	for _, isin := range isins {
		qs := a.held.byISIN[isin]
		e.PutBytes(isin[:])
		e.PutUvarint(uint64(len(qs)))
		for _, q := range qs {
			e.PutVarint(q.ts)
			e.PutUvarint(q.seq)
			e.PutVarint(int64(q.price))
		}
	}
	return e.Get()
}

// counters lists the cumulative Stats fields in snapshot order. New counters go at the end.
func (a *Aggregator) counters() []*uint64 {
	s := &a.stats
	return []*uint64{
		&s.Records, &s.Ticks, &s.Ignored,
		&s.QuoteRecords, &s.Aggregated, &s.Late,
		&s.HeldQuotes, &s.Released, &s.DroppedExpired, &s.DroppedAtEnd,
		&s.AddsNew, &s.AddsDuplicate, &s.Deletes, &s.DeletesUnknown,
		&s.CandlesClosed, &s.Stale,
	}
}

// errState is wrapped by every RestoreState error. It also matches encoding.ErrCorrupt.
var errState = encoding.NewCorruptSentinel("aggregate: bad state snapshot")

// RestoreState replaces the whole state with the snapshot b (made by AppendState), keeping
// the Options given to New. On error the Aggregator is left empty.
func (a *Aggregator) RestoreState(b []byte) error {
	grace := a.grace
	a.init(0)
	a.grace = grace
	if err := a.restore(b); err != nil {
		a.init(0)
		a.grace = grace
		return err
	}
	return nil
}

func (a *Aggregator) restore(b []byte) error {
	if len(b) < len(stateMagic) || string(b[:len(stateMagic)]) != stateMagic {
		return fmt.Errorf("%w: unknown format", errState)
	}
	r := encoding.NewDecbuf(b[len(stateMagic):])
	flags := r.Byte()
	a.hasWM = flags&1 != 0
	a.lastSeq = r.Uvarint()
	a.watermark = r.Varint()
	a.closedThrough = r.Varint()

	counters := a.counters()
	nc := r.Count(1)
	for i := 0; i < nc; i++ {
		v := r.Uvarint()
		if i < len(counters) {
			*counters[i] = v
		}
	}

	ni := r.Count(feed.ISINLen + 12)
	for i := 0; i < ni && r.Err() == nil; i++ {
		isin := readISIN(&r)
		id := r.Uvarint()
		inc := newIncarnation(isin, id, r.UvarintString())
		f := r.Byte()
		if r.Err() != nil {
			break
		}
		inc.active, inc.hasPrice, inc.hasLastClose = f&1 != 0, f&2 != 0, f&4 != 0
		inc.price = feed.Price(r.Varint())
		inc.priceTS = r.Varint()
		inc.priceSeq = r.Uvarint()
		inc.firstMinute = r.Varint()
		inc.lastClose = feed.Price(r.Varint())
		inc.lastCloseMinute = r.Varint()
		inc.lastCloseTS = r.Varint()
		inc.lastCloseSeq = r.Uvarint()
		no := r.Count(10)
		if no > len(inc.openBuf) {
			inc.open = make([]Candle, 0, no)
		}
		inc.open = inc.open[:no]
		for j := 0; j < no && r.Err() == nil; j++ {
			c := &inc.open[j]
			c.Key = Key{ISIN: inc.isin, Incarnation: inc.id, Minute: r.Varint()}
			c.Open = feed.Price(r.Varint())
			c.High = feed.Price(r.Varint())
			c.Low = feed.Price(r.Varint())
			c.Close = feed.Price(r.Varint())
			c.OpenTS = r.Varint()
			c.CloseTS = r.Varint()
			c.OpenSeq = r.Uvarint()
			c.CloseSeq = r.Uvarint()
			c.Quotes = r.Uvarint()
			if r.Err() == nil && (c.Quotes == 0 || j > 0 && c.Minute <= inc.open[j-1].Minute || MinuteOf(c.Minute) != c.Minute) {
				r.Failf("invalid open candle")
			}
		}
		if r.Err() != nil {
			break
		}
		if inc.active {
			if a.activeInc(&inc.isin) != nil {
				r.Failf("duplicate active ISIN")
				break
			}
			a.active.Put(&inc.isin, inc)
		} else if no == 0 {
			r.Failf("inactive incarnation without open candles")
			break
		}
		if no > 0 {
			inc.dirty = true
			a.dirty = append(a.dirty, inc)
		}
	}

	nh := r.Count(feed.ISINLen + 4)
	for i := 0; i < nh && r.Err() == nil; i++ {
		isin := readISIN(&r)
		nq := r.Count(3)
		if r.Err() == nil && (nq == 0 || a.held.byISIN[isin] != nil || a.activeInc(&isin) != nil) {
			r.Failf("invalid held ISIN")
		}
		for j := 0; j < nq && r.Err() == nil; j++ {
			q := heldQuote{ts: r.Varint(), seq: r.Uvarint(), price: feed.Price(r.Varint())}
			if r.Err() == nil {
				a.held.push(isin, q)
			}
		}
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("%w: %w", errState, err)
	}
	a.dirtySorted = 0
	a.sortDirty()
	return nil
}

// readISIN reads a fixed-size ISIN.
func readISIN(r *encoding.Decbuf) feed.ISIN {
	var isin feed.ISIN
	copy(isin[:], r.Bytes(feed.ISINLen))
	return isin
}
