package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/engine"
)

// sinksOptions are the flags of `quotes sinks list|remove`.
type sinksOptions struct {
	app    *app
	data   dataOptions
	format string
	stale  time.Duration
	clock  clock.Clock // injected by tests
}

// newSinksCmd builds `quotes sinks` with its subcommands list and remove.
func newSinksCmd(a *app) *cobra.Command {
	o := &sinksOptions{app: a}
	cmd := &cobra.Command{
		Use:   "sinks",
		Short: "List or remove the sinks registered in a data directory (ClickHouse)",
		Long: `A sink beyond the embedded store (ClickHouse, --clickhouse) is fed from the outbox in
--data and registers there on first use: its delivered position is kept, and outbox
retention keeps every item it has not delivered yet — also while no run configures it (a
restart without --clickhouse), so that it gets everything when it is back.

A registered sink that no run has configured for longer than --sink-stale (default 24h) is
stale: ingest and replay report it on /metrics (quotes_sink_stale,
quotes_sink_last_run_age_seconds) and in the log once an hour, and outbox retention stops
keeping the outbox for it: its undelivered items are dropped, and the range they covered is
recorded ("lost"), for a backfill once the sink is back. Until then retention names it in
the log as the reason the outbox is kept.

The data directory must not be in use: stop the ingest (or replay/serve) holding it first.`,
		Example: `  quotes sinks list --data ./data
  quotes sinks list --data ./data --format json

  # ClickHouse is gone for good: stop keeping the outbox for it
  quotes sinks remove clickhouse --data ./data`,
		Args: cobra.NoArgs,
	}
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List the registered sinks: name, target, delivered position, backlog, last run and success",
		Long: `list prints every sink registered in --data: its name and target, the position it has
delivered (the last WAL sequence whose outbox items it has), its backlog (outbox items not
delivered yet), when a run last ran it and when it last delivered (or was caught up), and
its state: ok, stale (not run for longer than --sink-stale) and what retention dropped for
it while it was stale.`,
		Example: `  quotes sinks list --data ./data
  quotes sinks list --data ./data --format json --sink-stale 1h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withEngine(func(eng *engine.Engine) error {
				sinks, err := eng.Sinks()
				if err != nil {
					return err
				}
				return o.print(cmd.OutOrStdout(), sinks)
			})
		},
	}
	removeCmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Unregister a sink: the outbox is no longer kept for it",
		Long: `remove forgets the sink NAME (see list): its position, its last run and its lost record.
Outbox retention no longer keeps items for it, and what only it still needed is dropped at
once. A later run configuring it again starts from what the outbox holds then: backfill the
gap (quotes backfill --clickhouse …).`,
		Example: `  quotes sinks remove clickhouse --data ./data`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withEngine(func(eng *engine.Engine) error {
				if err := eng.RemoveSink(args[0]); err != nil {
					if errors.Is(err, engine.ErrUnknownSink) {
						return usagef("%v (see `quotes sinks list`)", err)
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "sink %s removed from %s\n", args[0], o.data.dir)
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{listCmd, removeCmd} {
		o.data.bindDir(c.Flags())
	}
	listCmd.Flags().StringVar(&o.format, "format", "table", "output format: table or json")
	listCmd.Flags().DurationVar(&o.stale, "sink-stale", engine.DefaultSinkStale, "report sinks not run for longer than this as stale")
	cmd.AddCommand(listCmd, removeCmd)
	return cmd
}

// withEngine opens --data (read-only: no sinks run, nothing is appended) and runs fn on it.
func (o *sinksOptions) withEngine(fn func(*engine.Engine) error) error {
	if o.format != "" && o.format != "table" && o.format != "json" {
		return usagef("--format %q: want table or json", o.format)
	}
	if o.data.dir == "" {
		return usagef("--data must not be empty")
	}
	eopts, err := o.data.engineOptions(o.app.logger, nil)
	if err != nil {
		return err
	}
	eopts.ReadOnly = true
	if o.stale != 0 {
		eopts.SinkStale = o.stale
	}
	if o.clock != nil {
		eopts.Clock = o.clock
	}
	eng, err := engine.Open(eopts)
	if errors.Is(err, engine.ErrLocked) {
		return fmt.Errorf("%w; stop it to list or remove its sinks (its /metrics has quotes_sink_* meanwhile)", err)
	}
	if errors.Is(err, engine.ErrNoDataDir) {
		return &usageError{err}
	}
	if err != nil {
		return engineError(err)
	}
	err = fn(eng)
	if cerr := eng.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", o.data.dir, cerr)
	}
	return err
}

// sinkJSON is one sink in `sinks list --format json`.
type sinkJSON struct {
	Name        string    `json:"name"`
	Target      string    `json:"target"`
	Delivered   uint64    `json:"delivered"`
	Backlog     int       `json:"backlog"`
	LastRun     *string   `json:"lastRun"`
	LastSuccess *string   `json:"lastSuccess"`
	Stale       bool      `json:"stale"`
	Lost        *lostJSON `json:"lost,omitempty"`
}

type lostJSON struct {
	Items uint64 `json:"items"`
	From  string `json:"from"`
	To    string `json:"to"`
}

func optTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

func (o *sinksOptions) print(w io.Writer, sinks []engine.SinkInfo) error {
	if o.format == "json" {
		out := make([]sinkJSON, 0, len(sinks))
		for _, s := range sinks {
			j := sinkJSON{Name: s.Name, Target: s.Target, Delivered: s.Delivered, Backlog: s.Backlog,
				LastRun: optTime(s.LastRun), LastSuccess: optTime(s.LastSuccess), Stale: s.Stale}
			if !s.Lost.Empty() {
				j.Lost = &lostJSON{Items: s.Lost.Items, From: fmtMinute(s.Lost.From), To: fmtMinute(s.Lost.To + int64(time.Minute))}
			}
			out = append(out, j)
		}
		b, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode sinks: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if len(sinks) == 0 {
		_, err := fmt.Fprintln(w, "no sinks registered (only the embedded store)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTARGET\tDELIVERED\tBACKLOG\tLAST RUN\tLAST SUCCESS\tSTATE")
	for _, s := range sinks {
		state := "ok"
		if s.Stale {
			state = "stale"
		}
		if !s.Lost.Empty() {
			state += fmt.Sprintf("; %d items dropped while stale (backfill %s…%s)", s.Lost.Items, fmtMinute(s.Lost.From), fmtMinute(s.Lost.To+int64(time.Minute)))
		}
		target := s.Target
		if target == "" {
			target = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\tseq %d\t%d\t%s\t%s\t%s\n", escapeText(s.Name, 64), escapeText(target, 80), s.Delivered, s.Backlog,
			orNever(s.LastRun), orNever(s.LastSuccess), state)
	}
	return tw.Flush()
}

func fmtMinute(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

func orNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
