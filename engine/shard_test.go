package engine

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/shard"
)

// shardResult is what an engine derived, without the per-instance ids (incarnations and
// hot event ids are WAL sequences, which differ between instances).
type shardResult struct {
	instruments map[feed.ISIN]string
	candles     map[[2]int64]aggregate.Candle // [isin index, minute] → candle (ids zeroed)
	hot         map[[2]int64]hot.Event
}

func collect(t *testing.T, e *Engine, into *shardResult, isins map[feed.ISIN]int64) {
	t.Helper()
	for _, in := range e.Pipeline().Instruments() {
		if _, dup := into.instruments[in.ISIN]; dup {
			t.Fatalf("instrument %s in two shards", in.ISIN)
		}
		into.instruments[in.ISIN] = in.Description
	}
	id := func(i feed.ISIN) int64 {
		if _, ok := isins[i]; !ok {
			isins[i] = int64(len(isins))
		}
		return isins[i]
	}
	if err := e.Store().ScanCandles(func(c aggregate.Candle) error {
		k := [2]int64{id(c.ISIN), c.Minute}
		c.Incarnation, c.OpenSeq, c.CloseSeq = 0, 0, 0
		if old, dup := into.candles[k]; dup {
			// an ISIN deleted and added again within a minute: merge the incarnations
			old.Merge(&c)
			c = old
		}
		into.candles[k] = c
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	evs, err := e.Pipeline().HotEvents(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		k := [2]int64{id(ev.ISIN), ev.TS}
		ev.ID, ev.Incarnation = 0, 0
		into.hot[k] = ev
	}
}

// TestShardedReplay: a recording replayed by one engine, and by two engines with Shard 0/2
// and 1/2, derives the same instruments, candles and hot events (up to the per-instance
// ids); each shard's WAL holds its own ISINs only, and a directory refuses another shard.
func TestShardedReplay(t *testing.T) {
	path, msgs := recording(t, 40, 20*time.Minute, 0.05)
	isins := map[feed.ISIN]int64{}
	one := shardResult{map[feed.ISIN]string{}, map[[2]int64]aggregate.Candle{}, map[[2]int64]hot.Event{}}
	e := mustOpen(t, testOptions(t, "one"))
	replayFile(t, e, path, ReplayOptions{Batch: 700})
	collect(t, e, &one, isins)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	two := shardResult{map[feed.ISIN]string{}, map[[2]int64]aggregate.Candle{}, map[[2]int64]hot.Event{}}
	var total uint64
	for k := 0; k < 2; k++ {
		opts := testOptions(t, "shard")
		opts.Shard = shard.Spec{K: k, N: 2}
		e := mustOpen(t, opts)
		st := replayFile(t, e, path, ReplayOptions{Batch: 700})
		total += st.Messages
		for _, m := range rawWAL(t, e) {
			if shard.Of(m.ISIN, 2) != k {
				t.Fatalf("shard %d's WAL holds %s (%v) of shard %d", k, m.ISIN, m.Kind, shard.Of(m.ISIN, 2))
			}
		}
		if e.ForeignDropped() == 0 || e.ForeignDropped()+st.Messages != uint64(len(msgs)) {
			t.Fatalf("shard %d: kept %d, dropped %d of %d", k, st.Messages, e.ForeignDropped(), len(msgs))
		}
		collect(t, e, &two, isins)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		// the directory is shard k's now
		opts.Shard = shard.Spec{K: 1 - k, N: 2}
		var oe *OptionError
		if _, err := Open(opts); !errors.As(err, &oe) || oe.Option != "shard" {
			t.Fatalf("reopen as another shard: %v", err)
		}
		opts.Shard = shard.Spec{}
		if _, err := Open(opts); !errors.As(err, &oe) {
			t.Fatalf("reopen unsharded: %v", err)
		}
		opts.ReadOnly = true
		ro := mustOpen(t, opts)
		if ro.Shard() != (shard.Spec{K: k, N: 2}) {
			t.Fatalf("read-only open: shard %v", ro.Shard())
		}
		ro.Close()
	}
	if total != uint64(len(msgs)) {
		t.Fatalf("the shards kept %d messages in all, want %d", total, len(msgs))
	}
	if len(one.instruments) == 0 || len(one.candles) == 0 || len(one.hot) == 0 {
		t.Fatalf("a weak recording: %d instruments, %d candles, %d hot events", len(one.instruments), len(one.candles), len(one.hot))
	}
	compare := func(what string, a, b int, eq func() (string, bool)) {
		t.Helper()
		if a != b {
			t.Errorf("%s: one instance %d, two shards %d", what, a, b)
		}
		if diff, ok := eq(); !ok {
			t.Errorf("%s differ: %s", what, diff)
		}
	}
	compare("instruments", len(one.instruments), len(two.instruments), func() (string, bool) {
		for k, v := range one.instruments {
			if two.instruments[k] != v {
				return k.String(), false
			}
		}
		return "", true
	})
	compare("candles", len(one.candles), len(two.candles), func() (string, bool) {
		for k, v := range one.candles {
			if two.candles[k] != v {
				return v.ISIN.String(), false
			}
		}
		return "", true
	})
	compare("hot events", len(one.hot), len(two.hot), func() (string, bool) {
		for k, v := range one.hot {
			if two.hot[k] != v {
				return fmt.Sprintf("%+v vs %+v", v, two.hot[k]), false
			}
		}
		return "", true
	})
}
