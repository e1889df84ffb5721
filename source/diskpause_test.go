package source

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/diskguard"
	"github.com/quotesdev/quotes/feed"
)

// TestDiskLowPausesInput wires a diskguard.Watcher (injected file system) to a Client the way
// the engine does: a low disk pauses the partner connections, deliver waits for space, and
// when space is back the client reconnects and nothing accepted is lost.
func TestDiskLowPausesInput(t *testing.T) {
	const mib = 1 << 20
	var free atomic.Uint64
	free.Store(500 * mib)
	stat := func(string) (diskguard.Usage, error) {
		return diskguard.Usage{Free: free.Load(), Total: 1000 * mib}, nil
	}

	s1, s2 := newScript(), newScript()
	ms := newMockServer(t, nil, scripted(s1, s2))
	defer ms.close()
	clk := clock.NewMock()
	c := manual(t, ms, func(o *Options) { o.Clock = clk })
	w, err := diskguard.New(diskguard.Options{Dir: "/data", Threshold: diskguard.Threshold{Bytes: 100 * mib}, Stat: stat,
		Clock: clock.NewMock(), OnChange: func(s diskguard.State) {
			if s.Low {
				c.Pause(s.Reason)
			} else {
				c.Resume()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []feed.Message
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(batch []feed.Message) error {
			if err := w.Wait(ctx); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			got = append(got, batch...)
			return nil
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	eventually(t, "connected", c.Connected)
	for i := 1; i <= 3; i++ {
		s1.frames <- quoteFrame(isinA, strconv.Itoa(i))
	}
	eventually(t, "3 delivered", func() bool { return delivered() == 3 })

	free.Store(50 * mib) // the disk fills up
	if st, err := w.Check(); err != nil || !st.Low {
		t.Fatalf("Check: %+v, %v", st, err)
	}
	eventually(t, "paused", func() bool {
		st := c.Stats()
		return st.Paused && !st.Instruments.Connected && !st.Quotes.Connected
	})
	if w.Err() == nil {
		t.Fatal("readiness does not report the low disk")
	}
	for i := 0; i < 5; i++ {
		clk.Add(DefaultBackoffMax)
	}
	if n := ms.count("/quotes"); n != 1 {
		t.Fatalf("%d connections while the disk is low", n)
	}

	free.Store(500 * mib) // space is freed
	if st, _ := w.Check(); st.Low {
		t.Fatalf("still low: %+v", st)
	}
	eventually(t, "reconnected", func() bool { return c.Connected() && ms.count("/quotes") == 2 })
	s2.frames <- quoteFrame(isinA, "4")
	eventually(t, "4 delivered", func() bool { return delivered() == 4 })
	mu.Lock()
	defer mu.Unlock()
	for i, m := range got {
		if m.Price.String() != strconv.Itoa(i+1) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	if st := c.Stats(); st.Delivered != st.Quotes.Accepted {
		t.Fatalf("accepted %d, delivered %d", st.Quotes.Accepted, st.Delivered)
	}
}
