package engine

import (
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
)

// TestCandleRetention: with --candle-retention 10m, a 40-minute workload leaves only the
// candles of the last ten minutes (before the watermark) in the store, but only once the
// registered outbox consumer has them: while it has not delivered them they stay.
func TestCandleRetention(t *testing.T) {
	path, msgs := recording(t, 10, 40*time.Minute, 0)
	last := msgs[len(msgs)-1].TS
	for _, delivered := range []bool{false, true} {
		opts := testOptions(t, "data")
		opts.CandleRetention = 10 * time.Minute
		opts.CheckpointEvery = time.Minute
		e := mustOpen(t, opts)
		if _, err := e.Store().RegisterConsumer("ch"); err != nil { // a sink that has delivered nothing
			t.Fatal(err)
		}
		replayFile(t, e, path, ReplayOptions{Batch: 500})
		if delivered {
			applied, err := e.Store().Applied()
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Store().CompleteIntent("ch", applied); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		// The final checkpoint of Close runs a retention pass, unless one of the replay's
		// was still running (then it is skipped): one more open and close runs it for sure.
		if err := mustOpen(t, opts).Close(); err != nil {
			t.Fatal(err)
		}
		opts.ReadOnly = true
		e = mustOpen(t, opts)
		oldest, n := int64(1<<62), 0
		if err := e.Store().ScanCandles(func(c aggregate.Candle) error {
			oldest, n = min(oldest, c.Minute), n+1
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		e.Close()
		if n == 0 {
			t.Fatal("no candles")
		}
		cut := last - int64(10*time.Minute)
		switch {
		case delivered && oldest < cut:
			t.Errorf("delivered: oldest candle %s, before the retention cut %s", fmtTS(oldest), fmtTS(cut))
		case delivered && oldest > cut+int64(2*time.Minute):
			t.Errorf("delivered: oldest candle %s, more than the cut %s removed", fmtTS(oldest), fmtTS(cut))
		case !delivered && oldest > msgs[0].TS+int64(time.Minute):
			t.Errorf("undelivered: oldest candle %s, but the sink has not delivered it", fmtTS(oldest))
		}
	}
}
