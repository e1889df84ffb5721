// Package aggregate turns the WAL's record sequence into the instrument registry and
// 1-minute candles (SPEC §4.2–4.4). It is a pure, deterministic state machine: the pipeline
// calls Aggregator.Apply for every WAL record in sequence order, and everything derived from
// it (aggregated quotes for the hot detector, ended incarnations, closed minutes, late
// corrections) is delivered synchronously to an Output, in an order that depends on the
// record sequence only. There is no I/O and no clock: time is the records' TS, and "now" is
// the watermark, the largest TS seen (record.KindTick records only advance it).
//
// Rules, in short:
//   - An ADD of an inactive ISIN starts an incarnation whose id is the ADD's sequence; an ADD
//     of an active ISIN only updates the description. A DELETE of an active ISIN ends the
//     incarnation (Output.Instrument); its open minutes still close normally later. A DELETE of
//     an inactive ISIN changes nothing (counted).
//   - A QUOTE of an active ISIN is folded into the candle (ISIN, incarnation, MinuteOf(ts)).
//     A QUOTE of an inactive ISIN is held back; an ADD of that ISIN releases every held quote
//     still within the grace period (ADD.TS − quote.TS ≤ grace), in sequence order, into the
//     new incarnation. A held quote whose TS + grace < watermark is dropped (counted).
//   - Minute m closes when watermark ≥ m + 60s + grace: Output.Closed for each incarnation
//     with quotes in m, by (minute, ISIN, incarnation). A quote for an already closed minute
//     becomes a correction: Output.Late with a candle of just that quote, which Candle.Merge
//     combines with the closed state.
//
// Closed candles are not kept here (the stores keep them); per incarnation the aggregator
// keeps O(1) state plus its open minutes (usually one or two). AppendState/RestoreState
// snapshot all of it for the pipeline's checkpoints; FillGaps serves flat candles for minutes
// without quotes (SPEC §4.3).
package aggregate

import (
	"bytes"
	"math"
	"slices"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/record"
)

// DefaultGrace is the default grace period (SPEC §4.4 --grace).
const DefaultGrace = 5 * time.Second

// Options configure an Aggregator.
type Options struct {
	// Grace is how long a quote that arrived for an inactive ISIN is held back for an ADD
	// of that ISIN, and how long a minute stays open after its end. Negative is treated
	// as zero.
	Grace time.Duration
}

// DefaultOptions returns the defaults: Grace = DefaultGrace.
func DefaultOptions() Options { return Options{Grace: DefaultGrace} }

// Output receives everything Apply (and CloseAll) derives, synchronously and in a
// deterministic order. Candle pointers are only valid during the call: copy the candle to
// keep it. Within one Apply the order is: first the minutes closed because the record
// advanced the watermark (Closed), then the effect of the record itself (Instrument for a DELETE; or for each
// aggregated quote — the quote itself or each released held quote in sequence order —
// Late if it is a correction, then Quote —, then Instrument for an ADD).
type Output interface {
	// Quote reports a quote aggregated into an active incarnation, including one released
	// from the grace hold and one that went to a late correction. It feeds the hot detector.
	Quote(q AcceptedQuote)
	// Instrument reports a change of the registry that other sinks must learn about: an ADD
	// that starts an incarnation (New), an ADD that changes an active incarnation's
	// description, or a DELETE that ends an incarnation. A repeated ADD that changes
	// nothing (every reconnect snapshot) and a DELETE of an inactive ISIN are not reported.
	Instrument(ev InstrumentEvent)
	// Closed reports the final state of a minute of an incarnation, once per Key, when
	// the minute closes (deleted incarnations included).
	Closed(c *Candle)
	// Late reports a correction: a quote aggregated into an already closed minute, as a
	// further partial state holding only that quote. Candle.Merge with the closed state
	// (and other corrections) gives the full minute.
	Late(c *Candle)
}

// ClosingHinter is an optional interface of an Output. Before the Closed calls of each
// minute that closes, Closing(n) tells it that up to n candles are about to close (one per
// incarnation with an open candle), so that it can make room for them at once rather than
// by growing as they come: at the spec load a minute closes 50,000 candles in one go.
type ClosingHinter interface {
	Closing(n int)
}

// InstrumentEvent is a change of the registry (Output.Instrument).
type InstrumentEvent struct {
	// Seq is the WAL sequence of the ADD or DELETE; TS its time (Unix nanoseconds).
	Seq uint64
	TS  int64
	// Kind is feed.KindAdd or feed.KindDelete.
	Kind feed.Kind
	// New is set for the ADD that starts the incarnation.
	New  bool
	ISIN feed.ISIN
	// Incarnation is the WAL sequence of the ADD that started the incarnation.
	Incarnation uint64
	// Description is the incarnation's description after an ADD; for a DELETE, the
	// DELETE message's own description field.
	Description string
}

// AcceptedQuote is a quote aggregated into an incarnation.
type AcceptedQuote struct {
	ISIN        feed.ISIN
	Incarnation uint64
	// TS and Seq are the quote record's own time and WAL sequence (also for released quotes).
	TS    int64
	Seq   uint64
	Price feed.Price
	// Released is set for a quote that arrived before its ADD and was released from the hold.
	Released bool
	// Late is set when the quote's minute was already closed (it went to a correction).
	Late bool
	// Ref is the feed.Message.Ref the incarnation is listed under (0: none), a hint for
	// the hot detector (hot.Detector.ObserveRef).
	Ref uint32
}

// Instrument is the registry view of an active incarnation.
type Instrument struct {
	ISIN feed.ISIN
	// Incarnation is the WAL sequence of the ADD that started it.
	Incarnation uint64
	// Description is the latest ADD's description.
	Description string
	// HasPrice reports whether the incarnation has aggregated a quote; the fields Price,
	// PriceTS, PriceSeq and FirstMinute are valid only then.
	HasPrice bool
	// Price is the latest quote by (ts, seq), PriceTS and PriceSeq its time and sequence.
	Price    feed.Price
	PriceTS  int64
	PriceSeq uint64
	// FirstMinute is the earliest minute holding a quote of this incarnation: no candle
	// before it is served (SPEC §4.3).
	FirstMinute int64
	// HasLastClose reports whether a minute with quotes has closed; LastClose is the close
	// price of the latest such minute, LastCloseMinute that minute (late corrections included).
	HasLastClose    bool
	LastClose       feed.Price
	LastCloseMinute int64
}

// The reasons a held quote is dropped, as metric label values (Stats.DroppedExpired and
// Stats.DroppedAtEnd).
const (
	DropInactiveExpired = "inactive_expired" // its ISIN got no ADD within grace
	DropInactiveAtEnd   = "inactive_at_end"  // still held when CloseAll ended the input
)

// Stats are the aggregator's counters (all cumulative except the gauges Active and Holding).
// Invariants: HeldQuotes = Released + DroppedExpired + DroppedAtEnd + Holding, and
// QuoteRecords + Released = Aggregated + HeldQuotes.
type Stats struct {
	// Records counts every record applied; Ticks the record.KindTick ones; Ignored those of
	// an unknown kind (they change nothing, not even the watermark). Stale counts records
	// not applied because their Seq was not above LastSeq (not part of Records).
	Records, Ticks, Ignored, Stale uint64
	// QuoteRecords counts QUOTE records; Aggregated the quotes folded into an incarnation
	// (direct or released); Late those of them that went to a correction.
	QuoteRecords, Aggregated, Late uint64
	// HeldQuotes counts QUOTEs that arrived for an inactive ISIN; Released those later
	// given to a new incarnation; DroppedExpired those dropped because their grace ran out
	// (DropInactiveExpired); DroppedAtEnd those dropped by CloseAll (DropInactiveAtEnd).
	HeldQuotes, Released, DroppedExpired, DroppedAtEnd uint64
	// AddsNew counts ADDs that started an incarnation, AddsDuplicate those of an active
	// ISIN (description update only).
	AddsNew, AddsDuplicate uint64
	// Deletes counts DELETEs that ended an incarnation, DeletesUnknown those of an
	// inactive ISIN.
	Deletes, DeletesUnknown uint64
	// CandlesClosed counts Output.Closed calls.
	CandlesClosed uint64
	// Active is the number of active instruments; Holding the number of quotes held now.
	Active, Holding uint64
}

// incarnation is the state of one instrument incarnation: active, or deleted with minutes
// still open.
type incarnation struct {
	// What every quote reads or writes comes first, together (isin to openBuf[0]: three
	// or four cache lines, which PrefetchGroup touches), the rest after it.
	isin feed.ISIN
	// ref is the feed.Message.Ref under which Aggregator.byRef lists the incarnation (0:
	// none); every quote passes it on (AcceptedQuote.Ref).
	ref    uint32
	active bool
	// dirty: listed in Aggregator.dirty (has or recently had open candles).
	dirty       bool
	hasPrice    bool
	id          uint64
	price       feed.Price
	priceTS     int64
	priceSeq    uint64
	firstMinute int64
	// open holds the still-open minutes, sorted by Minute; it starts on openBuf so that
	// the usual one or two open minutes live inside the incarnation (fewer cache lines per
	// quote).
	open    []Candle
	openBuf [2]Candle

	desc            string
	hasLastClose    bool
	lastClose       feed.Price
	lastCloseMinute int64
	lastCloseTS     int64
	lastCloseSeq    uint64
}

// activeInc returns the active incarnation of isin, or nil.
func (a *Aggregator) activeInc(isin *feed.ISIN) *incarnation {
	inc, _ := a.active.Get(isin)
	return inc
}

// lookup returns the active incarnation of m's ISIN, or nil: straight from byRef when m's
// Ref lists it — checked against the ISIN, so a wrong hint costs only the hashing — else
// from the ISIN table, and then lists it under the Ref.
func (a *Aggregator) lookup(m *feed.Message) *incarnation {
	if r := m.Ref; r < uint32(len(a.byRef)) {
		if inc := a.byRef[r]; inc != nil && inc.isin == m.ISIN {
			return inc
		}
	}
	inc := a.activeInc(&m.ISIN)
	if inc != nil {
		a.listRef(inc, m.Ref)
	}
	return inc
}

// listRef lists the active incarnation inc in byRef under r (when r is one: 0 < r <
// feed.MaxDenseRef, which bounds byRef to 8 MiB of pointers).
func (a *Aggregator) listRef(inc *incarnation, r uint32) {
	if r == 0 || r >= feed.MaxDenseRef {
		return
	}
	if n := int(r) + 1; n > len(a.byRef) {
		a.byRef = append(a.byRef, make([]*incarnation, n-len(a.byRef))...)
	}
	a.unlistRef(inc)
	a.byRef[r], inc.ref = inc, r
}

// unlistRef removes inc from byRef: it is no longer active (or gets another ref).
func (a *Aggregator) unlistRef(inc *incarnation) {
	if inc.ref != 0 && a.byRef[inc.ref] == inc {
		a.byRef[inc.ref] = nil
	}
	inc.ref = 0
}

// newIncarnation returns an incarnation with its open candles on its inline buffer.
func newIncarnation(isin feed.ISIN, id uint64, desc string) *incarnation {
	inc := &incarnation{isin: isin, id: id, desc: desc}
	inc.open = inc.openBuf[:0]
	return inc
}

// Aggregator is the registry and candle state machine. It is not safe for concurrent use:
// the caller serialises Apply, CloseAll, the read methods and the snapshot methods.
type Aggregator struct {
	grace int64

	lastSeq       uint64
	hasWM         bool
	watermark     int64
	closedThrough int64

	active feed.ISINMap[*incarnation]
	// byRef lists active incarnations by feed.Message.Ref (index = Ref; nil: none listed),
	// so that a quote finds its incarnation with one array read instead of hashing its
	// ISIN. It is a cache of active: filled as records with Refs find their incarnations,
	// emptied of an incarnation when it ends, not part of a snapshot.
	byRef []*incarnation
	// dirty lists the incarnations with open candles (and some that just lost them);
	// dirty[:dirtySorted] is sorted by (ISIN, incarnation).
	dirty       []*incarnation
	dirtySorted int
	scratch     []*incarnation

	held heldQuotes

	late  Candle
	stats Stats

	prefetch     []*incarnation // PrefetchGroup's scratch
	prefetchKeys []uint64       // PrefetchGroup's scratch
}

// New returns an empty Aggregator.
func New(opts Options) *Aggregator {
	a := &Aggregator{}
	a.init(opts.Grace)
	return a
}

func (a *Aggregator) init(grace time.Duration) {
	if grace < 0 {
		grace = 0
	}
	*a = Aggregator{
		grace:         int64(grace),
		watermark:     math.MinInt64,
		closedThrough: math.MinInt64,
		held:          heldQuotes{byISIN: make(map[feed.ISIN][]heldQuote)},
	}
}

// LastSeq returns the sequence of the last record applied (0 before the first): a snapshot
// taken now reflects the WAL up to and including it.
func (a *Aggregator) LastSeq() uint64 { return a.lastSeq }

// Grace returns the grace period in use.
func (a *Aggregator) Grace() time.Duration { return time.Duration(a.grace) }

// Watermark returns the largest TS seen (ticks included): the pipeline's "now". It is
// math.MinInt64 before the first record.
func (a *Aggregator) Watermark() int64 { return a.watermark }

// CurrentMinute returns MinuteOf(Watermark()), the still-open minute queries end with, and
// false before the first record.
func (a *Aggregator) CurrentMinute() (int64, bool) {
	if !a.hasWM {
		return 0, false
	}
	return MinuteOf(a.watermark), true
}

// ClosedThrough returns a minute boundary C such that every minute m with m+60s ≤ C is
// closed: a quote for such a minute is a late correction. It is math.MinInt64 before the
// first record.
func (a *Aggregator) ClosedThrough() int64 { return a.closedThrough }

// Apply applies one WAL record. Records come in sequence order; each record's Seq is its
// identity (incarnation ids, tie breaks, instrument events). A record whose Seq is not above the last
// applied one (LastSeq) is ignored and counted as Stats.Stale, so that re-applying the WAL
// from slightly before a restored checkpoint cannot count anything twice.
func (a *Aggregator) Apply(r record.Record, out Output) {
	if r.Seq <= a.lastSeq {
		a.stats.Stale++
		return
	}
	a.lastSeq = r.Seq
	switch r.Kind {
	case feed.KindQuote, feed.KindAdd, feed.KindDelete, record.KindTick:
	default:
		a.stats.Records++
		a.stats.Ignored++
		return
	}
	a.stats.Records++
	a.advance(r.TS, out)
	switch r.Kind {
	case feed.KindQuote:
		a.stats.QuoteRecords++
		if inc := a.lookup(&r.Message); inc != nil {
			a.aggregate(inc, r.TS, r.Seq, r.Price, false, out)
		} else {
			a.hold(r.ISIN, heldQuote{ts: r.TS, seq: r.Seq, price: r.Price})
		}
	case feed.KindAdd:
		a.add(&r, out)
	case feed.KindDelete:
		inc := a.lookup(&r.Message)
		if inc == nil {
			a.stats.DeletesUnknown++
			return
		}
		a.active.Delete(&r.ISIN)
		a.unlistRef(inc)
		inc.active = false
		a.stats.Deletes++
		out.Instrument(InstrumentEvent{Seq: r.Seq, TS: r.TS, Kind: feed.KindDelete, ISIN: inc.isin,
			Incarnation: inc.id, Description: r.Description})
	case record.KindTick:
		a.stats.Ticks++
	}
}

// advance moves the watermark to ts (if later), drops expired held quotes and closes the
// minutes that are due.
func (a *Aggregator) advance(ts int64, out Output) {
	if a.hasWM && ts <= a.watermark {
		return
	}
	a.hasWM = true
	a.watermark = ts
	a.expire()
	if ts < math.MinInt64+a.grace {
		return
	}
	if ct := MinuteOf(ts - a.grace); ct > a.closedThrough {
		a.closedThrough = ct
		a.closeThrough(ct, out)
	}
}

// expired reports whether a held quote at ts is past its grace at the current watermark.
func (a *Aggregator) expired(ts int64) bool {
	return a.hasWM && a.watermark >= math.MinInt64+a.grace && ts < a.watermark-a.grace
}

// isClosed reports whether minute m is closed.
func (a *Aggregator) isClosed(m int64) bool {
	return a.closedThrough != math.MinInt64 && m <= a.closedThrough-MinuteNanos
}

func (a *Aggregator) add(r *record.Record, out Output) {
	if inc := a.lookup(&r.Message); inc != nil {
		a.stats.AddsDuplicate++
		if inc.desc != r.Description {
			inc.desc = r.Description
			out.Instrument(InstrumentEvent{Seq: r.Seq, TS: r.TS, Kind: feed.KindAdd, ISIN: inc.isin,
				Incarnation: inc.id, Description: inc.desc})
		}
		return
	}
	a.stats.AddsNew++
	inc := newIncarnation(r.ISIN, r.Seq, r.Description)
	inc.active = true
	a.active.Put(&inc.isin, inc)
	a.listRef(inc, r.Ref)
	// Expired quotes were dropped by advance: every quote still held for this ISIN has
	// ts ≥ watermark − grace ≥ ADD.TS − grace, so all of them are within grace.
	hq := a.held.take(r.ISIN)
	for _, q := range hq {
		a.stats.Released++
		a.aggregate(inc, q.ts, q.seq, q.price, true, out)
	}
	out.Instrument(InstrumentEvent{Seq: r.Seq, TS: r.TS, Kind: feed.KindAdd, New: true, ISIN: inc.isin,
		Incarnation: inc.id, Description: inc.desc})
}

// aggregate folds one quote into inc.
func (a *Aggregator) aggregate(inc *incarnation, ts int64, seq uint64, p feed.Price, released bool, out Output) {
	a.stats.Aggregated++
	m := MinuteOf(ts)
	if !inc.hasPrice {
		inc.hasPrice = true
		inc.price, inc.priceTS, inc.priceSeq = p, ts, seq
		inc.firstMinute = m
	} else {
		if !before(ts, seq, inc.priceTS, inc.priceSeq) {
			inc.price, inc.priceTS, inc.priceSeq = p, ts, seq
		}
		if m < inc.firstMinute {
			inc.firstMinute = m
		}
	}
	late := a.isClosed(m)
	if late {
		a.stats.Late++
		if !inc.hasLastClose || m > inc.lastCloseMinute ||
			m == inc.lastCloseMinute && !before(ts, seq, inc.lastCloseTS, inc.lastCloseSeq) {
			inc.hasLastClose = true
			inc.lastClose, inc.lastCloseMinute, inc.lastCloseTS, inc.lastCloseSeq = p, m, ts, seq
		}
		a.late = Candle{Key: Key{ISIN: inc.isin, Incarnation: inc.id, Minute: m}}
		a.late.Add(ts, seq, p)
		out.Late(&a.late)
	} else {
		inc.candle(m).Add(ts, seq, p)
		if !inc.dirty {
			inc.dirty = true
			a.dirty = append(a.dirty, inc)
		}
	}
	out.Quote(AcceptedQuote{ISIN: inc.isin, Incarnation: inc.id, TS: ts, Seq: seq, Price: p, Released: released, Late: late, Ref: inc.ref})
}

// PrefetchGroup reads, without changing anything, the memory that applying the quotes
// among msgs will touch — their slots in the ISIN table, their incarnations and newest open
// candles — in passes over the group, so that the cache misses of a pass are independent
// and overlap instead of queueing one after the other (the state of 50,000 instruments is
// far larger than the caches). Call it for a small group (e.g. 32 messages) right before
// applying them. The result means nothing; callers accumulate it so that the reads are not
// optimised away.
func (a *Aggregator) PrefetchGroup(msgs []feed.Message) int64 {
	keys := a.prefetchKeys[:0]
	incs := a.prefetch[:0]
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != feed.KindQuote {
			continue
		}
		if m.Ref < uint32(len(a.byRef)) {
			if inc := a.byRef[m.Ref]; inc != nil {
				incs = append(incs, inc)
				continue
			}
		}
		if k := feed.PackISIN(&m.ISIN); k != 0 {
			keys = append(keys, k)
		}
	}
	// The table slots of the quotes without a listed Ref first, all at once
	// (TouchPacked), then their look-ups.
	sink := int64(a.active.TouchPacked(keys))
	for _, k := range keys {
		if inc, _ := a.active.GetPacked(k); inc != nil {
			incs = append(incs, inc)
		}
	}
	a.prefetchKeys = keys[:0]
	for _, inc := range incs {
		sink += int64(inc.isin[0]) + int64(len(inc.open)) // the first and the second line
	}
	for _, inc := range incs {
		if n := len(inc.open); n > 0 {
			c := &inc.open[n-1] // 104 bytes: Minute and Quotes may be on two cache lines
			sink += c.Minute + int64(c.Quotes)
		}
	}
	clear(incs)
	a.prefetch = incs[:0]
	return sink
}

// candle returns the open candle of minute m, creating it.
func (inc *incarnation) candle(m int64) *Candle {
	i := len(inc.open)
	for i > 0 && inc.open[i-1].Minute >= m {
		if inc.open[i-1].Minute == m {
			return &inc.open[i-1]
		}
		i--
	}
	inc.open = slices.Insert(inc.open, i, Candle{Key: Key{ISIN: inc.isin, Incarnation: inc.id, Minute: m}})
	return &inc.open[i]
}

// compareISIN orders ISINs bytewise.
func compareISIN(x, y *feed.ISIN) int { return bytes.Compare(x[:], y[:]) }

// cmpInc orders incarnations by (ISIN, incarnation).
func cmpInc(x, y *incarnation) int {
	if c := compareISIN(&x.isin, &y.isin); c != 0 {
		return c
	}
	switch {
	case x.id < y.id:
		return -1
	case x.id > y.id:
		return 1
	}
	return 0
}

// sortDirty sorts a.dirty by (ISIN, incarnation): the unsorted tail is sorted and merged.
func (a *Aggregator) sortDirty() {
	n, k := len(a.dirty), a.dirtySorted
	if k >= n {
		return
	}
	tail := a.dirty[k:]
	slices.SortFunc(tail, cmpInc)
	if k > 0 && cmpInc(a.dirty[k-1], tail[0]) > 0 {
		a.scratch = append(a.scratch[:0], a.dirty[:k]...)
		i, j, o := 0, k, 0
		for i < k && j < n {
			if cmpInc(a.scratch[i], a.dirty[j]) <= 0 {
				a.dirty[o] = a.scratch[i]
				i++
			} else {
				a.dirty[o] = a.dirty[j]
				j++
			}
			o++
		}
		for i < k {
			a.dirty[o] = a.scratch[i]
			i++
			o++
		}
		clear(a.scratch)
	}
	a.dirtySorted = n
}

// closeThrough closes every open minute m with m+60s ≤ limit, by (minute, ISIN,
// incarnation).
func (a *Aggregator) closeThrough(limit int64, out Output) {
	if len(a.dirty) == 0 {
		return
	}
	a.sortDirty()
	last := limit - MinuteNanos // the last minute to close
	if limit < math.MinInt64+MinuteNanos {
		return
	}
	hint, _ := out.(ClosingHinter)
	for {
		m, found := int64(math.MaxInt64), false
		for _, inc := range a.dirty {
			if len(inc.open) > 0 && inc.open[0].Minute <= last && inc.open[0].Minute < m {
				m, found = inc.open[0].Minute, true
			}
		}
		if !found {
			break
		}
		if hint != nil {
			hint.Closing(len(a.dirty))
		}
		for _, inc := range a.dirty {
			if len(inc.open) == 0 || inc.open[0].Minute != m {
				continue
			}
			c := &inc.open[0]
			if !inc.hasLastClose || m > inc.lastCloseMinute ||
				m == inc.lastCloseMinute && !before(c.CloseTS, c.CloseSeq, inc.lastCloseTS, inc.lastCloseSeq) {
				inc.hasLastClose = true
				inc.lastClose, inc.lastCloseMinute, inc.lastCloseTS, inc.lastCloseSeq = c.Close, m, c.CloseTS, c.CloseSeq
			}
			a.stats.CandlesClosed++
			out.Closed(c)
			copy(inc.open, inc.open[1:])
			inc.open[len(inc.open)-1] = Candle{}
			inc.open = inc.open[:len(inc.open)-1]
		}
	}
	// Drop the incarnations without open candles from the list (order is kept).
	o := 0
	for _, inc := range a.dirty {
		if len(inc.open) > 0 {
			a.dirty[o] = inc
			o++
		} else {
			inc.dirty = false
		}
	}
	clear(a.dirty[o:])
	a.dirty = a.dirty[:o]
	a.dirtySorted = o
}

// CloseAll ends a replay's input: it closes every open minute (Output.Closed) and drops
// every held quote (Stats.DroppedAtEnd). Afterwards ClosedThrough covers the current
// minute, so a quote applied later for any minute up to it becomes a correction.
func (a *Aggregator) CloseAll(out Output) {
	a.stats.DroppedAtEnd += uint64(a.held.dropAll())
	if !a.hasWM {
		return
	}
	if ct := MinuteOf(a.watermark) + MinuteNanos; ct > a.closedThrough {
		a.closedThrough = ct
	}
	a.closeThrough(a.closedThrough, out)
}

// Stats returns the counters.
func (a *Aggregator) Stats() Stats {
	s := a.stats
	s.Active = uint64(a.active.Len())
	s.Holding = uint64(a.held.n)
	return s
}

func (inc *incarnation) instrument() Instrument {
	return Instrument{
		ISIN:            inc.isin,
		Incarnation:     inc.id,
		Description:     inc.desc,
		HasPrice:        inc.hasPrice,
		Price:           inc.price,
		PriceTS:         inc.priceTS,
		PriceSeq:        inc.priceSeq,
		FirstMinute:     inc.firstMinute,
		HasLastClose:    inc.hasLastClose,
		LastClose:       inc.lastClose,
		LastCloseMinute: inc.lastCloseMinute,
	}
}

// Instruments returns the active instruments sorted by ISIN.
func (a *Aggregator) Instruments() []Instrument {
	out := make([]Instrument, 0, a.active.Len())
	for inc := range a.active.Values() {
		out = append(out, inc.instrument())
	}
	slices.SortFunc(out, func(x, y Instrument) int { return compareISIN(&x.ISIN, &y.ISIN) })
	return out
}

// Instrument returns the active instrument isin, if any.
func (a *Aggregator) Instrument(isin feed.ISIN) (Instrument, bool) {
	inc := a.activeInc(&isin)
	if inc == nil {
		return Instrument{}, false
	}
	return inc.instrument(), true
}

// OpenCandles returns a copy of the still-open minutes of the active incarnation of isin,
// oldest first (nil if it is not active or has none).
func (a *Aggregator) OpenCandles(isin feed.ISIN) []Candle {
	return a.AppendOpenCandles(nil, isin)
}

// AppendOpenCandles appends the still-open minutes of the active incarnation of isin to
// dst, oldest first, and returns the extended slice.
func (a *Aggregator) AppendOpenCandles(dst []Candle, isin feed.ISIN) []Candle {
	inc := a.activeInc(&isin)
	if inc == nil {
		return dst
	}
	return append(dst, inc.open...)
}
