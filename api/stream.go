package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/hot"
)

// StreamHot follows GET /hot as Server-Sent Events, resuming after event afterID
// (Last-Event-ID): connected is called once the stream is open, event for every event. It
// returns when the stream ends, ctx ends, event fails, or idle passes on clk without an event
// or keep-alive comment (the server sends one every DefaultHotKeepAlive), with why, and
// whether the stream had been open.
func (c *Client) StreamHot(ctx context.Context, afterID uint64, idle time.Duration, clk clock.Clock, connected func(), event func(hot.Event) error) (bool, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/hot", nil)
	if err != nil {
		return false, fmt.Errorf("request %s/hot: %w", c.base, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", strconv.FormatUint(afterID, 10))
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	errIdle := fmt.Errorf("no event and no keep-alive for %s", idle)
	timer := clk.AfterFunc(idle, func() { cancel(errIdle) })
	defer timer.Stop()
	// a stream has no overall time limit
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		return false, orCause(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return false, fmt.Errorf("GET %s/hot: %s: %s", c.base, resp.Status, e.Error)
		}
		return false, fmt.Errorf("GET %s/hot: %s, %s: not an event stream", c.base, resp.Status, resp.Header.Get("Content-Type"))
	}
	connected()

	// SSE (https://html.spec.whatwg.org/multipage/server-sent-events.html): lines of
	// field: value, an event ends at an empty line, lines starting with ':' are comments.
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var name, data strings.Builder
	for sc.Scan() {
		timer.Reset(idle)
		line := sc.Text()
		if line == "" {
			if data.Len() > 0 && (name.Len() == 0 || name.String() == "hot") {
				e, err := hot.ParseEventJSON([]byte(data.String()))
				if err != nil {
					return true, fmt.Errorf("decode hot event from %s: %w", c.base, err)
				}
				if err := event(e); err != nil {
					return true, err
				}
			}
			name.Reset()
			data.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			name.Reset()
			name.WriteString(value)
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		}
	}
	if err := sc.Err(); err != nil {
		return true, orCause(ctx, err)
	}
	return true, errors.New("the event stream ended")
}

// orCause returns why ctx was cancelled if it was (the idle timeout), else err.
func orCause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}
