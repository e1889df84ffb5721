package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/backfill"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/record"
	"github.com/quotesdev/quotes/wal"
)

// BackfillRequest is what Backfill recomputes and where it writes.
type BackfillRequest struct {
	// From and To bound the minutes m recomputed: From ≤ m < To (Unix nanoseconds).
	From, To int64
	// Archive, if set, is the source instead of the engine's WAL.
	Archive export.ArchiveStore
	// Store writes the recomputed states to the embedded store.
	Store bool
	// ClickHouse, if set, receives what it lacks of the recomputed states and the range's
	// instrument events.
	ClickHouse *export.ClickHouseSink
	// OutboxTimeout bounds the delivery of the outbox to ClickHouse before comparing
	// (default 5 minutes).
	OutboxTimeout time.Duration
	// Progress, if set, is told what the backfill is doing, phase by phase.
	Progress func(phase string)
	// Repair rewrites the ClickHouse minutes the recomputation does not explain (conflicts
	// and extras; see backfill_repair.go) instead of only reporting them.
	Repair bool
}

func (r *BackfillRequest) progress(format string, args ...any) {
	if r.Progress != nil {
		r.Progress(fmt.Sprintf(format, args...))
	}
}

// BackfillResult counts what Backfill did.
type BackfillResult struct {
	// Recomputed is the number of closed candle states recomputed; Covered the first
	// minute the WAL fully covers (math.MinInt64: all of the range).
	Recomputed int
	Covered    int64
	// Rebuilt is set when the data directory was empty and was rebuilt from the archive.
	Rebuilt bool
	// The embedded store: states written, of which changed, and stored states the
	// recomputation does not explain.
	StoreWritten, StoreChanged, StoreExtra int
	// StoreNewer counts stored states with quotes the recomputation did not see (written
	// meanwhile by a running ingest), left as they are.
	StoreNewer int
	// ClickHouse: the comparison (see backfill.Plan) and the instrument events written;
	// Conflicts and Extra count Plan.Conflicts and Plan.Extra (which a remote answer cuts
	// to their first few).
	ClickHouse   backfill.Plan
	ClickHouseEv int
	Conflicts    int
	Extra        int
	// Repaired is set when Repair ran.
	Repaired *RepairResult
}

// Backfill recomputes the closed candles of [req.From, req.To) from the WAL (or the
// archive) and writes them to the embedded store and/or ClickHouse, idempotently: a
// second run changes nothing.
//
// From the WAL, a fresh aggregator re-runs every retained record, with the same settings as
// the pipeline, so it derives each minute's full state, late corrections included. When
// retention removed the WAL's beginning, minutes before the first retained record's next
// minute are skipped and the registry at that point is rebuilt from the incarnations the
// store and the current registry know.
//
// From the archive, the states are the archive's closed minutes merged with their
// corrections, and the instrument events come from replaying the archive's ADD and DELETE
// events through a fresh registry. A data directory with an empty WAL is first rebuilt
// from the archive's raw messages up to req.To (registry, prices, candles, hot events), so
// that queries on it answer like the original.
//
// ClickHouse first receives whatever the outbox holds for it (so nothing in flight is
// counted twice); then each recomputed state is compared with its merged state there and
// only what it lacks is inserted (see backfill.Diff). Conflicts are reported, not touched.
func (e *Engine) Backfill(ctx context.Context, req BackfillRequest) (*BackfillResult, error) {
	if req.To <= req.From {
		return nil, &OptionError{Option: "to", Err: errors.New("is not after --from")}
	}
	if req.OutboxTimeout <= 0 {
		req.OutboxTimeout = 5 * time.Minute
	}
	res := &BackfillResult{Covered: math.MinInt64}
	if req.ClickHouse != nil {
		req.progress("delivering the outbox to ClickHouse first")
		if err := e.drainOutbox(ctx, req.ClickHouse, req.OutboxTimeout); err != nil {
			return nil, err
		}
	}
	var cs []aggregate.Candle
	var events []aggregate.InstrumentEvent
	var err error
	if req.Archive != nil {
		if e.log.LastSeq() == 0 && req.Store {
			req.progress("rebuilding the empty data directory from the archive")
			if err := e.rebuildFromArchive(ctx, req.Archive, req.To); err != nil {
				return nil, err
			}
			res.Rebuilt = true
		}
		req.progress("reading the archive's candles and events")
		cs, events, err = recomputeArchive(ctx, req.Archive, e.settings.Grace, req.From, req.To)
	} else {
		req.progress("recomputing from the WAL (records %d…%d)", e.log.FirstSeq(), e.log.LastSeq())
		cs, events, err = e.recomputeWAL(req.From, req.To, res)
	}
	if err != nil {
		return nil, err
	}
	res.Recomputed = len(cs)
	if req.Store {
		req.progress("writing %d candle states to the embedded store where they differ", len(cs))
		if err := e.backfillStore(cs, req.From, req.To, res); err != nil {
			return nil, err
		}
	}
	if req.ClickHouse != nil {
		if err := e.backfillClickHouseRepair(ctx, req, cs, events, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// BackfillArchive is Backfill from req.Archive into req.ClickHouse alone, without a data
// directory; settings are those the archive was written with.
func BackfillArchive(ctx context.Context, req BackfillRequest, settings Settings) (*BackfillResult, error) {
	if req.To <= req.From {
		return nil, &OptionError{Option: "to", Err: errors.New("is not after --from")}
	}
	if req.Archive == nil || req.ClickHouse == nil || req.Store {
		return nil, errors.New("engine: BackfillArchive needs an archive and ClickHouse, and no store")
	}
	res := &BackfillResult{Covered: math.MinInt64}
	cs, events, err := recomputeArchive(ctx, req.Archive, settings.Grace, req.From, req.To)
	if err != nil {
		return nil, err
	}
	res.Recomputed = len(cs)
	if err := backfillClickHouseRepair(ctx, req, cs, events, res); err != nil {
		return nil, err
	}
	return res, nil
}

// backfillClickHouse writes the range's instrument events and what ClickHouse lacks of the
// recomputed states cs.
func backfillClickHouse(ctx context.Context, req BackfillRequest, cs []aggregate.Candle, events []aggregate.InstrumentEvent, res *BackfillResult) error {
	ch := req.ClickHouse
	req.progress("comparing %d candle states with ClickHouse", len(cs))
	if err := ch.WriteInstruments(ctx, events); err != nil {
		return err
	}
	res.ClickHouseEv = len(events)
	have := map[aggregate.Key]aggregate.Candle{}
	lo := max(req.From, res.Covered)
	if err := ch.MergedCandles(ctx, lo, req.To, func(c aggregate.Candle) error { have[c.Key] = c; return nil }); err != nil {
		return err
	}
	res.ClickHouse = backfill.Diff(cs, have)
	res.Conflicts, res.Extra = len(res.ClickHouse.Conflicts), len(res.ClickHouse.Extra)
	if len(res.ClickHouse.Insert) == 0 {
		return nil
	}
	// A fresh flush id with the top bit set (never a consumer's): each chunk lands whole or
	// not at all, and a re-run recomputes the differences, so the id need not be stable.
	id := uint64(1)<<63 | rand.Uint64()>>1
	return ch.Write(ctx, id, res.ClickHouse.Insert)
}

// drainOutbox delivers what the outbox holds for ch before a comparison. When the engine
// runs that sink's consumer itself (a backfill inside a running ingest), it waits for it to
// catch up instead of running a second consumer of the same outbox.
func (e *Engine) drainOutbox(ctx context.Context, ch *export.ClickHouseSink, timeout time.Duration) error {
	name := ch.OutboxSink().Name()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, c := range e.sinks.consumers {
		if c.Name() != name {
			continue
		}
		for {
			pending, err := c.Pending()
			if err == nil && pending == 0 {
				return nil
			}
			if e.sleep(dctx, 100*time.Millisecond) != nil {
				return fmt.Errorf("ClickHouse has %d outbox items pending that the running sink did not deliver within %s (%v): backfill would count them twice; retry when it is reachable", pending, timeout, err)
			}
		}
	}
	c, err := export.NewConsumer(e.p.Store(), ch.OutboxSink(), export.ConsumerOptions{Clock: e.opts.Clock, Logger: e.opts.Logger})
	if err != nil {
		return err
	}
	pending, err := c.Drain(dctx)
	if pending > 0 || err != nil {
		return fmt.Errorf("ClickHouse has %d outbox items pending that could not be delivered first (%v): backfill would count them twice; retry when it is reachable", pending, err)
	}
	return nil
}

// recomputeWAL re-runs the retained WAL through a fresh aggregator.
func (e *Engine) recomputeWAL(lo, hi int64, res *BackfillResult) ([]aggregate.Candle, []aggregate.InstrumentEvent, error) {
	agg := aggregate.New(aggregate.Options{Grace: e.settings.Grace})
	r := e.log.NewReader(e.log.FirstSeq())
	first, err := r.Next()
	if errors.Is(err, io.EOF) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("backfill: read WAL: %w", err)
	}
	if first.Seq > 1 {
		// The WAL's beginning is gone: rebuild the registry from the incarnations that
		// started before it (the current registry, and those with candles after it), as
		// ADDs with their own sequences, and skip the minute it starts in.
		res.Covered = aggregate.MinuteOf(first.TS) + aggregate.MinuteNanos
		seeds, err := e.seeds(first)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range seeds {
			agg.Apply(record.Record{Seq: k.Incarnation, Message: feed.Message{TS: first.TS, Kind: feed.KindAdd, ISIN: k.ISIN}}, backfill.Discard{})
		}
	}
	col := backfill.NewCollector(lo, hi, res.Covered)
	for rec := first; ; {
		agg.Apply(rec, col)
		rec, err = r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("backfill: read WAL: %w", err)
		}
	}
	return col.Candles(agg.ClosedThrough()), col.Events(), nil
}

// seeds returns the incarnations active before the WAL's first retained record, by
// incarnation.
func (e *Engine) seeds(first wal.Record) ([]aggregate.Key, error) {
	set := map[aggregate.Key]bool{}
	for _, in := range e.p.Instruments() {
		if in.Incarnation < first.Seq {
			set[aggregate.Key{ISIN: in.ISIN, Incarnation: in.Incarnation}] = true
		}
	}
	err := e.p.Store().ScanCandles(func(c aggregate.Candle) error {
		if c.Incarnation < first.Seq && c.Minute >= aggregate.MinuteOf(first.TS) {
			set[aggregate.Key{ISIN: c.ISIN, Incarnation: c.Incarnation}] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys := make([]aggregate.Key, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b aggregate.Key) int { return cmp.Compare(a.Incarnation, b.Incarnation) })
	return keys, nil
}

// recomputeArchive reads the range's states from the archive and derives its instrument
// events from the archive's events, from its beginning.
func recomputeArchive(ctx context.Context, st export.ArchiveStore, grace time.Duration, lo, hi int64) ([]aggregate.Candle, []aggregate.InstrumentEvent, error) {
	cs, err := export.ReadArchiveCandles(ctx, st, export.TimeRange{From: lo, To: hi})
	if err != nil {
		return nil, nil, fmt.Errorf("backfill: read archive %s: %w", st, err)
	}
	agg := aggregate.New(aggregate.Options{Grace: grace})
	col := backfill.NewCollector(lo, hi, math.MinInt64)
	err = export.ReadArchiveEvents(ctx, st, export.TimeRange{From: math.MinInt64, To: hi}, func(r record.Record) error {
		agg.Apply(r, col)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("backfill: read archive %s: %w", st, err)
	}
	return cs, col.Events(), nil
}

// rebuildFromArchive replays the archive's raw messages before to into the (empty) data
// directory, so it holds the registry, prices and hot events, not only candles.
func (e *Engine) rebuildFromArchive(ctx context.Context, st export.ArchiveStore, to int64) error {
	src := &ArchiveSource{st: st, to: to}
	if _, err := e.Replay(ctx, []Source{src}, ReplayOptions{}); err != nil {
		return fmt.Errorf("backfill: rebuild from archive %s: %w", st, err)
	}
	return nil
}

// backfillStore writes the recomputed states over the store's where they differ. It runs
// with the pipeline's commits locked, so a running ingest's flushes do not interleave, and
// never overwrites a stored state that holds the recomputed one and more quotes (late ones
// a running ingest applied after the recomputation read the WAL): those are left as they
// are (StoreNewer).
func (e *Engine) backfillStore(cs []aggregate.Candle, lo, hi int64, res *BackfillResult) error {
	unlock := e.p.LockCommits()
	defer unlock()
	st := e.p.Store()
	have := map[aggregate.Key]aggregate.Candle{}
	err := st.ScanCandles(func(c aggregate.Candle) error {
		if c.Minute >= lo && c.Minute < hi {
			have[c.Key] = c
		}
		return nil
	})
	if err != nil {
		return err
	}
	changed := make([]aggregate.Candle, 0)
	for _, c := range cs {
		h, ok := have[c.Key]
		delete(have, c.Key)
		switch {
		case h == c:
		case ok && backfill.IsPart(&c, &h):
			res.StoreNewer++ // the store has c and later quotes
		default:
			changed = append(changed, c)
		}
	}
	for k := range have {
		if k.Minute >= res.Covered {
			res.StoreExtra++
		}
	}
	res.StoreWritten, res.StoreChanged = len(cs), len(changed)
	return st.PutCandles(changed)
}
