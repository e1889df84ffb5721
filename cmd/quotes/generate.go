package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/simulator"
)

// generateOptions are the flags of `quotes generate`.
type generateOptions struct {
	app           *app
	listen        string
	instruments   int
	quoteInterval time.Duration
	churn         float64
	seed          uint64
	duration      time.Duration
	record        string
	speed         string
	start         string
	skip          time.Duration
	queueLimit    int
}

// newGenerateCmd builds `quotes generate`, the partner simulator.
func newGenerateCmd(a *app) *cobra.Command {
	o := &generateOptions{app: a}
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Run a partner-compatible feed simulator, or record its feed to a file",
		Long: `generate simulates the partner: it serves the websocket endpoints /instruments and
/quotes (SPEC §2) on --listen, with --instruments active instruments that quote every
--quote-interval on average (jittered, spread evenly), random-walk prices with occasional
jumps of more than 10 % (hot instruments), and churn: --churn times a second a random
instrument is deleted and a new one added, 20 % of the new ones reusing a recently deleted
ISIN.

The feed is deterministic: the same --seed (and other flags) gives the same feed. Without
--seed a random seed is used and logged, so a run can be reproduced. A generator restarted
with the same flags starts the same feed over (the same initial instruments and prices);
with --skip D it begins D into the feed instead — the part before is generated but not sent
— so --skip = how long the previous one ran continues where it stopped.

--record FILE (- for stdout) also writes the feed as recorded JSONL (SPEC §3), with
synthetic timestamps starting at --start, so a recording does not depend on when or how
fast it was made. With --speed max the recording is written as fast as possible and
nothing is served (--duration is required then); with a real-time speed (1x, 10x, …) the
simulator serves and records at the same time.

A client that cannot keep up with the stream is disconnected once --client-queue messages
are waiting for it (close status 1008), so a slow client never stalls the feed or grows the
simulator's memory.`,
		Example: `  # serve a partner feed on ws://127.0.0.1:8032 (/instruments and /quotes)
  quotes generate

  # the spec's scale: 50,000 instruments, each quoting every second on average
  quotes generate --instruments 50000 --quote-interval 1s

  # record 3 minutes of feed as fast as possible, reproducibly
  quotes generate --record feed.jsonl --instruments 2000 --duration 3m --speed max --seed 42

  # serve at 10x real time for 10 (virtual) minutes and record what was served
  quotes generate --speed 10x --duration 10m --record served.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", simulator.DefaultAddr, "address to serve /instruments and /quotes on (port 0: any free port)")
	f.IntVar(&o.instruments, "instruments", 1000, "number of active instruments")
	f.DurationVar(&o.quoteInterval, "quote-interval", 2*time.Second, "mean time between two quotes of one instrument")
	f.Float64Var(&o.churn, "churn", 0, "churn events per second, each deleting one instrument and adding one (0 disables; default instruments/2000, e.g. 0.5 for 1000)")
	f.Uint64Var(&o.seed, "seed", 0, "seed of the deterministic feed (default random, logged)")
	f.DurationVar(&o.duration, "duration", 0, "length of the feed in feed time (0: forever; required with --record and --speed max)")
	f.StringVar(&o.record, "record", "", "also write the feed as JSONL to `FILE` (- for stdout)")
	f.StringVar(&o.speed, "speed", "1x", "pace: 1x is real time, 10x ten times faster, max as fast as possible (only with --record)")
	f.StringVar(&o.start, "start", simulator.DefaultStart().Format(time.RFC3339), "feed time of the first message, RFC 3339 or now: the timestamps of --record")
	f.DurationVar(&o.skip, "skip", 0, "begin this far into the feed (generated, not sent): a generator restarted with the same flags and --skip = how long the previous one ran continues its feed")
	f.IntVar(&o.queueLimit, "client-queue", simulator.DefaultQueueLimit, "messages queued for one client before it is dropped as too slow")
	return cmd
}

// options turns the flags into simulator options, with usage errors naming the flag.
func (o *generateOptions) options(cmd *cobra.Command) (simulator.Options, error) {
	opts := simulator.DefaultOptions()
	if o.instruments < 1 || o.instruments > simulator.MaxInstruments {
		return opts, usagef("--instruments %d: want 1..%d", o.instruments, simulator.MaxInstruments)
	}
	opts.Instruments = o.instruments
	if o.quoteInterval < simulator.MinQuoteInterval {
		return opts, usagef("--quote-interval %v: want at least %v", o.quoteInterval, simulator.MinQuoteInterval)
	}
	opts.QuoteInterval = o.quoteInterval
	opts.Churn = simulator.DefaultChurn(o.instruments)
	if cmd.Flags().Changed("churn") {
		if math.IsNaN(o.churn) || o.churn < 0 || o.churn > simulator.MaxChurn {
			return opts, usagef("--churn %v: want 0..%v events per second", o.churn, simulator.MaxChurn)
		}
		opts.Churn = o.churn
	}
	opts.Seed = o.seed
	if !cmd.Flags().Changed("seed") {
		opts.Seed = rand.Uint64()
	}
	if o.duration < 0 {
		return opts, usagef("--duration %v: want 0 (forever) or more", o.duration)
	}
	opts.Duration = o.duration
	if o.skip < 0 || o.duration > 0 && o.skip >= o.duration {
		return opts, usagef("--skip %v: want 0 or more, and less than --duration", o.skip)
	}
	opts.Skip = o.skip
	speed, err := simulator.ParseSpeed(o.speed)
	if err != nil {
		return opts, usagef("--speed: %w", err)
	}
	opts.Speed = speed
	if strings.EqualFold(o.start, "now") {
		opts.Start = time.Now().UTC().Truncate(time.Millisecond)
	} else {
		t, err := time.Parse(time.RFC3339Nano, o.start)
		if err != nil {
			return opts, usagef("--start %q: want an RFC 3339 time like 2026-01-01T00:00:00Z, or now", o.start)
		}
		opts.Start = t.UTC()
	}
	if speed == simulator.SpeedMax {
		if o.record == "" {
			return opts, usagef("--speed max needs --record: a served feed needs a real-time speed like 1x or 10x")
		}
		if o.duration == 0 {
			return opts, usagef("--speed max with --record needs --duration (a feed without end would never finish)")
		}
	}
	if o.queueLimit < 1 {
		return opts, usagef("--client-queue %d: want at least 1", o.queueLimit)
	}
	if err := opts.Validate(); err != nil {
		return opts, &usageError{err}
	}
	return opts, nil
}

func (o *generateOptions) run(ctx context.Context, cmd *cobra.Command) (err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	opts, oerr := o.options(cmd)
	if oerr != nil {
		return oerr
	}
	log := o.app.logger

	// The recording and where messages for the user go (stderr when stdout is the recording).
	var rec io.Writer
	info := cmd.OutOrStdout()
	if o.record != "" {
		if o.record == "-" {
			rec = cmd.OutOrStdout()
			info = cmd.ErrOrStderr()
		} else {
			f, err := os.Create(o.record)
			if err != nil {
				return usagef("--record: %w", err)
			}
			rec = f
			defer func() {
				if cerr := f.Close(); cerr != nil && err == nil {
					err = fmt.Errorf("generate: close recording: %w", cerr)
				}
			}()
		}
	}
	log.Info("generate: feed", "instruments", opts.Instruments, "quote_interval", opts.QuoteInterval,
		"churn_per_s", opts.Churn, "seed", opts.Seed, "duration", opts.Duration,
		"speed", simulator.FormatSpeed(opts.Speed), "start", opts.Start.Format(time.RFC3339Nano))

	began := time.Now()
	var stats simulator.Stats
	if opts.Speed == simulator.SpeedMax {
		stats, err = simulator.Record(ctx, rec, opts, nil)
		if err != nil {
			return fmt.Errorf("generate: record %s: %w", o.record, err)
		}
	} else {
		srv, serr := simulator.NewServer(simulator.ServerConfig{
			Options:    opts,
			Addr:       o.listen,
			Clock:      clock.New(),
			Logger:     log,
			Record:     rec,
			QueueLimit: o.queueLimit,
		})
		if serr != nil {
			return fmt.Errorf("generate: --listen %s: %w", o.listen, serr)
		}
		fmt.Fprintf(info, "quotes generate: listening on %s (/instruments, /quotes)\n", srv.URL())
		log.Info("generate: listening", "url", srv.URL())
		stats, err = srv.Run(ctx)
		if err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	}
	elapsed := time.Since(began)
	attrs := []any{"messages", stats.Messages, "adds", stats.Adds, "deletes", stats.Deletes,
		"quotes", stats.Quotes, "reused_isins", stats.Reused, "elapsed", elapsed.Round(time.Millisecond)}
	if s := elapsed.Seconds(); s > 0 {
		attrs = append(attrs, "messages_per_s", int64(float64(stats.Messages)/s))
	}
	if o.record != "" {
		attrs = append(attrs, "record", o.record)
	}
	log.Info("generate: done", attrs...)
	return nil
}
