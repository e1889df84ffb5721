package source_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/simulator"
	"github.com/quotesdev/quotes/source"
)

// TestClientAgainstSimulator connects the project's client to the project's partner
// simulator (the real websocket protocol, real time, loopback) and checks what arrives: the
// snapshot of every active instrument, ADD and DELETE events at the churn rate, and quotes —
// only for active instruments — at the configured rate.
func TestClientAgainstSimulator(t *testing.T) {
	if testing.Short() {
		t.Skip("runs in real time for a few seconds; skipped in -short mode")
	}
	const (
		instruments = 200
		interval    = 250 * time.Millisecond
		churn       = 10.0 // per second
		run         = 2 * time.Second
	)
	opts := simulator.DefaultOptions()
	opts.Instruments, opts.QuoteInterval, opts.Churn, opts.Seed, opts.Speed = instruments, interval, churn, 11, 1
	srv, err := simulator.NewServer(simulator.ServerConfig{Options: opts, Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srvDone := make(chan struct{})
	go func() { defer close(srvDone); srv.Run(ctx) }()
	defer func() { cancel(); <-srvDone }()

	client, err := source.New(source.DefaultOptions("ws://" + srv.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu                    sync.Mutex
		adds, deletes, quotes int
		active                = map[feed.ISIN]bool{}
		recentlyDeleted       = map[feed.ISIN]time.Time{}
		inactiveQuotes        int
		// suspects are quotes for ISINs not active (yet): SPEC §2 lets a quote arrive
		// shortly before its ADD too, so they only count if no ADD follows within 500ms.
		suspects  = map[feed.ISIN][]time.Time{}
		lastTS    int64
		unordered int
	)
	cctx, ccancel := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() {
		runDone <- client.Run(cctx, func(batch []feed.Message) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range batch {
				if m.TS < lastTS {
					unordered++
				}
				lastTS = m.TS
				switch m.Kind {
				case feed.KindAdd:
					adds++
					active[m.ISIN] = true
					for _, at := range suspects[m.ISIN] {
						if time.Since(at) > 500*time.Millisecond {
							inactiveQuotes++
						}
					}
					delete(suspects, m.ISIN)
				case feed.KindDelete:
					deletes++
					delete(active, m.ISIN)
					recentlyDeleted[m.ISIN] = time.Now()
				case feed.KindQuote:
					quotes++
					// Streams are separate connections: a quote may trail its DELETE briefly.
					if !active[m.ISIN] && time.Since(recentlyDeleted[m.ISIN]) > 500*time.Millisecond {
						suspects[m.ISIN] = append(suspects[m.ISIN], time.Now())
					}
				}
			}
			return nil
		})
	}()
	// The snapshot first, however long a busy machine takes (failing only at the test's
	// deadline); then real time is measured.
	var deadline <-chan time.Time
	if d, ok := t.Deadline(); ok {
		deadline = time.After(time.Until(d) * 19 / 20)
	}
	for {
		mu.Lock()
		snap := adds
		mu.Unlock()
		if snap >= instruments {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("test deadline: snapshot incomplete, %d of %d ADDs", snap, instruments)
		case <-time.After(10 * time.Millisecond):
		}
	}
	mu.Lock()
	adds0, deletes0, quotes0 := adds, deletes, quotes
	mu.Unlock()
	time.Sleep(run) // measuring real-time rates: the wall clock is the thing under test
	mu.Lock()
	gotAdds, gotDeletes, gotQuotes := adds-adds0, deletes-deletes0, quotes-quotes0
	for _, ats := range suspects { // no ADD followed (yet)
		for _, at := range ats {
			if time.Since(at) > 500*time.Millisecond {
				inactiveQuotes++
			}
		}
	}
	nActive, bad, unord := len(active), inactiveQuotes, unordered
	mu.Unlock()
	ccancel()
	if err := <-runDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}

	wantQuotes := float64(instruments) * run.Seconds() / interval.Seconds()
	if q := float64(gotQuotes); q < 0.7*wantQuotes || q > 1.3*wantQuotes {
		t.Errorf("quotes in %s: %d, want about %.0f (%d instruments every %s)", run, gotQuotes, wantQuotes, instruments, interval)
	}
	wantChurn := churn * run.Seconds()
	for name, n := range map[string]int{"ADD": gotAdds, "DELETE": gotDeletes} {
		if float64(n) < 0.4*wantChurn || float64(n) > 2*wantChurn {
			t.Errorf("%s events in %s: %d, want about %.0f (churn %.0f/s)", name, run, n, wantChurn, churn)
		}
	}
	if nActive != instruments {
		t.Errorf("active instruments after churn: %d, want %d", nActive, instruments)
	}
	if bad > 0 {
		t.Errorf("%d quotes for instruments that were not active", bad)
	}
	if unord > 0 {
		t.Errorf("%d messages stamped earlier than the message before them", unord)
	}
	if st := client.Stats(); st.Rejected() != 0 {
		t.Errorf("the simulator's frames were rejected: %+v", st)
	}
	t.Logf("in %s: %d quotes, %d ADD, %d DELETE", run, gotQuotes, gotAdds, gotDeletes)
}
