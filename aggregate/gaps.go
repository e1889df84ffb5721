package aggregate

import (
	"slices"

	"github.com/quotesdev/quotes/feed"
)

// GapRange describes one candle query of one incarnation for FillGaps (SPEC §4.3).
type GapRange struct {
	// ISIN and Incarnation are the Key of the flat candles FillGaps makes.
	ISIN        feed.ISIN
	Incarnation uint64
	// From and To select the minutes m with From ≤ m < To (Unix nanoseconds; they need
	// not be on a minute boundary: the minutes that start inside the range are selected).
	From, To int64
	// First is the minute of the incarnation's first quote (Instrument.FirstMinute):
	// earlier minutes are not served.
	First int64
	// Current is the current (still open) minute, MinuteOf(watermark): later minutes are
	// not served.
	Current int64
	// PrevClose is the close of the latest minute with quotes before the range, valid when
	// HasPrev; a candle before the range given to FillGaps overrides it. It is needed only
	// when the first selected minute has no quotes.
	PrevClose feed.Price
	HasPrev   bool
}

// Range returns the GapRange of instrument i for the minutes From ≤ m < To, with current the
// current minute. PrevClose is taken from LastClose when that minute is before the range;
// otherwise (a range starting at or before the last closed minute) the caller supplies the
// candles before the range — e.g. the store's latest candle before From — among FillGaps'
// candles, or sets PrevClose itself. Without a quote yet (!HasPrice) the range is empty.
func (i Instrument) Range(from, to, current int64) GapRange {
	if !i.HasPrice {
		to = from
	}
	r := GapRange{ISIN: i.ISIN, Incarnation: i.Incarnation, From: from, To: to, First: i.FirstMinute, Current: current}
	if i.HasLastClose && i.LastCloseMinute < from {
		r.PrevClose, r.HasPrev = i.LastClose, true
	}
	return r
}

// LastRange returns [from, to) of the last n minutes ending with the current minute.
func LastRange(current int64, n int) (from, to int64) {
	return current - int64(n-1)*MinuteNanos, current + MinuteNanos
}

// FillGaps returns one candle per selected minute, oldest first: the minutes m with
// r.From ≤ m < r.To, r.First ≤ m ≤ r.Current. A minute with quotes is the Merge of the
// given candles of that minute (closed states from a store, late corrections, open candles
// from Aggregator.OpenCandles — in any order); a minute without quotes is flat at the
// previous close (Open = High = Low = Close, Quotes = 0, OpenTS = CloseTS = 0). Candles
// before the range only provide the previous close; candles after it are ignored. A minute
// without quotes before which no close is known (no earlier candle and !r.HasPrev) is
// skipped: it cannot be filled.
func FillGaps(r GapRange, candles ...[]Candle) []Candle {
	var f GapFiller
	return f.Fill(r, candles...)
}

// GapFiller is FillGaps with its working space kept from one call to the next, for a caller
// that answers many queries (each of a server's concurrent requests takes one from a pool):
// a last=30m answer allocates nothing once the space has grown. What Fill returns is the
// filler's: valid until its next call. The zero value is ready to use.
type GapFiller struct {
	all, out []Candle
}

// Fill is FillGaps; the result is valid until the next call.
func (f *GapFiller) Fill(r GapRange, candles ...[]Candle) []Candle {
	start := max(ceilMinute(r.From), ceilMinute(r.First))
	end := r.Current // last minute served (inclusive)
	if lastInRange := ceilMinute(r.To) - MinuteNanos; lastInRange < end {
		end = lastInRange
	}
	if start > end {
		return nil
	}

	all := f.all[:0]
	for _, cs := range candles {
		for i := range cs {
			if cs[i].Minute <= end && cs[i].Quotes > 0 {
				all = append(all, cs[i])
			}
		}
	}
	slices.SortStableFunc(all, func(x, y Candle) int {
		switch {
		case x.Minute < y.Minute:
			return -1
		case x.Minute > y.Minute:
			return 1
		}
		return 0
	})

	prev, hasPrev := r.PrevClose, r.HasPrev
	i := 0
	// Candles before the range: the latest close among them (by (ts, seq) within the
	// latest minute) is the previous close.
	if i < len(all) && all[i].Minute < start {
		var last Candle
		for i < len(all) && all[i].Minute < start {
			if last.Quotes == 0 || all[i].Minute > last.Minute {
				last = all[i]
			} else {
				last.Merge(&all[i])
			}
			i++
		}
		prev, hasPrev = last.Close, true
	}

	f.all = all
	out := f.out[:0]
	if n := min((end-start)/MinuteNanos+1, 1<<12); int64(cap(out)) < n {
		out = make([]Candle, 0, n)
	}
	for m := start; m <= end; m += MinuteNanos {
		if i < len(all) && all[i].Minute == m {
			c := all[i]
			c.Key = Key{ISIN: r.ISIN, Incarnation: r.Incarnation, Minute: m}
			for i++; i < len(all) && all[i].Minute == m; i++ {
				c.Merge(&all[i])
			}
			out = append(out, c)
			prev, hasPrev = c.Close, true
			continue
		}
		if !hasPrev {
			continue
		}
		out = append(out, Candle{
			Key:  Key{ISIN: r.ISIN, Incarnation: r.Incarnation, Minute: m},
			Open: prev, High: prev, Low: prev, Close: prev,
		})
	}
	f.out = out
	return out
}

// ceilMinute returns the first minute boundary ≥ t.
func ceilMinute(t int64) int64 {
	m := MinuteOf(t)
	if m < t {
		m += MinuteNanos
	}
	return m
}
