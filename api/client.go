package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
)

// Client reads a running quotes process's HTTP API. It implements Backend, so `quotes query`
// prints the same thing whether it reads a data directory itself or asks the process that
// holds it.
type Client struct {
	base  string
	http  *http.Client
	token string // bearer token, if any (NewClientWith)
}

// NewClient returns a client for the API at base, e.g. "http://127.0.0.1:5000".
func NewClient(base string) *Client {
	return &Client{base: base, http: &http.Client{Timeout: 30 * time.Second}}
}

// Instruments implements Backend.
func (c *Client) Instruments(ctx context.Context) ([]Instrument, error) {
	var out []Instrument
	return out, c.get(ctx, "/instruments", &out)
}

// Candles implements Backend.
func (c *Client) Candles(ctx context.Context, isin feed.ISIN, r pipeline.CandleRange) ([]Candle, error) {
	q := url.Values{}
	if r.Last > 0 {
		q.Set("last", strconv.Itoa(r.Last)+"m")
	} else {
		q.Set("from", time.Unix(0, r.From).UTC().Format(time.RFC3339Nano))
		q.Set("to", time.Unix(0, r.To).UTC().Format(time.RFC3339Nano))
	}
	var out []Candle
	return out, c.get(ctx, "/instruments/"+isin.String()+"/candles?"+q.Encode(), &out)
}

// HotEvents implements Backend (through GET /hot?since=…&after=…).
func (c *Client) HotEvents(ctx context.Context, afterID uint64, since int64, limit int) ([]hot.Event, error) {
	q := url.Values{}
	q.Set("since", time.Unix(0, since).UTC().Format(time.RFC3339Nano))
	if afterID > 0 {
		q.Set("after", strconv.FormatUint(afterID, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var raw []json.RawMessage
	if err := c.get(ctx, "/hot?"+q.Encode(), &raw); err != nil {
		return nil, err
	}
	out := make([]hot.Event, 0, len(raw))
	for _, r := range raw {
		e, err := hot.ParseEventJSON(r)
		if err != nil {
			return nil, fmt.Errorf("api: decode hot event: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}

// HotEventsChanged implements Backend: a client polls, so the channel closes after
// PollInterval.
func (c *Client) HotEventsChanged() <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(PollInterval, func() { close(ch) })
	return ch
}

// PollInterval is how often a Client following hot events asks the server again.
const PollInterval = 500 * time.Millisecond

// get fetches path and decodes the JSON body into v; a 404 is pipeline.ErrUnknownInstrument.
func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("api: request %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("api: GET %s%s: %w", c.base, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("api: read GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode == http.StatusNotFound {
			return pipeline.ErrUnknownInstrument
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			return fmt.Errorf("api: GET %s: %s: %w", path, e.Error, ErrNotReady)
		}
		return fmt.Errorf("api: GET %s: %s: %s", path, resp.Status, e.Error)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("api: decode GET %s: %w", path, err)
	}
	return nil
}
