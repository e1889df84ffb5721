package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/render"
)

// queryOptions are the flags every `quotes query` subcommand shares.
type queryOptions struct {
	app        *app
	data       dataOptions
	format     string
	clickhouse string
	wait       time.Duration
	stderr     func() io.Writer // the command's error output, at run time
}

func (o *queryOptions) bind(cmd *cobra.Command, formats string) {
	f := cmd.Flags()
	o.data.bindDir(f)
	f.StringVar(&o.format, "format", "table", "output format: "+formats)
	f.StringVar(&o.clickhouse, "clickhouse", "", "read from ClickHouse (clickhouse://host:9000/database) instead of --data; hot events are not there")
	f.DurationVar(&o.wait, "wait", 30*time.Second, "when the process holding --data is still recovering, wait this long for it")
	o.stderr = cmd.ErrOrStderr
}

// withBackend runs fn against the data directory: opened in-process (finishing any
// interrupted recovery), or — when a running ingest/serve holds it — through that process's
// HTTP API, found via <data>/running.json.
func (o *queryOptions) withBackend(ctx context.Context, fn func(api.Backend) error) error {
	if o.clickhouse != "" {
		ch, err := engine.OpenClickHouse(ctx, o.clickhouse)
		if err != nil {
			return engineError(err)
		}
		defer ch.Close()
		return fn(export.NewClickHouseBackend(ch, nil))
	}
	if o.data.dir == "" {
		return usagef("--data must not be empty")
	}
	eopts, err := o.data.engineOptions(o.app.logger, nil)
	if err != nil {
		return err
	}
	eopts.ReadOnly = true
	eng, err := engine.Open(eopts)
	if errors.Is(err, engine.ErrLocked) {
		rp, ok := engine.ReadRunning(o.data.dir)
		if !ok || rp.HTTP == "" {
			return fmt.Errorf("%w; start it with --http to query it while it runs", err)
		}
		c := localClient(o.data.dir, rp)
		if err := waitRecovered(ctx, c, rp, o.wait, o.stderr()); err != nil {
			return err
		}
		return fn(c)
	}
	if err != nil {
		return engineError(err)
	}
	defer eng.Close()
	return fn(eng.Backend())
}

func newQueryCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Read candles, instruments and hot events from a data directory",
		Long: `query reads from --data: directly when no other process holds it, or through the HTTP
API of the ingest or serve process that does (found via --data/running.json), so it works
while ingest is running and includes the still-open minute.

With --clickhouse DSN, candles and instruments come from ClickHouse instead (the same
output; "now" is the minute after the latest one ClickHouse holds, and the still-open
minute shows flat at the last close, since ClickHouse receives minutes as they close). Hot
events are kept in the embedded store only.

--format json prints exactly the HTTP API's JSON; table is aligned for people (numbers and
prices right-aligned); csv has a header row with the JSON names. In table and csv output,
partner strings (descriptions) are escaped as Go's %q does, without the quotes — control
characters such as ESC or NUL as \x1b, \x00, newline as \n, bidirectional overrides as
\u202e, a backslash as \\ — so they cannot act on the terminal (SPEC §5).`,
		Example: `  quotes query instruments
  quotes query candles DJ40J281M584 --last 30m
  quotes query candles DJ40J281M584 --from 2026-11-26T13:00:00Z --to 2026-11-26T14:00:00Z --format csv
  quotes query candles DJ40J281M584 --clickhouse clickhouse://127.0.0.1:9000/default`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newQueryCandlesCmd(a), newQueryInstrumentsCmd(a), newQueryHotCmd(a))
	return cmd
}

func newQueryInstrumentsCmd(a *app) *cobra.Command {
	o := &queryOptions{app: a}
	cmd := &cobra.Command{
		Use:   "instruments",
		Short: "List the active instruments with their latest price",
		Example: `  quotes query instruments --data ./data
  quotes query instruments --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(o.format, "table", "json", "csv"); err != nil {
				return err
			}
			return o.withBackend(cmd.Context(), func(b api.Backend) error {
				ins, err := b.Instruments(cmd.Context())
				if err != nil {
					return err
				}
				return render.Instruments(cmd.OutOrStdout(), o.format, ins)
			})
		},
	}
	o.bind(cmd, "table, json, csv")
	return cmd
}

// candlesQuery is `quotes query candles`.
type candlesQuery struct {
	queryOptions
	last     time.Duration
	from, to string
}

func newQueryCandlesCmd(a *app) *cobra.Command {
	o := &candlesQuery{queryOptions: queryOptions{app: a}}
	cmd := &cobra.Command{
		Use:   "candles ISIN",
		Short: "Print the 1-minute candles of an instrument",
		Long: `candles prints one candle per minute, oldest first. --last 30m (the default) is the 30
minutes ending with the current, still open, minute; --from/--to select the minutes that
start in [from, to). Minutes without quotes after the first quote are flat at the previous
close, with 0 quotes.`,
		Example: `  quotes query candles DJ40J281M584
  quotes query candles DJ40J281M584 --last 2h --format csv
  quotes query candles DJ40J281M584 --from 2026-11-26T13:00:00Z --to 2026-11-26T13:30:00Z --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			isin, ok := feed.ParseISIN(args[0])
			if !ok {
				return usagef("ISIN %q: want 12 characters A-Z, 0-9", args[0])
			}
			if err := checkFormat(o.format, "table", "json", "csv"); err != nil {
				return err
			}
			r, err := candleRange(cmd.Flags().Changed("last"), o.last, o.from, o.to)
			if err != nil {
				return err
			}
			return o.withBackend(cmd.Context(), func(b api.Backend) error {
				cs, err := b.Candles(cmd.Context(), isin, r)
				if errors.Is(err, pipeline.ErrUnknownInstrument) {
					return fmt.Errorf("instrument %s: %w", isin, err)
				}
				if err != nil {
					return err
				}
				return render.Candles(cmd.OutOrStdout(), o.format, cs)
			})
		},
	}
	o.bind(cmd, "table, json, csv")
	cmd.Flags().DurationVar(&o.last, "last", 30*time.Minute, "the minutes ending with the current one (rounded up to whole minutes)")
	cmd.Flags().StringVar(&o.from, "from", "", "first minute (RFC 3339), with --to")
	cmd.Flags().StringVar(&o.to, "to", "", "end of the range, exclusive (RFC 3339), with --from")
	return cmd
}

// candleRange validates --last/--from/--to into a pipeline.CandleRange.
func candleRange(lastSet bool, last time.Duration, from, to string) (pipeline.CandleRange, error) {
	if from != "" || to != "" {
		if lastSet {
			return pipeline.CandleRange{}, usagef("--last and --from/--to exclude each other")
		}
		if from == "" || to == "" {
			return pipeline.CandleRange{}, usagef("--from and --to go together")
		}
		f, err := time.Parse(time.RFC3339Nano, from)
		if err != nil {
			return pipeline.CandleRange{}, usagef("--from %q: want RFC 3339, e.g. 2026-11-26T13:00:00Z", from)
		}
		t, err := time.Parse(time.RFC3339Nano, to)
		if err != nil {
			return pipeline.CandleRange{}, usagef("--to %q: want RFC 3339, e.g. 2026-11-26T14:00:00Z", to)
		}
		if !t.After(f) {
			return pipeline.CandleRange{}, usagef("--to %s is not after --from %s", to, from)
		}
		if t.Sub(f) > 100_000*time.Minute {
			return pipeline.CandleRange{}, usagef("--from/--to span %s: at most 100000 minutes", t.Sub(f))
		}
		return pipeline.CandleRange{From: f.UnixNano(), To: t.UnixNano()}, nil
	}
	return lastRange(last)
}

// lastRange converts a --last / ?last= duration to whole minutes.
func lastRange(last time.Duration) (pipeline.CandleRange, error) {
	if last <= 0 {
		return pipeline.CandleRange{}, usagef("--last %s: must be positive", last)
	}
	n := int((last + time.Minute - 1) / time.Minute)
	if n > 100_000 {
		return pipeline.CandleRange{}, usagef("--last %s: at most 100000 minutes", last)
	}
	return pipeline.CandleRange{Last: n}, nil
}

func checkFormat(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	return usagef("--format %q: want one of %v", format, allowed)
}

// hotQuery is `quotes query hot`.
type hotQuery struct {
	queryOptions
	since  string
	follow bool
	clk    clock.Clock // paces the waits of --follow
}

func newQueryHotCmd(a *app) *cobra.Command {
	o := &hotQuery{queryOptions: queryOptions{app: a}, clk: clock.New()}
	cmd := &cobra.Command{
		Use:   "hot",
		Short: "Print hot-instrument events (moves of more than 10 % against 5 minutes earlier)",
		Long: `hot prints the stored hot events (SPEC §4.5), oldest first. Events are kept at least as
long as the hot window. --since limits them to events at or after a time. Event ids are the
WAL sequence of the triggering quote: stable across restarts and replays.

--follow keeps printing new events as they happen until Ctrl-C: a table with fixed column
widths (header once), csv rows, or one JSON object per line with --format json. It
follows the process that holds --data (ingest, or serve, with its HTTP API; found via
--data/running.json) over its Server-Sent Events stream. When that process stops, the
command says so on stderr and waits for the next one on the same directory, then resumes
after the last event it printed (Last-Event-ID): nothing is printed twice or skipped. On a
directory no process holds, it prints the stored events, says that it is waiting and why —
nothing adds events to a directory no process holds — and follows the next ingest that
starts on it. It never holds the directory while it waits, so that ingest can start.`,
		Example: `  quotes query hot
  quotes query hot --since 2026-11-26T13:00:00Z --format csv
  quotes query hot --follow
  quotes query hot --follow --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(o.format, "table", "json", "csv"); err != nil {
				return err
			}
			if o.clickhouse != "" {
				return &usageError{fmt.Errorf("--clickhouse: %w", export.ErrHotNotInClickHouse)}
			}
			var since int64
			if o.since != "" {
				t, err := time.Parse(time.RFC3339Nano, o.since)
				if err != nil {
					return usagef("--since %q: want RFC 3339, e.g. 2026-11-26T13:00:00Z", o.since)
				}
				since = t.UnixNano()
			}
			if o.follow {
				return o.runFollow(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), since)
			}
			return o.withBackend(cmd.Context(), func(b api.Backend) error {
				events, err := b.HotEvents(cmd.Context(), 0, since, 0)
				if err != nil {
					return err
				}
				return render.Hot(cmd.OutOrStdout(), o.format, events)
			})
		},
	}
	o.bind(cmd, "table, json, csv")
	cmd.Flags().StringVar(&o.since, "since", "", "only events at or after this time (RFC 3339)")
	cmd.Flags().BoolVar(&o.follow, "follow", false, "keep printing new events until interrupted, across restarts of the process that holds --data")
	return cmd
}
