package export

import (
	"context"
	"errors"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
)

// ErrHotNotInClickHouse means hot events were asked of ClickHouse: they live in the
// embedded store only.
var ErrHotNotInClickHouse = errors.New("hot events are not stored in ClickHouse: query them with --data (the embedded store)")

// ClickHouseBackend serves instruments and candles from ClickHouse (api.Backend), with the
// same output as the embedded store. Hot events come from hot when set (serve over a data
// directory too), otherwise they are an error.
//
// "Now" is the minute after the latest minute ClickHouse holds a candle for (of any
// instrument): the minute still open when ClickHouse is caught up. ClickHouse holds closed
// minutes only, so that open minute is served flat at the last close; after a replay, whose
// end closes every minute, this equals what the embedded store serves.
type ClickHouseBackend struct {
	ch  *ClickHouseSink
	hot api.Backend
}

// NewClickHouseBackend serves ch; hot, if not nil, serves the hot events.
func NewClickHouseBackend(ch *ClickHouseSink, hot api.Backend) ClickHouseBackend {
	return ClickHouseBackend{ch: ch, hot: hot}
}

// Instruments implements api.Backend.
func (b ClickHouseBackend) Instruments(ctx context.Context) ([]api.Instrument, error) {
	ins, err := b.ch.Instruments(ctx)
	if err != nil {
		return nil, err
	}
	prices, err := b.ch.LatestPrices(ctx)
	if err != nil {
		return nil, err
	}
	reg := make([]aggregate.Instrument, len(ins))
	for i, in := range ins {
		reg[i] = aggregate.Instrument{ISIN: in.ISIN, Incarnation: in.Incarnation, Description: in.Description}
		if lp, ok := prices[aggregate.Key{ISIN: in.ISIN, Incarnation: in.Incarnation}]; ok {
			reg[i].HasPrice, reg[i].Price, reg[i].PriceTS, reg[i].PriceSeq = true, lp.Price, lp.TS, lp.Seq
		}
	}
	return api.InstrumentsView(reg), nil
}

// active returns the active incarnation of isin.
func (b ClickHouseBackend) active(ctx context.Context, isin feed.ISIN) (Instrument, error) {
	hist, err := b.ch.InstrumentHistory(ctx, isin)
	if err != nil {
		return Instrument{}, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if !hist[i].Deleted {
			return hist[i], nil
		}
	}
	return Instrument{}, pipeline.ErrUnknownInstrument
}

// Candles implements api.Backend.
func (b ClickHouseBackend) Candles(ctx context.Context, isin feed.ISIN, r pipeline.CandleRange) ([]api.Candle, error) {
	in, err := b.active(ctx, isin)
	if err != nil {
		return nil, err
	}
	latest, ok, err := b.ch.LatestMinute(ctx)
	if err != nil {
		return nil, err
	}
	first, _, has, err := b.ch.MinuteBounds(ctx, isin, in.Incarnation)
	if err != nil {
		return nil, err
	}
	if !ok || !has {
		return []api.Candle{}, nil
	}
	current := latest + aggregate.MinuteNanos
	from, to := r.From, r.To
	if r.Last > 0 {
		from, to = aggregate.LastRange(current, r.Last)
	}
	gr := aggregate.GapRange{ISIN: isin, Incarnation: in.Incarnation, From: from, To: to, First: first, Current: current}
	lo := max(from, first)
	all, err := b.ch.Candles(ctx, isin, lo, to)
	if err != nil {
		return nil, err
	}
	lists := make([]aggregate.Candle, 0, len(all)+1)
	for _, c := range all {
		if c.Incarnation == in.Incarnation {
			lists = append(lists, c)
		}
	}
	if prev, found, err := b.ch.LastMinuteBefore(ctx, isin, in.Incarnation, lo); err != nil {
		return nil, err
	} else if found {
		cs, err := b.ch.Candles(ctx, isin, prev, prev+aggregate.MinuteNanos)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if c.Incarnation == in.Incarnation {
				lists = append(lists, c)
			}
		}
	}
	out := aggregate.FillGaps(gr, lists)
	return api.CandlesView(out), nil
}

// HotEvents implements api.Backend.
func (b ClickHouseBackend) HotEvents(ctx context.Context, afterID uint64, since int64, limit int) ([]hot.Event, error) {
	if b.hot != nil {
		return b.hot.HotEvents(ctx, afterID, since, limit)
	}
	return nil, ErrHotNotInClickHouse
}

// HotEventsChanged implements api.Backend.
func (b ClickHouseBackend) HotEventsChanged() <-chan struct{} {
	if b.hot != nil {
		return b.hot.HotEventsChanged()
	}
	return make(chan struct{})
}
