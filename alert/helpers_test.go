package alert

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/wal"
)

// t0 is the start of the test feeds.
var t0 = time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)

// hotFeed makes a feed of n instruments quoting every 10 s for the given minutes, each
// jumping between 100 and 125 every 6 minutes (phase-shifted per instrument), so each jump
// is one hot event (a rising edge against the price 5 minutes earlier); instrument 0 is
// deleted and re-added half way (a reused ISIN: a new incarnation).
func hotFeed(t testing.TB, n, minutes int) []feed.Message {
	t.Helper()
	isins := make([]feed.ISIN, n)
	var msgs []feed.Message
	for i := range isins {
		id, ok := feed.ParseISIN(fmt.Sprintf("HOT%09d", i))
		if !ok {
			t.Fatal("bad ISIN")
		}
		isins[i] = id
		msgs = append(msgs, feed.Message{TS: t0.UnixNano(), Kind: feed.KindAdd, ISIN: id, Description: fmt.Sprintf("instrument %d", i)})
	}
	const step = 10 * time.Second
	for k := 0; k < minutes*6; k++ {
		ts := t0.Add(time.Duration(k) * step)
		if k == minutes*3 {
			msgs = append(msgs,
				feed.Message{TS: ts.UnixNano(), Kind: feed.KindDelete, ISIN: isins[0], Description: "instrument 0"},
				feed.Message{TS: ts.UnixNano(), Kind: feed.KindAdd, ISIN: isins[0], Description: "instrument 0 again"})
		}
		for i, id := range isins {
			price := feed.Price(100_000_000)
			if (k+i*5)/36%2 == 1 { // 36 steps = 6 minutes
				price = 125_000_000
			}
			msgs = append(msgs, feed.Message{TS: ts.Add(time.Duration(i) * time.Millisecond).UnixNano(), Kind: feed.KindQuote, ISIN: id, Price: price + feed.Price(i)})
		}
	}
	return msgs
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openPipeline(t testing.TB, dir string) (*wal.Log, *pipeline.Pipeline) {
	t.Helper()
	log, err := wal.Open(wal.DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	opts := pipeline.DefaultOptions()
	opts.CheckpointEvery = time.Minute
	opts.Logger = quietLogger()
	p, err := pipeline.Open(log, opts)
	if err != nil {
		log.Close()
		t.Fatal(err)
	}
	return log, p
}

// appendAll applies msgs in batches of batch messages.
func appendAll(t testing.TB, p *pipeline.Pipeline, msgs []feed.Message, batch int) {
	t.Helper()
	for i := 0; i < len(msgs); i += batch {
		if err := p.Append(msgs[i:min(i+batch, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
}

// storedEvents returns every hot event in the store, in id order.
func storedEvents(t testing.TB, p *pipeline.Pipeline) []hot.Event {
	t.Helper()
	evs, err := p.HotEvents(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// timerClock is a mock clock that reports every timer it creates (after creating it, so
// that advancing the mock by the reported duration fires it).
type timerClock struct {
	*clock.Mock
	timers chan time.Duration
}

func newTimerClock() *timerClock {
	m := clock.NewMock()
	m.Set(t0)
	return &timerClock{Mock: m, timers: make(chan time.Duration, 16)}
}

func (c *timerClock) Timer(d time.Duration) *clock.Timer {
	t := c.Mock.Timer(d)
	c.timers <- d
	return t
}

// holdOutbox registers a consumer that never delivers, so that retention keeps the outbox
// for sinks the test creates later.
func holdOutbox(t testing.TB, p *pipeline.Pipeline) {
	t.Helper()
	if _, err := p.Store().RegisterConsumer("hold"); err != nil {
		t.Fatal(err)
	}
}
