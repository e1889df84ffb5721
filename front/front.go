// Package front is the routing front of a sharded deployment (SPEC §11, `quotes serve
// --shards URL,…`): one HTTP API over N `quotes` instances, instance K running with
// `--shard K/N`. It is stateless — any number of copies can run — and answers like one
// instance holding every ISIN:
//
//   - everything about one ISIN (/instruments/{isin}/candles, /last30m/{isin},
//     /candlesticks?isin=) goes to the instance that owns it (package shard), the open
//     minute included;
//   - GET /instruments (the full array and the paged, searchable form) merges every
//     instance's instruments (Backend, served by package api's handler);
//   - GET /hot merges every instance's hot events: the JSON form by event time, the
//     Server-Sent Events stream as they arrive, each event with a resume id (Cursor) that
//     covers every shard;
//   - /readyz is ready when every instance is; / serves the web page.
//
// Hot event ids are WAL sequences, so they are per instance: the JSON objects keep their
// instance's id, and the merged stream's SSE id is a Cursor, "ID0-ID1-…-IDn-1": for each
// shard in order, the id of the last event of that shard delivered before (and including)
// this one, 0 for none. A client that reconnects with it as Last-Event-ID (or
// ?lastEventId=) gets, from every shard, exactly the events after its component: no gap, no
// duplicate. The JSON form takes ?after=CURSOR and answers the cursor after its events in
// the header X-Hot-Cursor.
package front

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/shard"
)

// Cursor is the resume id of the merged hot events: Cursor[k] is the id of the last event
// of shard k delivered (0: none yet).
type Cursor []uint64

// String returns "ID0-ID1-…".
func (c Cursor) String() string {
	var b strings.Builder
	for i, id := range c {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.FormatUint(id, 10))
	}
	return b.String()
}

// ErrCursor is wrapped by ParseCursor's errors.
var ErrCursor = errors.New("invalid hot event cursor")

// ParseCursor reads a Cursor of n shards.
func ParseCursor(s string, n int) (Cursor, error) {
	parts := strings.Split(s, "-")
	if len(parts) != n {
		return nil, fmt.Errorf("%w %q: want %d event ids joined by '-', one per shard", ErrCursor, clip(s), n)
	}
	c := make(Cursor, n)
	for i, p := range parts {
		id, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w %q: part %d is not an event id", ErrCursor, clip(s), i)
		}
		c[i] = id
	}
	return c, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Backend is an api.Backend over the shards' APIs: instruments merged, candles from the
// owning shard. Hot events are the front's Handler's (HotEvents here merges them by time
// for completeness, without a cursor).
type Backend struct {
	Shards []*api.Client
}

// Instruments implements api.Backend: every shard's, sorted by ISIN.
func (b Backend) Instruments(ctx context.Context) ([]api.Instrument, error) {
	lists := make([][]api.Instrument, len(b.Shards))
	err := b.each(ctx, func(ctx context.Context, k int, c *api.Client) error {
		var err error
		lists[k], err = c.Instruments(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []api.Instrument
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.SortFunc(out, func(a, b api.Instrument) int { return strings.Compare(a.ISIN, b.ISIN) })
	return out, nil
}

// Candles implements api.Backend: the owning shard's.
func (b Backend) Candles(ctx context.Context, isin feed.ISIN, r pipeline.CandleRange) ([]api.Candle, error) {
	return b.Shards[shard.Of(isin, len(b.Shards))].Candles(ctx, isin, r)
}

// HotEvents implements api.Backend: events after afterID (compared with each shard's own
// ids, so use 0) of every shard, by time.
func (b Backend) HotEvents(ctx context.Context, afterID uint64, since int64, limit int) ([]hot.Event, error) {
	c := make(Cursor, len(b.Shards))
	for i := range c {
		c[i] = afterID
	}
	evs, _, err := b.hotEvents(ctx, c, since, limit)
	return evs, err
}

// HotEventsChanged implements api.Backend (a poll, like api.Client's).
func (b Backend) HotEventsChanged() <-chan struct{} {
	if len(b.Shards) == 0 {
		return make(chan struct{})
	}
	return b.Shards[0].HotEventsChanged()
}

// hotEvents returns every shard's events after c, merged by (ts, shard, id) and cut to
// limit (0: all), with the cursor after them.
func (b Backend) hotEvents(ctx context.Context, c Cursor, since int64, limit int) ([]hot.Event, Cursor, error) {
	lists := make([][]hot.Event, len(b.Shards))
	err := b.each(ctx, func(ctx context.Context, k int, cl *api.Client) error {
		var err error
		lists[k], err = cl.HotEvents(ctx, c[k], since, limit)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	type tagged struct {
		k  int
		ev hot.Event
	}
	var all []tagged
	for k, l := range lists {
		for _, ev := range l {
			all = append(all, tagged{k, ev})
		}
	}
	slices.SortStableFunc(all, func(a, b tagged) int {
		if a.ev.TS != b.ev.TS {
			if a.ev.TS < b.ev.TS {
				return -1
			}
			return 1
		}
		return a.k - b.k
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	next := slices.Clone(c)
	out := make([]hot.Event, len(all))
	for i, t := range all {
		out[i] = t.ev
		next[t.k] = t.ev.ID
	}
	return out, next, nil
}

// each runs fn for every shard concurrently and returns the first error, naming the shard.
func (b Backend) each(ctx context.Context, fn func(ctx context.Context, k int, c *api.Client) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(b.Shards))
	var wg sync.WaitGroup
	for k, c := range b.Shards {
		wg.Go(func() {
			if err := fn(ctx, k, c); err != nil {
				errs[k] = fmt.Errorf("shard %d: %w", k, err)
				cancel()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

// Ready reports whether every shard's /readyz answers 200.
func (b Backend) Ready(ctx context.Context, client *http.Client, bases []string, token string) error {
	return b.each(ctx, func(ctx context.Context, k int, _ *api.Client) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, bases[k]+"/readyz", nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("readyz: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s/readyz: %s", bases[k], resp.Status)
		}
		return nil
	})
}
