package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/backfill"
	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/export"
)

// backfillOptions are the flags of `quotes backfill`.
type backfillOptions struct {
	app        *app
	data       dataOptions
	from, to   string
	source     string
	clickhouse string
	toStore    bool
	repair     bool
	archive    archiveOptions // --source archive: --archive and --s3-endpoint
	clock      clock.Clock
}

func newBackfillCmd(a *app) *cobra.Command {
	o := &backfillOptions{app: a}
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
    cannot be undone by an insert and is reported as a conflict, not touched (exit code 1,
    naming the first few), unless --repair. A second run finds every minute equal and
    writes nothing. An interrupted run is completed by the next one (each insert lands
    whole or not at all).
  - instrument events (ADD/DELETE) of the range go to ClickHouse too (idempotent).

--repair also rewrites what an insert cannot fix — e.g. minutes counted twice because two
data directories delivered the same recording to one database: each conflicting minute
gets exactly its recomputed state, and minutes the WAL (or archive) does not explain, up
to the last recomputed minute, are removed. How: the recomputed states are inserted as one
new flush, then an ALTER TABLE candles DELETE mutation removes every other row of those
(isin, incarnation, minute) keys, and backfill waits until the server applied it
(system.mutations; works on 18.16 and current releases). The flush markers that make the
sink exactly-once are never touched, so later deliveries stay exactly-once. Crash-safe: at
no point is a minute missing, a mutation once created is finished by the server on its
own, and the next run (with or without --repair) waits for it first; a second run finds
every minute equal and changes nothing. Stop other writers to the database (other data
directories) while repairing.

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
(store: put of the full state; ClickHouse: compare, insert only what is missing). A --data
directory without WAL records of its own (a fresh one) is first rebuilt from the archive's
raw messages up to --to, so that query and serve answer on it like on the original:
instruments, prices, candles and hot events.`,
		Example: `  quotes backfill --from 2026-11-26T13:00:00Z --to 2026-11-26T14:00:00Z --clickhouse clickhouse://127.0.0.1:9000/default
  quotes backfill --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z --data /var/lib/quotes

  # ClickHouse holds candles the WAL does not explain (exit 1): rewrite them
  quotes backfill --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z --clickhouse clickhouse://127.0.0.1:9000/default --repair

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
	o.data.bindSettings(f)
	f.StringVar(&o.from, "from", "", "first minute to recompute (RFC 3339)")
	f.StringVar(&o.to, "to", "", "end of the range, exclusive (RFC 3339)")
	f.StringVar(&o.source, "source", "wal", "where to recompute from: wal (the retained WAL in --data) or archive (the Parquet archive of --archive)")
	f.StringVar(&o.archive.target, "archive", "", "with --source archive: the archive to read, DIR or s3://bucket/prefix (credentials from the standard AWS environment)")
	o.archive.bindS3(f)
	f.StringVar(&o.clickhouse, "clickhouse", "", "also backfill this ClickHouse (clickhouse://host:9000/database)")
	f.BoolVar(&o.toStore, "store", true, "write the recomputed candles to the embedded store in --data")
	f.BoolVar(&o.repair, "repair", false, "with --clickhouse: rewrite the ClickHouse minutes the WAL or archive does not explain (conflicts, extras) instead of only reporting them")
	return cmd
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
	req := engine.BackfillRequest{From: from.UnixNano(), To: to.UnixNano(), Store: o.toStore, Repair: o.repair}
	switch o.source {
	case "wal":
		if o.archive.target != "" {
			return usagef("--archive %q: only with --source archive", o.archive.target)
		}
	case "archive":
		if o.archive.target == "" {
			return usagef("--source archive needs --archive DIR or s3://bucket/prefix")
		}
		if !export.IsS3URL(o.archive.target) && !engine.IsArchiveDir(o.archive.target) {
			return usagef("--archive %q: no Parquet archive there (no quotes/ or events/ directory)", o.archive.target)
		}
		if req.Archive, err = engine.OpenArchive(o.archive.target, o.archive.s3Options()); err != nil {
			return usagef("%v", err)
		}
	default:
		return usagef("--source %q: want wal or archive", o.source)
	}
	if o.repair && o.clickhouse == "" {
		return usagef("--repair needs --clickhouse: it rewrites ClickHouse minutes")
	}
	if !o.toStore && o.clickhouse == "" {
		return usagef("nothing to backfill into: --store=false and no --clickhouse")
	}
	if req.Archive == nil && !dirExists(o.data.dir) {
		return usagef("no data directory at %s: backfill recomputes from its WAL", o.data.dir)
	}
	// From the archive, the data directory is only needed to write into it (--store) or
	// to deliver its outbox to ClickHouse first (when it exists).
	var eng *engine.Engine
	if req.Archive == nil || o.toStore || dirExists(o.data.dir) {
		eopts, err := o.data.engineOptions(o.app.logger, nil)
		if err != nil {
			return err
		}
		if o.clock != nil {
			eopts.Clock = o.clock
		}
		eng, err = engine.Open(eopts)
		if errors.Is(err, engine.ErrLocked) {
			return o.remote(ctx, cmd, from, to)
		}
		if err != nil {
			return engineError(err)
		}
		defer eng.Close()
	}
	if o.clickhouse != "" {
		if req.ClickHouse, err = engine.OpenClickHouse(ctx, o.clickhouse); err != nil {
			return engineError(err)
		}
		defer req.ClickHouse.Close()
	}
	var res *engine.BackfillResult
	if eng != nil {
		res, err = eng.Backfill(ctx, req)
	} else {
		res, err = engine.BackfillArchive(ctx, req, o.data.settings)
	}
	if err != nil {
		return err
	}
	return o.finish(cmd, res)
}

// finish prints the result; conflicts left in ClickHouse make it exit 1.
func (o *backfillOptions) finish(cmd *cobra.Command, res *engine.BackfillResult) error {
	o.printResult(cmd.OutOrStdout(), res)
	if n := res.Conflicts; n > 0 && res.Repaired == nil {
		return fmt.Errorf("ClickHouse holds %d candles the %s does not explain (first: %s); nothing was changed for them: --repair rewrites them", n, o.source, conflictKeys(res.ClickHouse.Conflicts, 3))
	}
	return nil
}

// remote runs the backfill inside the process that holds --data (a running ingest),
// streaming its progress to stderr; Ctrl-C cancels it there.
func (o *backfillOptions) remote(ctx context.Context, cmd *cobra.Command, from, to time.Time) error {
	rp, ok := engine.ReadRunning(o.data.dir)
	if !ok || rp.HTTP == "" {
		return fmt.Errorf("data directory %s is held by another process without an HTTP API (start it with --http): %w", o.data.dir, engine.ErrLocked)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "quotes: %s is held by `quotes %s` (pid %d): backfilling inside it\n", o.data.dir, rp.Command, rp.PID)
	spec := engine.BackfillSpec{From: from, To: to, Store: o.toStore, ClickHouse: o.clickhouse, Archive: o.archive.target, S3Endpoint: o.archive.s3Endpoint, Repair: o.repair}
	res, err := engine.RemoteBackfill(ctx, o.data.dir, rp, spec, func(p string) {
		fmt.Fprintf(cmd.ErrOrStderr(), "quotes: backfill: %s\n", p)
	})
	var re *engine.RemoteError
	if errors.As(err, &re) && re.Usage {
		return &usageError{err}
	}
	if err != nil {
		return err
	}
	return o.finish(cmd, res)
}

// conflictKeys names the first n conflicts.
func conflictKeys(cs []backfill.Conflict, n int) string {
	var parts []string
	for i, c := range cs {
		if i == n {
			parts = append(parts, fmt.Sprintf("… %d more", len(cs)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s (ClickHouse %d quotes, recomputed %d)", c.Want.ISIN,
			time.Unix(0, c.Want.Minute).UTC().Format(time.RFC3339), c.Have.Quotes, c.Want.Quotes))
	}
	return strings.Join(parts, ", ")
}

func (o *backfillOptions) printResult(w io.Writer, res *engine.BackfillResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if res.Rebuilt {
		fmt.Fprintf(tw, "data directory\trebuilt\t(from the archive's raw messages: instruments, prices, candles, hot events)\n")
	}
	fmt.Fprintf(tw, "candles recomputed\t%d\t\n", res.Recomputed)
	if res.Covered != math.MinInt64 {
		fmt.Fprintf(tw, "WAL covers from\t%s\t(earlier minutes skipped: retention removed their records)\n", time.Unix(0, res.Covered).UTC().Format(time.RFC3339))
	}
	if o.toStore {
		fmt.Fprintf(tw, "embedded store\t%d changed\t(%d unchanged, %d newer in the store; %d stored candles the WAL does not explain)\n", res.StoreChanged, res.StoreWritten-res.StoreChanged-res.StoreNewer, res.StoreNewer, res.StoreExtra)
	}
	if o.clickhouse != "" {
		p := res.ClickHouse
		fmt.Fprintf(tw, "clickhouse\t%d inserted, %d completed\t(%d equal; %d conflicts, %d candles the WAL does not explain; %d instrument events)\n",
			p.Missing, p.Completed, p.Equal, res.Conflicts, res.Extra, res.ClickHouseEv)
		if r := res.Repaired; r != nil {
			fmt.Fprintf(tw, "clickhouse repair\t%d rewritten, %d removed\t(%d extra minutes after the last recomputed one left alone)\n", r.Rewritten, r.Removed, r.KeptAfter)
		}
	}
	tw.Flush()
}
