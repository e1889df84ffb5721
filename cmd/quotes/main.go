// Command quotes turns a partner's live price feed into 1-minute candlesticks and hot
// instrument alerts, durably. See README.md and docs/SPEC.md §5 for the subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signalContext()
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// signalError is the cause of a context canceled by a signal.
type signalError struct{ sig os.Signal }

func (e *signalError) Error() string { return "received " + e.sig.String() }

// signalContext returns a context canceled, with a *signalError cause, by the first SIGINT
// or SIGTERM; a second one gets the default action (the process ends at once).
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			signal.Stop(sigs)
			cancel(&signalError{sig: s})
		case <-done:
		}
	}()
	return ctx, func() { close(done); signal.Stop(sigs); cancel(nil) }
}

// signalOf returns the signal that canceled ctx, or SIGINT when it ended otherwise.
func signalOf(ctx context.Context) os.Signal {
	var se *signalError
	if errors.As(context.Cause(ctx), &se) {
		return se.sig
	}
	return os.Interrupt
}

// run executes the command line args and returns the process exit code: 0 success,
// 1 runtime failure, 2 usage error, 128+N after signal N interrupted a replay (SPEC §5).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(root.ErrOrStderr(), "quotes:", err)
	var ue *usageError
	var ie *errInterrupted
	switch {
	case errors.As(err, &ue) || isCobraUsageError(err):
		return 2
	case errors.As(err, &ie):
		if s, ok := ie.sig.(syscall.Signal); ok {
			return 128 + int(s)
		}
		return 130
	}
	return 1
}
