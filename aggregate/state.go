package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/quotesdev/quotes/feed"
)

// stateMagic starts a snapshot; the last byte is the format version.
const stateMagic = "QAGG\x01"

// AppendState appends a compact binary snapshot of the whole state to b: LastSeq, watermark,
// closed-through, the registry (active incarnations with latest price, first minute and last
// close), the open candles of every incarnation (deleted ones included), the held quotes
// and the counters. The encoding is deterministic: equal states give equal bytes. The grace
// period is not part of it (it comes from New).
func (a *Aggregator) AppendState(b []byte) []byte {
	b = append(b, stateMagic...)
	var flags byte
	if a.hasWM {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, a.lastSeq)
	b = binary.AppendVarint(b, a.watermark)
	b = binary.AppendVarint(b, a.closedThrough)

	counters := a.counters()
	b = binary.AppendUvarint(b, uint64(len(counters)))
	for _, c := range counters {
		b = binary.AppendUvarint(b, *c)
	}

	incs := make([]*incarnation, 0, a.active.len()+8)
	a.active.each(func(inc *incarnation) { incs = append(incs, inc) })
	for _, inc := range a.dirty {
		if !inc.active && len(inc.open) > 0 {
			incs = append(incs, inc)
		}
	}
	slices.SortFunc(incs, cmpInc)
	b = binary.AppendUvarint(b, uint64(len(incs)))
	for _, inc := range incs {
		b = append(b, inc.isin[:]...)
		b = binary.AppendUvarint(b, inc.id)
		b = binary.AppendUvarint(b, uint64(len(inc.desc)))
		b = append(b, inc.desc...)
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
		b = append(b, flags)
		b = binary.AppendVarint(b, int64(inc.price))
		b = binary.AppendVarint(b, inc.priceTS)
		b = binary.AppendUvarint(b, inc.priceSeq)
		b = binary.AppendVarint(b, inc.firstMinute)
		b = binary.AppendVarint(b, int64(inc.lastClose))
		b = binary.AppendVarint(b, inc.lastCloseMinute)
		b = binary.AppendVarint(b, inc.lastCloseTS)
		b = binary.AppendUvarint(b, inc.lastCloseSeq)
		b = binary.AppendUvarint(b, uint64(len(inc.open)))
		for i := range inc.open {
			c := &inc.open[i]
			b = binary.AppendVarint(b, c.Minute)
			b = binary.AppendVarint(b, int64(c.Open))
			b = binary.AppendVarint(b, int64(c.High))
			b = binary.AppendVarint(b, int64(c.Low))
			b = binary.AppendVarint(b, int64(c.Close))
			b = binary.AppendVarint(b, c.OpenTS)
			b = binary.AppendVarint(b, c.CloseTS)
			b = binary.AppendUvarint(b, c.OpenSeq)
			b = binary.AppendUvarint(b, c.CloseSeq)
			b = binary.AppendUvarint(b, c.Quotes)
		}
	}

	isins := make([]feed.ISIN, 0, len(a.held.byISIN))
	for isin := range a.held.byISIN {
		isins = append(isins, isin)
	}
	slices.SortFunc(isins, func(x, y feed.ISIN) int { return compareISIN(&x, &y) })
	b = binary.AppendUvarint(b, uint64(len(isins)))
	for _, isin := range isins {
		qs := a.held.byISIN[isin]
		b = append(b, isin[:]...)
		b = binary.AppendUvarint(b, uint64(len(qs)))
		for _, q := range qs {
			b = binary.AppendVarint(b, q.ts)
			b = binary.AppendUvarint(b, q.seq)
			b = binary.AppendVarint(b, int64(q.price))
		}
	}
	return b
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

// errState is wrapped by every RestoreState error.
var errState = errors.New("aggregate: bad state snapshot")

// stateReader decodes a snapshot, remembering the first error.
type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errState, what)
	}
}

func (r *stateReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) bytes(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.fail(what)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) isin(what string) feed.ISIN {
	var isin feed.ISIN
	copy(isin[:], r.bytes(feed.ISINLen, what))
	return isin
}

// count reads a length that needs at least min bytes per element.
func (r *stateReader) count(min int, what string) int {
	n := r.uvarint(what)
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.fail(what + ": count too large")
		return 0
	}
	return int(n)
}

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
	r := &stateReader{b: b[len(stateMagic):]}
	flags := r.bytes(1, "flags")
	if r.err == nil {
		a.hasWM = flags[0]&1 != 0
	}
	a.lastSeq = r.uvarint("last seq")
	a.watermark = r.varint("watermark")
	a.closedThrough = r.varint("closed-through")

	counters := a.counters()
	nc := r.count(1, "counters")
	for i := 0; i < nc; i++ {
		v := r.uvarint("counter")
		if i < len(counters) {
			*counters[i] = v
		}
	}

	ni := r.count(feed.ISINLen+12, "incarnations")
	for i := 0; i < ni && r.err == nil; i++ {
		isin := r.isin("isin")
		id := r.uvarint("incarnation")
		inc := newIncarnation(isin, id, string(r.bytes(r.uvarint("description length"), "description")))
		f := r.bytes(1, "incarnation flags")
		if r.err != nil {
			break
		}
		inc.active, inc.hasPrice, inc.hasLastClose = f[0]&1 != 0, f[0]&2 != 0, f[0]&4 != 0
		inc.price = feed.Price(r.varint("price"))
		inc.priceTS = r.varint("price ts")
		inc.priceSeq = r.uvarint("price seq")
		inc.firstMinute = r.varint("first minute")
		inc.lastClose = feed.Price(r.varint("last close"))
		inc.lastCloseMinute = r.varint("last close minute")
		inc.lastCloseTS = r.varint("last close ts")
		inc.lastCloseSeq = r.uvarint("last close seq")
		no := r.count(10, "open candles")
		if no > len(inc.openBuf) {
			inc.open = make([]Candle, 0, no)
		}
		inc.open = inc.open[:no]
		for j := 0; j < no && r.err == nil; j++ {
			c := &inc.open[j]
			c.Key = Key{ISIN: inc.isin, Incarnation: inc.id, Minute: r.varint("minute")}
			c.Open = feed.Price(r.varint("open"))
			c.High = feed.Price(r.varint("high"))
			c.Low = feed.Price(r.varint("low"))
			c.Close = feed.Price(r.varint("close"))
			c.OpenTS = r.varint("open ts")
			c.CloseTS = r.varint("close ts")
			c.OpenSeq = r.uvarint("open seq")
			c.CloseSeq = r.uvarint("close seq")
			c.Quotes = r.uvarint("quotes")
			if r.err == nil && (c.Quotes == 0 || j > 0 && c.Minute <= inc.open[j-1].Minute || MinuteOf(c.Minute) != c.Minute) {
				r.fail("invalid open candle")
			}
		}
		if r.err != nil {
			break
		}
		if inc.active {
			if a.active.get(&inc.isin) != nil {
				r.fail("duplicate active ISIN")
				break
			}
			a.active.put(&inc.isin, inc)
		} else if no == 0 {
			r.fail("inactive incarnation without open candles")
			break
		}
		if no > 0 {
			inc.dirty = true
			a.dirty = append(a.dirty, inc)
		}
	}

	nh := r.count(feed.ISINLen+4, "held ISINs")
	for i := 0; i < nh && r.err == nil; i++ {
		isin := r.isin("held isin")
		nq := r.count(3, "held quotes")
		if r.err == nil && (nq == 0 || a.held.byISIN[isin] != nil || a.active.get(&isin) != nil) {
			r.fail("invalid held ISIN")
		}
		for j := 0; j < nq && r.err == nil; j++ {
			q := heldQuote{ts: r.varint("held ts"), seq: r.uvarint("held seq"), price: feed.Price(r.varint("held price"))}
			if r.err == nil {
				a.held.push(isin, q)
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return r.err
	}
	a.dirtySorted = 0
	a.sortDirty()
	return nil
}
