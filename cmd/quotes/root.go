package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/quotesdev/quotes/internal/memlimit"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// app is what the subcommands share: the logger the root command builds from
// --log-level/--log-format before any of them runs. Each command tree has its own, so
// in-process tests share no global state.
type app struct {
	logger *slog.Logger
}

// rootOptions are the flags every subcommand shares.
type rootOptions struct {
	logLevel   string
	logFormat  string
	cpuProfile string
	memProfile string
	stopProf   func()
	// memBudget is --memory-budget (internal/memlimit); stopMem ends its governor.
	memBudget memlimit.Budget
	stopMem   context.CancelFunc
}

// newRootCmd builds the whole command tree. Each subcommand is a constructor with its flags
// bound to its own options struct: no globals, no init().
func newRootCmd() *cobra.Command {
	opts := &rootOptions{memBudget: memlimit.DefaultBudget}
	a := &app{logger: slog.New(slog.DiscardHandler)}
	root := &cobra.Command{
		Use:   "quotes",
		Short: "Turn a partner's price feed into 1-minute candles and hot-instrument alerts",
		Long: `quotes ingests a partner's instrument and quote websockets, writes every message to a
write-ahead log, aggregates 1-minute candlesticks, flags hot instruments (a >10% move
against the price 5 minutes earlier) and serves it all from the shell and over HTTP.

Every flag can also be set through the environment as QUOTES_<FLAG>, e.g.
QUOTES_DATA=/var/lib/quotes or QUOTES_LOG_LEVEL=debug; a flag on the command line wins.`,
		Example: `  # a simulated partner, and ingest of it with the HTTP API on 127.0.0.1:5000
  quotes generate &
  quotes ingest --source ws://127.0.0.1:8032 --data ./data

  # from another shell, while ingest runs
  quotes query instruments --data ./data
  quotes query candles DJ40J281M584 --last 30m --data ./data

  # record 3 minutes of feed reproducibly, then replay it (resumable after a crash)
  quotes generate --record feed.jsonl --duration 3m --speed max --seed 42
  quotes replay feed.jsonl --data ./replayed`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			logger, err := newLogger(cmd.ErrOrStderr(), opts.logLevel, opts.logFormat)
			if err != nil {
				return err
			}
			a.logger = logger
			opts.startMemoryBudget()
			return opts.startProfiles()
		},
		PersistentPostRunE: func(*cobra.Command, []string) error {
			if opts.stopMem != nil {
				opts.stopMem()
			}
			return opts.stopProfiles()
		},
	}
	root.PersistentFlags().StringVar(&opts.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&opts.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile to this file (for go tool pprof)")
	root.PersistentFlags().StringVar(&opts.memProfile, "memprofile", "", "write a heap profile to this file at exit")
	root.PersistentFlags().Var(&opts.memBudget, "memory-budget", fmt.Sprintf("soft limit of the Go heap (GOMEMLIMIT), raised above the live heap when that is larger (by what is allocated in %v, between 1/%.0f and 1/%.0f of it); 0: none. An explicit GOMEMLIMIT in the environment wins",
		memlimit.AllocHorizon, 1/memlimit.MinHeadroom, 1/memlimit.MaxHeadroom))
	root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentFlags().MarkHidden("memprofile")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	root.AddCommand(
		// subcommands are added here, one constructor each
		newGenerateCmd(a),
		newIngestCmd(a),
		newReplayCmd(a),
		newQueryCmd(a),
		newServeCmd(a),
		newSchemaCmd(a),
		newBackfillCmd(a),
		newAlertsCmd(a),
		newSinksCmd(a),
	)
	return root
}

// usageError marks an error as the user's (bad flag, argument or input file): exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error (exit code 2) with a formatted message.
func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// isCobraUsageError recognises the argument errors cobra returns itself.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") ||
		strings.Contains(msg, "arg(s)") ||
		strings.HasPrefix(msg, "required flag")
}

// applyEnv sets every flag that was not given on the command line from QUOTES_<FLAG>
// (upper case, dashes as underscores), if that variable is set.
func applyEnv(cmd *cobra.Command) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := "QUOTES_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			errs = append(errs, usagef("%s=%q: %w", name, v, err))
		}
	})
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

// startMemoryBudget runs the memory governor unless GOMEMLIMIT is set in the environment
// (then the runtime already applies the user's limit) or the budget is 0.
func (o *rootOptions) startMemoryBudget() {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok || o.memBudget <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	memlimit.Run(ctx, memlimit.Options{Budget: int64(o.memBudget)})
	o.stopMem = cancel
}

func (o *rootOptions) startProfiles() error {
	if o.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(o.cpuProfile)
	if err != nil {
		return usagef("--cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("start CPU profile: %w", err)
	}
	o.stopProf = func() { pprof.StopCPUProfile(); f.Close() }
	return nil
}

func (o *rootOptions) stopProfiles() error {
	if o.stopProf != nil {
		o.stopProf()
		o.stopProf = nil
	}
	if o.memProfile == "" {
		return nil
	}
	f, err := os.Create(o.memProfile)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	defer f.Close()
	return pprof.WriteHeapProfile(f)
}
