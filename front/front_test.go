package front_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/front"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/shard"
)

// fakeShard is one instance's backend: its instruments (with one candle each) and hot
// events.
type fakeShard struct {
	mu      sync.Mutex
	isins   []feed.ISIN
	events  []hot.Event
	changed chan struct{}
}

func (f *fakeShard) Instruments(context.Context) ([]api.Instrument, error) {
	var out []api.Instrument
	for _, i := range f.isins {
		out = append(out, api.Instrument{ISIN: i.String(), Description: "d " + i.String()})
	}
	return out, nil
}

func (f *fakeShard) Candles(_ context.Context, isin feed.ISIN, _ pipeline.CandleRange) ([]api.Candle, error) {
	for _, i := range f.isins {
		if i == isin {
			return []api.Candle{{OpenPrice: 1, HighPrice: 1, LowPrice: 1, ClosePrice: 1, Quotes: 7}}, nil
		}
	}
	return nil, pipeline.ErrUnknownInstrument
}

func (f *fakeShard) HotEvents(_ context.Context, after uint64, since int64, limit int) ([]hot.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []hot.Event
	for _, e := range f.events {
		if e.ID > after && e.TS >= since && (limit <= 0 || len(out) < limit) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeShard) HotEventsChanged() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeShard) add(e hot.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
	close(f.changed)
	f.changed = make(chan struct{})
}

func TestCursor(t *testing.T) {
	c, err := front.ParseCursor("12-0-7", 3)
	if err != nil || c.String() != "12-0-7" || c[0] != 12 || c[2] != 7 {
		t.Fatalf("%v %v", c, err)
	}
	for _, bad := range []string{"12-0", "1-2-x", "", "1--2"} {
		if _, err := front.ParseCursor(bad, 3); err == nil {
			t.Errorf("ParseCursor(%q) accepted", bad)
		}
	}
}

// TestFront: per-ISIN requests reach the owning shard, /instruments merges, and the merged
// hot stream carries cursors that resume without gap or duplicate.
func TestFront(t *testing.T) {
	isins := []string{"US0378331005", "DE0007164600", "GB0002634946", "FR0000120271", "JP3633400001", "CH0012032048"}
	shards := []*fakeShard{{changed: make(chan struct{})}, {changed: make(chan struct{})}}
	for _, s := range isins {
		i, _ := feed.ParseISIN(s)
		k := shard.Of(i, 2)
		shards[k].isins = append(shards[k].isins, i)
	}
	var bases []string
	b := front.Backend{}
	for _, s := range shards {
		srv := httptest.NewServer(api.NewHandler(api.Options{Backend: s}))
		t.Cleanup(srv.Close)
		bases = append(bases, srv.URL)
		b.Shards = append(b.Shards, api.NewClient(srv.URL))
	}
	fr := httptest.NewServer(api.NewHandler(api.Options{Backend: b,
		Hot: front.NewHotHandler(front.HotOptions{Bases: bases, Backend: b, Retry: 50 * time.Millisecond})}))
	t.Cleanup(fr.Close)

	ins, err := api.NewClient(fr.URL).Instruments(context.Background())
	if err != nil || len(ins) != len(isins) {
		t.Fatalf("instruments %v %v", ins, err)
	}
	for i := 1; i < len(ins); i++ {
		if ins[i-1].ISIN >= ins[i].ISIN {
			t.Fatalf("not sorted: %v", ins)
		}
	}
	for _, s := range isins {
		resp, err := http.Get(fr.URL + "/instruments/" + s + "/candles")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("candles of %s through the front: %v %v", s, resp.Status, err)
		}
		resp.Body.Close()
	}

	// events 1..3 on each shard, then a stream from the start
	for id := uint64(1); id <= 3; id++ {
		for k, s := range shards {
			s.add(hot.Event{ID: id*10 + uint64(k), ISIN: s.isins[0], TS: int64(id) * 1e9, Price: 110, ReferencePrice: 100})
		}
	}
	read := func(lastID string, n int) []string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fr.URL+"/hot", nil)
		req.Header.Set("Accept", "text/event-stream")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ids []string
		sc := bufio.NewScanner(resp.Body)
		for len(ids) < n && sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				ids = append(ids, v)
			}
		}
		if len(ids) < n {
			t.Fatalf("stream after %q: %d events, want %d", lastID, len(ids), n)
		}
		return ids
	}
	ids := read("0-0", 6)
	if ids[len(ids)-1] != "30-31" {
		t.Fatalf("cursor after all six: %v", ids)
	}
	// resume from the third: exactly the other three, then a new one of shard 1
	go func() {
		time.Sleep(300 * time.Millisecond)
		shards[1].add(hot.Event{ID: 41, ISIN: shards[1].isins[0], TS: 4e9, Price: 110, ReferencePrice: 100})
	}()
	rest := read(ids[2], 4)
	seen := map[string]bool{}
	for _, id := range append(ids[:3], rest...) {
		if seen[id] {
			t.Fatalf("duplicate cursor %s: %v then %v", id, ids[:3], rest)
		}
		seen[id] = true
	}
	if rest[2] != "30-31" || rest[3] != "30-41" {
		t.Fatalf("resumed after %s: %v", ids[2], rest)
	}
	// JSON: merged by time, with the cursor after them
	resp, err := http.Get(fr.URL + "/hot?format=json&after=10-11")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Header.Get(front.HeaderCursor); c != "30-41" {
		t.Fatalf("JSON cursor %q", c)
	}
	// a cursor of the wrong shape is a 400
	resp, err = http.Get(fr.URL + "/hot?lastEventId=5&stream=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad cursor: %s", resp.Status)
	}
}
