package export

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/parquet-go/parquet-go"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/wal"
)

// ReadWindowSeqs is how many WAL sequences ReadArchiveMessages sorts in memory at a time.
const ReadWindowSeqs = 4 << 20

// TimeRange selects event time: From ≤ ts < To. The zero value selects everything.
type TimeRange struct {
	From, To int64
}

func (r TimeRange) bounds() (int64, int64) {
	if r == (TimeRange{}) {
		return math.MinInt64, math.MaxInt64
	}
	return r.From, r.To
}

// hourOverlaps reports whether the hour starting at h holds times in the range.
func (r TimeRange) hourOverlaps(h int64) bool {
	from, to := r.bounds()
	return h < to && h+HourNanos > from
}

func (r TimeRange) contains(ts int64) bool {
	from, to := r.bounds()
	return ts >= from && ts < to
}

// listParts returns the parsable parts of a dataset in hours overlapping tr, by first seq.
func listParts(ctx context.Context, store ArchiveStore, dataset string, tr TimeRange) ([]partInfo, error) {
	keys, err := store.List(ctx, dataset+"/")
	if err != nil {
		return nil, err
	}
	var parts []partInfo
	for _, k := range keys {
		p, ok := parsePartKey(k)
		if ok && p.dataset == dataset && tr.hourOverlaps(p.hour) {
			parts = append(parts, p)
		}
	}
	slices.SortFunc(parts, func(a, b partInfo) int { return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.last, b.last)) })
	return parts, nil
}

// ReadArchiveMessages calls fn with every raw message of the archive (quotes and instrument
// events; the WAL's tick records are not archived) whose sequence is above after and whose
// ts is in tr, in the original WAL order, each as the wal.Record it was (same Seq). A
// replay resumes by passing the last Seq it consumed as after.
//
// Files are sorted by isin inside, so the order is restored by sorting: parts whose
// sequence ranges overlap are read together, ReadWindowSeqs sequences at a time (memory is
// bounded by that window, not by the archive).
func ReadArchiveMessages(ctx context.Context, store ArchiveStore, tr TimeRange, after uint64, fn func(wal.Record) error) error {
	return readArchiveRecords(ctx, store, []string{DatasetQuotes, DatasetEvents}, tr, after, fn)
}

// ReadArchiveEvents is ReadArchiveMessages restricted to the instrument events (ADD and
// DELETE), in their original WAL order: what rebuilding the instrument registry needs,
// without reading the quotes.
func ReadArchiveEvents(ctx context.Context, store ArchiveStore, tr TimeRange, fn func(wal.Record) error) error {
	return readArchiveRecords(ctx, store, []string{DatasetEvents}, tr, 0, fn)
}

func readArchiveRecords(ctx context.Context, store ArchiveStore, datasets []string, tr TimeRange, after uint64, fn func(wal.Record) error) error {
	var parts []partInfo
	for _, ds := range datasets {
		p, err := listParts(ctx, store, ds, tr)
		if err != nil {
			return err
		}
		parts = append(parts, p...)
	}
	parts = slices.DeleteFunc(parts, func(p partInfo) bool { return p.last <= after })
	slices.SortFunc(parts, func(a, b partInfo) int { return cmp.Compare(a.first, b.first) })
	for len(parts) > 0 {
		// A cluster: parts whose ranges overlap, transitively.
		n, hi := 1, parts[0].last
		for n < len(parts) && parts[n].first <= hi {
			hi = max(hi, parts[n].last)
			n++
		}
		if err := readCluster(ctx, store, parts[:n], max(parts[0].first, after+1), hi, tr, fn); err != nil {
			return err
		}
		parts = parts[n:]
	}
	return nil
}

func readCluster(ctx context.Context, store ArchiveStore, parts []partInfo, lo, hi uint64, tr TimeRange, fn func(wal.Record) error) error {
	objs := make([]ArchiveObject, len(parts))
	defer func() {
		for _, o := range objs {
			if o != nil {
				o.Close()
			}
		}
	}()
	for i, p := range parts {
		o, err := store.Open(ctx, p.key)
		if err != nil {
			return err
		}
		objs[i] = o
	}
	var recs []wal.Record
	for wlo := lo; wlo <= hi; {
		whi := hi
		if hi-wlo >= ReadWindowSeqs {
			whi = wlo + ReadWindowSeqs - 1
		}
		recs = recs[:0]
		for i, p := range parts {
			if p.last < wlo || p.first > whi {
				continue
			}
			var err error
			switch p.dataset {
			case DatasetQuotes:
				err = readRows(objs[i], func(r *QuoteRow) error {
					if s := uint64(r.Seq); s >= wlo && s <= whi && tr.contains(r.TS) {
						isin, ok := feed.ParseISIN(r.ISIN)
						if !ok {
							return fmt.Errorf("invalid isin %q", r.ISIN)
						}
						recs = append(recs, wal.Record{Seq: s, Message: feed.Message{TS: r.TS, Kind: feed.KindQuote, ISIN: isin, Price: feed.Price(r.Price)}})
					}
					return nil
				})
			case DatasetEvents:
				err = readRows(objs[i], func(r *EventRow) error {
					if s := uint64(r.Seq); s >= wlo && s <= whi && tr.contains(r.TS) {
						isin, ok := feed.ParseISIN(r.ISIN)
						if !ok {
							return fmt.Errorf("invalid isin %q", r.ISIN)
						}
						k := feed.KindAdd
						switch r.Type {
						case "ADD":
						case "DELETE":
							k = feed.KindDelete
						default:
							return fmt.Errorf("invalid event type %q", r.Type)
						}
						recs = append(recs, wal.Record{Seq: s, Message: feed.Message{TS: r.TS, Kind: k, ISIN: isin, Description: r.Description}})
					}
					return nil
				})
			}
			if err != nil {
				return fmt.Errorf("archive: read %s: %w", p.key, err)
			}
		}
		slices.SortFunc(recs, func(a, b wal.Record) int { return cmp.Compare(a.Seq, b.Seq) })
		for i := range recs {
			if i > 0 && recs[i].Seq == recs[i-1].Seq {
				return fmt.Errorf("archive: seq %d appears twice (overlapping parts %s…)", recs[i].Seq, parts[0].key)
			}
			if err := fn(recs[i]); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if whi == hi {
			break
		}
		wlo = whi + 1
	}
	return nil
}

// readRows calls fn for every row of the Parquet file in o.
func readRows[T any](o ArchiveObject, fn func(*T) error) error {
	f, err := parquet.OpenFile(o, o.Size())
	if err != nil {
		return err
	}
	r := parquet.NewGenericReader[T](f)
	defer r.Close()
	buf := make([]T, 4096)
	for {
		n, err := r.Read(buf)
		for i := 0; i < n; i++ {
			if err := fn(&buf[i]); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ReadArchiveCandles returns the candles of the archive whose minute is in tr (the zero
// TimeRange: all), each the merge of all its archived states (closed minute plus late
// corrections), sorted by (ISIN, incarnation, minute). Minutes without quotes are not
// stored (gaps are filled at query time, SPEC §4.3). This is the input of
// `backfill --source archive`.
func ReadArchiveCandles(ctx context.Context, store ArchiveStore, tr TimeRange) ([]aggregate.Candle, error) {
	parts, err := listParts(ctx, store, DatasetCandles, tr)
	if err != nil {
		return nil, err
	}
	merged := map[aggregate.Key]*aggregate.Candle{}
	for _, p := range parts {
		o, err := store.Open(ctx, p.key)
		if err != nil {
			return nil, err
		}
		err = readRows(o, func(r *CandleRow) error {
			if !tr.contains(r.Minute) {
				return nil
			}
			c, err := r.candle()
			if err != nil {
				return err
			}
			if m := merged[c.Key]; m != nil {
				m.Merge(&c)
			} else {
				merged[c.Key] = &c
			}
			return nil
		})
		o.Close()
		if err != nil {
			return nil, fmt.Errorf("archive: read %s: %w", p.key, err)
		}
	}
	out := make([]aggregate.Candle, 0, len(merged))
	for _, c := range merged {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b aggregate.Candle) int {
		return cmp.Or(slices.Compare(a.ISIN[:], b.ISIN[:]), cmp.Compare(a.Incarnation, b.Incarnation), cmp.Compare(a.Minute, b.Minute))
	})
	return out, nil
}
