package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/engine"
)

// waitRecovered waits, up to wait, until the process rp (holding the data directory)
// answers queries: right after a restart it first recovers its state and answers 503. It
// says so on w once.
func waitRecovered(ctx context.Context, c *api.Client, rp engine.Running, wait time.Duration, w io.Writer) error {
	deadline := time.Now().Add(wait)
	said := false
	for {
		_, err := c.Instruments(ctx)
		if !errors.Is(err, api.ErrNotReady) {
			return nil // ready, or an error the query itself will report
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("`quotes %s` (pid %d) holding the data directory is still recovering after --wait %s: %w", rp.Command, rp.PID, wait, err)
		}
		if !said {
			fmt.Fprintf(w, "quotes: `quotes %s` (pid %d) is recovering its state (%v); waiting up to --wait %s\n", rp.Command, rp.PID, err, wait)
			said = true
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
