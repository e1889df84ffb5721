package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/store"
	"github.com/quotesdev/quotes/wal"
)

// backfillOptions are the flags of `quotes backfill`.
type backfillOptions struct {
	data       dataOptions
	from, to   string
	source     string
	clickhouse string
	toStore    bool
	archive    archiveOptions // --source archive: --archive and --s3-endpoint
	clock      clock.Clock
}

func newBackfillCmd() *cobra.Command {
	o := &backfillOptions{}
	cmd := &cobra.Command{
		Use:   "backfill --from T --to T",
		Short: "Recompute the candles of a time range from the WAL or the Parquet archive into the embedded store and/or ClickHouse",
		Long: `backfill recomputes the 1-minute candles of the minutes m with from ≤ m < to from the WAL
kept in --data (see --wal-retention of ingest) and writes them to the embedded store
(--store, default on) and to ClickHouse (--clickhouse DSN), e.g. after ClickHouse was added
to a running installation, or lost data. It is idempotent, and meant for cron: running it
twice changes nothing.

How: a fresh aggregator re-runs every retained WAL record, from the first one, exactly as
the pipeline did (same --grace), and so derives each minute's full state, late corrections
included. Then
  - the embedded store gets each recomputed state written over its key (a put of the full
    state: writing it again changes nothing);
  - ClickHouse first receives whatever the outbox still holds for it (so nothing in flight
    is counted twice), then its merged state of every minute in the range is compared
    with the recomputed one: equal → nothing is written; missing → the state is inserted;
    a part of it (fewer quotes, within the same bounds) → only the difference is inserted
    (a state with the missing count, which the AggregatingMergeTree merges into exactly the
    recomputed candle); anything else (more quotes than the WAL has, different prices)
    cannot be undone by an insert and is reported as a conflict, not touched. A second
    run finds every minute equal and writes nothing. An interrupted run is completed by
    the next one (each insert lands whole or not at all).
  - instrument events (ADD/DELETE) of the range go to ClickHouse too (idempotent).

Limits: only minutes the WAL fully covers are recomputed: when retention has removed the
WAL's beginning, minutes before the first retained record's next minute are skipped, and
the registry at that point is rebuilt from the incarnations the store and the current
registry know (so instruments that were active then but have neither candles nor are
active now cannot be recomputed: they had no quotes in the store). Only closed minutes are
written (the open ones belong to the pipeline). The data directory must not be in use
(stop ingest, or run backfill against a copy).

--source archive --archive DIR|s3://bucket/prefix rebuilds the range from a Parquet archive
written by ingest/replay --archive alone (the WAL may be long gone, --data may be a fresh
directory): the candles are the archive's closed-minute states of the range, each merged
with its archived late corrections (exactly the states the pipeline derived), and the
instrument events come from replaying the archive's ADD/DELETE events from its beginning
through the same registry. They are written through the same idempotent path as above
(store: put of the full state; ClickHouse: compare, insert only what is missing). Only the
candles are written to the embedded store (not the registry).`,
		Example: `  quotes backfill --from 2026-11-26T13:00:00Z --to 2026-11-26T14:00:00Z --clickhouse clickhouse://127.0.0.1:9000/default
  quotes backfill --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z --data /var/lib/quotes

  # from the Parquet archive alone, into a fresh data directory and ClickHouse
  quotes backfill --source archive --archive /srv/quotes-archive --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z --data ./rebuilt --clickhouse clickhouse://127.0.0.1:9000/default
  quotes backfill --source archive --archive s3://market-data/quotes --s3-endpoint http://127.0.0.1:7070 --from 2026-11-26T13:00:00Z --to 2026-11-26T14:00:00Z --store=false --clickhouse clickhouse://127.0.0.1:9000/default`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd)
		},
	}
	f := cmd.Flags()
	o.data.bindDir(f)
	o.data.bindPipeline(f)
	f.StringVar(&o.from, "from", "", "first minute to recompute (RFC 3339)")
	f.StringVar(&o.to, "to", "", "end of the range, exclusive (RFC 3339)")
	f.StringVar(&o.source, "source", "wal", "where to recompute from: wal (the retained WAL in --data) or archive (the Parquet archive of --archive)")
	f.StringVar(&o.archive.target, "archive", "", "with --source archive: the archive to read, DIR or s3://bucket/prefix (credentials from the standard AWS environment)")
	o.archive.bindS3(f)
	f.StringVar(&o.clickhouse, "clickhouse", "", "also backfill this ClickHouse (clickhouse://host:9000/database)")
	f.BoolVar(&o.toStore, "store", true, "write the recomputed candles to the embedded store in --data")
	return cmd
}

// backfillResult counts what a backfill did.
type backfillResult struct {
	recomputed, skippedBefore                                    int
	storeWritten, storeChanged, storeExtra                       int
	chEqual, chInserted, chCorrected, chConflicts, chExtra, chEv int
	covered                                                      int64
}

func (o *backfillOptions) run(ctx context.Context, cmd *cobra.Command) error {
	if o.from == "" || o.to == "" {
		return usagef("--from and --to are required")
	}
	from, err := time.Parse(time.RFC3339Nano, o.from)
	if err != nil {
		return usagef("--from %q: want RFC 3339, e.g. 2026-11-26T13:00:00Z", o.from)
	}
	to, err := time.Parse(time.RFC3339Nano, o.to)
	if err != nil {
		return usagef("--to %q: want RFC 3339, e.g. 2026-11-26T14:00:00Z", o.to)
	}
	if !to.After(from) {
		return usagef("--to %s is not after --from %s", o.to, o.from)
	}
	var arch export.ArchiveStore
	switch o.source {
	case "wal":
		if o.archive.target != "" {
			return usagef("--archive %q: only with --source archive", o.archive.target)
		}
	case "archive":
		if o.archive.target == "" {
			return usagef("--source archive needs --archive DIR or s3://bucket/prefix")
		}
		if arch, err = o.archive.store(os.TempDir()); err != nil {
			return usagef("--archive %q: %v", o.archive.target, err)
		}
	default:
		return usagef("--source %q: want wal or archive", o.source)
	}
	if !o.toStore && o.clickhouse == "" {
		return usagef("nothing to backfill into: --store=false and no --clickhouse")
	}
	if arch == nil && !dirExists(o.data.dir) {
		return usagef("no data directory at %s: backfill recomputes from its WAL", o.data.dir)
	}
	if o.clock == nil {
		o.clock = clock.New()
	}
	logger := slog.Default()
	// From the archive, the data directory is only needed to write into it (--store) or
	// to deliver its outbox to ClickHouse first (when it exists).
	var log *wal.Log
	var p *pipeline.Pipeline
	if arch == nil || o.toStore || dirExists(o.data.dir) {
		if log, p, err = o.data.open(logger); err != nil {
			return err
		}
		defer log.Close()
		defer p.Close()
	}

	var ch *export.ClickHouseSink
	if o.clickhouse != "" {
		if ch, err = openClickHouse(ctx, o.clickhouse); err != nil {
			return err
		}
		defer ch.Close()
	}
	if ch != nil && p != nil {
		// Deliver the outbox first: what is in flight must land before comparing, or it
		// would be counted twice.
		c, err := export.NewConsumer(p.Store(), ch.OutboxSink(), export.ConsumerOptions{Clock: o.clock, Logger: logger})
		if err != nil {
			return err
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		pending, err := c.Drain(dctx)
		cancel()
		if pending > 0 || err != nil {
			return fmt.Errorf("ClickHouse has %d outbox items pending that could not be delivered first (%v): backfill would count them twice; retry when it is reachable", pending, err)
		}
	}

	res := &backfillResult{}
	lo, hi := from.UnixNano(), to.UnixNano()
	var cs []aggregate.Candle
	var events []export.InstrumentEvent
	if arch != nil {
		cs, events, err = o.recomputeArchive(ctx, arch, lo, hi, res)
	} else {
		cs, events, err = o.recompute(log, p, lo, hi, res)
	}
	if err != nil {
		return err
	}
	if o.toStore {
		if err := backfillStore(p.Store(), cs, lo, hi, res); err != nil {
			return err
		}
	}
	if ch != nil {
		if err := backfillClickHouse(ctx, ch, cs, events, max(lo, res.covered), hi, res); err != nil {
			return err
		}
	}
	o.printResult(cmd.OutOrStdout(), res)
	return nil
}

// recompute re-runs the retained WAL through a fresh aggregator and returns the full states
// of the closed minutes in [lo, hi) it covers, sorted by key, and the instrument events in
// the range.
func (o *backfillOptions) recompute(log *wal.Log, p *pipeline.Pipeline, lo, hi int64, res *backfillResult) ([]aggregate.Candle, []export.InstrumentEvent, error) {
	firstSeq := log.FirstSeq()
	agg := aggregate.New(o.data.pipelineOptions(slog.Default()).Aggregate)
	out := &backfillOutput{lo: lo, hi: hi, candles: map[aggregate.Key]*aggregate.Candle{}}
	r := log.NewReader(firstSeq)
	first, err := r.Next()
	if errors.Is(err, io.EOF) {
		res.covered = math.MinInt64
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("backfill: read WAL: %w", err)
	}
	res.covered = math.MinInt64
	if first.Seq > 1 {
		// The WAL's beginning is gone: rebuild the registry from the incarnations that
		// started before it (the current registry, and those with candles after it), as
		// ADDs with their own sequences, and skip the minute it starts in.
		res.covered = aggregate.MinuteOf(first.TS) + aggregate.MinuteNanos
		seeds := map[aggregate.Key]bool{}
		for _, in := range p.Instruments() {
			if in.Incarnation < first.Seq {
				seeds[aggregate.Key{ISIN: in.ISIN, Incarnation: in.Incarnation}] = true
			}
		}
		err := p.Store().ScanCandles(func(c aggregate.Candle) error {
			if c.Incarnation < first.Seq && c.Minute >= aggregate.MinuteOf(first.TS) {
				seeds[aggregate.Key{ISIN: c.ISIN, Incarnation: c.Incarnation}] = true
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		keys := make([]aggregate.Key, 0, len(seeds))
		for k := range seeds {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b aggregate.Key) int { return cmp.Compare(a.Incarnation, b.Incarnation) })
		for _, k := range keys {
			agg.Apply(wal.Record{Seq: k.Incarnation, Message: feed.Message{TS: first.TS, Kind: feed.KindAdd, ISIN: k.ISIN}}, discard{})
		}
	}
	out.covered = res.covered
	rec := first
	for {
		out.apply(agg, rec)
		rec, err = r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("backfill: read WAL: %w", err)
		}
	}
	closed := agg.ClosedThrough()
	cs := make([]aggregate.Candle, 0, len(out.candles))
	for _, c := range out.candles {
		if c.Minute+aggregate.MinuteNanos <= closed {
			cs = append(cs, *c)
		}
	}
	slices.SortFunc(cs, func(a, b aggregate.Candle) int {
		return cmp.Or(cmp.Compare(a.ISIN.String(), b.ISIN.String()), cmp.Compare(a.Incarnation, b.Incarnation), cmp.Compare(a.Minute, b.Minute))
	})
	res.recomputed = len(cs)
	return cs, out.events, nil
}

// recomputeArchive reads the states of the closed minutes in [lo, hi) from the archive
// (closed states merged with their late corrections: the pipeline's full states), sorted
// by key, and derives the instrument events in the range by running the archive's ADD and
// DELETE events, from its beginning, through a fresh registry.
func (o *backfillOptions) recomputeArchive(ctx context.Context, st export.ArchiveStore, lo, hi int64, res *backfillResult) ([]aggregate.Candle, []export.InstrumentEvent, error) {
	res.covered = math.MinInt64
	cs, err := export.ReadArchiveCandles(ctx, st, export.TimeRange{From: lo, To: hi})
	if err != nil {
		return nil, nil, fmt.Errorf("backfill: read archive %s: %w", st, err)
	}
	agg := aggregate.New(o.data.pipelineOptions(slog.Default()).Aggregate)
	out := &backfillOutput{lo: lo, hi: hi, covered: math.MinInt64, candles: map[aggregate.Key]*aggregate.Candle{}}
	err = export.ReadArchiveEvents(ctx, st, export.TimeRange{From: math.MinInt64, To: hi}, func(r wal.Record) error {
		out.apply(agg, r)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("backfill: read archive %s: %w", st, err)
	}
	res.recomputed = len(cs)
	return cs, out.events, nil
}

// backfillOutput collects what a backfill's aggregator derives in the range.
type backfillOutput struct {
	lo, hi, covered int64
	candles         map[aggregate.Key]*aggregate.Candle
	events          []export.InstrumentEvent
	rec             *wal.Record
}

func (b *backfillOutput) apply(agg *aggregate.Aggregator, r wal.Record) {
	b.rec = &r
	var prev aggregate.Instrument
	was := false
	if r.Kind == feed.KindAdd {
		prev, was = agg.Instrument(r.ISIN)
	}
	agg.Apply(r, b)
	if r.Kind == feed.KindAdd && r.TS >= b.lo && r.TS < b.hi {
		if in, ok := agg.Instrument(r.ISIN); ok && (in.Incarnation == r.Seq || was && prev.Description != in.Description) {
			b.events = append(b.events, export.InstrumentEvent{Seq: r.Seq, TS: r.TS, Kind: feed.KindAdd,
				ISIN: r.ISIN, Incarnation: in.Incarnation, Description: in.Description})
		}
	}
}

func (b *backfillOutput) in(m int64) bool { return m >= b.lo && m < b.hi && m >= b.covered }

func (b *backfillOutput) Quote(aggregate.AcceptedQuote) {}

func (b *backfillOutput) Ended(isin feed.ISIN, incarnation uint64, seq uint64) {
	if b.rec.TS >= b.lo && b.rec.TS < b.hi {
		b.events = append(b.events, export.InstrumentEvent{Seq: seq, TS: b.rec.TS, Kind: feed.KindDelete,
			ISIN: isin, Incarnation: incarnation, Description: b.rec.Description})
	}
}

func (b *backfillOutput) Closed(c *aggregate.Candle) { b.merge(c) }
func (b *backfillOutput) Late(c *aggregate.Candle)   { b.merge(c) }

func (b *backfillOutput) merge(c *aggregate.Candle) {
	if !b.in(c.Minute) {
		return
	}
	if have, ok := b.candles[c.Key]; ok {
		have.Merge(c)
		return
	}
	cp := *c
	b.candles[c.Key] = &cp
}

// discard is an aggregate.Output that drops everything (registry seeding).
type discard struct{}

func (discard) Quote(aggregate.AcceptedQuote)   {}
func (discard) Ended(feed.ISIN, uint64, uint64) {}
func (discard) Closed(*aggregate.Candle)        {}
func (discard) Late(*aggregate.Candle)          {}

// backfillStore writes the recomputed states over the store's.
func backfillStore(st *store.Store, cs []aggregate.Candle, lo, hi int64, res *backfillResult) error {
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
		if h, ok := have[c.Key]; !ok || h != c {
			changed = append(changed, c)
		}
		delete(have, c.Key)
	}
	for k := range have {
		if k.Minute >= res.covered {
			res.storeExtra++
		}
	}
	res.storeWritten, res.storeChanged = len(cs), len(changed)
	return st.PutCandles(changed)
}

// backfillClickHouse writes to ClickHouse what it lacks of the recomputed states.
func backfillClickHouse(ctx context.Context, ch *export.ClickHouseSink, cs []aggregate.Candle, events []export.InstrumentEvent, lo, hi int64, res *backfillResult) error {
	if err := ch.WriteInstruments(ctx, events); err != nil {
		return err
	}
	res.chEv = len(events)
	have := map[aggregate.Key]aggregate.Candle{}
	if err := ch.MergedCandles(ctx, lo, hi, func(c aggregate.Candle) error { have[c.Key] = c; return nil }); err != nil {
		return err
	}
	var write []aggregate.Candle
	for _, r := range cs {
		c, ok := have[r.Key]
		delete(have, r.Key)
		switch {
		case !ok:
			write = append(write, r)
			res.chInserted++
		case c == r:
			res.chEqual++
		case subState(&c, &r):
			d := r
			d.Quotes = r.Quotes - c.Quotes
			write = append(write, d)
			res.chCorrected++
		default:
			res.chConflicts++
			slog.Warn("backfill: ClickHouse holds a candle the WAL does not explain; left as it is",
				"isin", r.ISIN, "incarnation", r.Incarnation, "minute", time.Unix(0, r.Minute).UTC(), "clickhouse_quotes", c.Quotes, "wal_quotes", r.Quotes)
		}
	}
	res.chExtra = len(have)
	if len(write) == 0 {
		return nil
	}
	// A fresh flush id with the top bit set (never a consumer's): each chunk lands whole or
	// not at all, and a re-run recomputes the differences, so the id need not be stable.
	id := uint64(1)<<63 | rand.Uint64()>>1
	return ch.Write(ctx, id, write)
}

// subState reports whether c is a part of r: merging r with quotes r.Quotes−c.Quotes into c
// gives exactly r.
func subState(c, r *aggregate.Candle) bool {
	if c.Quotes >= r.Quotes || c.High > r.High || c.Low < r.Low {
		return false
	}
	openOK := c.OpenTS > r.OpenTS || c.OpenTS == r.OpenTS && c.OpenSeq >= r.OpenSeq
	closeOK := c.CloseTS < r.CloseTS || c.CloseTS == r.CloseTS && c.CloseSeq <= r.CloseSeq
	return openOK && closeOK
}

func (o *backfillOptions) printResult(w io.Writer, res *backfillResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "candles recomputed\t%d\t\n", res.recomputed)
	if res.covered != math.MinInt64 {
		fmt.Fprintf(tw, "WAL covers from\t%s\t(earlier minutes skipped: retention removed their records)\n", time.Unix(0, res.covered).UTC().Format(time.RFC3339))
	}
	if o.toStore {
		fmt.Fprintf(tw, "embedded store\t%d changed\t(%d unchanged; %d stored candles the WAL does not explain)\n", res.storeChanged, res.storeWritten-res.storeChanged, res.storeExtra)
	}
	if o.clickhouse != "" {
		fmt.Fprintf(tw, "clickhouse\t%d inserted, %d completed\t(%d equal; %d conflicts, %d candles the WAL does not explain; %d instrument events)\n",
			res.chInserted, res.chCorrected, res.chEqual, res.chConflicts, res.chExtra, res.chEv)
	}
	tw.Flush()
}
