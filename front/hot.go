package front

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/api"
)

// HotOptions configure the /hot handler of NewHotHandler.
type HotOptions struct {
	// Bases are the shards' API base URLs (http://host:port), shard K at index K.
	Bases []string
	// Token is sent to the shards as a bearer token (empty: none).
	Token string
	// Backend is the shards' merged backend (its Shards match Bases).
	Backend Backend
	// KeepAlive is the interval of keep-alive comments on the stream (default 15 s);
	// Retry the wait before a shard's stream is reconnected (default 500 ms).
	KeepAlive, Retry time.Duration
	Clock            clock.Clock
	Logger           *slog.Logger
}

// hotHandler serves the merged GET /hot.
type hotHandler struct {
	o      HotOptions
	client *http.Client // for the shards' streams: no overall timeout
}

// NewHotHandler returns the handler of the merged GET /hot (see the package doc), for
// api.Options.Hot.
func NewHotHandler(o HotOptions) http.Handler {
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = 500 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &hotHandler{o: o, client: &http.Client{}}
}

// HeaderCursor is the header of the JSON /hot answer with the cursor after its events.
const HeaderCursor = "X-Hot-Cursor"

func (h *hotHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if api.WantsEventStream(r) {
		h.stream(w, r)
		return
	}
	h.json(w, r)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	b := append(strconv.AppendQuote([]byte(`{"error":`), msg), "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// json serves GET /hot?since=&after=CURSOR&limit=.
func (h *hotHandler) json(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n := len(h.o.Bases)
	after := make(Cursor, n)
	var since int64
	limit := 0
	var err error
	if q.Has("after") {
		if after, err = ParseCursor(q.Get("after"), n); err != nil {
			writeErr(w, http.StatusBadRequest, "parameter after: "+err.Error())
			return
		}
	}
	if q.Has("since") {
		t, err := time.Parse(time.RFC3339Nano, q.Get("since"))
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("parameter since %q: want an RFC 3339 time", clip(q.Get("since"))))
			return
		}
		since = t.UnixNano()
	}
	if q.Has("limit") {
		if limit, err = strconv.Atoi(q.Get("limit")); err != nil || limit < 0 {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("parameter limit %q: want a non-negative integer (0: no limit)", clip(q.Get("limit"))))
			return
		}
	}
	evs, next, err := h.o.Backend.hotEvents(r.Context(), after, since, limit)
	if err != nil {
		h.o.Logger.Error("front: hot events", "err", err)
		writeErr(w, http.StatusBadGateway, err.Error())
		return
	}
	b := []byte{'['}
	for i := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = evs[i].AppendJSON(b)
	}
	b = append(b, "]\n"...)
	w.Header().Set(HeaderCursor, next.String())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// shardEvent is one event read from a shard's stream.
type shardEvent struct {
	k    int
	id   uint64
	data string
}

// stream serves the merged event stream.
func (h *hotHandler) stream(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	n := len(h.o.Bases)
	var cursor Cursor
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("lastEventId")
	}
	if v != "" {
		var err error
		if cursor, err = ParseCursor(v, n); err != nil {
			writeErr(w, http.StatusBadRequest, "Last-Event-ID: "+err.Error())
			return
		}
	} else {
		// from now on: after every shard's latest stored event
		cursor = make(Cursor, n)
		err := h.o.Backend.each(ctx, func(ctx context.Context, k int, c *api.Client) error {
			evs, err := c.HotEvents(ctx, 0, 0, 0)
			if len(evs) > 0 {
				cursor[k] = evs[len(evs)-1].ID
			}
			return err
		})
		if err != nil {
			writeErr(w, http.StatusBadGateway, "find the latest hot events: "+err.Error())
			return
		}
	}
	events := make(chan shardEvent, 256)
	for k := range n {
		go h.follow(ctx, k, cursor[k], events)
	}
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream; charset=utf-8")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send([]byte(": connected\n\n")) {
		return
	}
	keepAlive := h.o.Clock.Ticker(h.o.KeepAlive)
	defer keepAlive.Stop()
	stop := api.Stopping(r)
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-keepAlive.C:
			if !send([]byte(": keep-alive\n\n")) {
				return
			}
		case ev := <-events:
			buf = appendEvent(buf[:0], cursor, ev)
		drain: // what else is waiting goes out in the same write
			for {
				select {
				case ev = <-events:
					buf = appendEvent(buf, cursor, ev)
				default:
					break drain
				}
			}
			if len(buf) > 0 && !send(buf) {
				return
			}
		}
	}
}

// appendEvent advances cursor by ev and appends ev as an SSE event with the cursor as its
// id (nothing for an event at or before the cursor).
func appendEvent(b []byte, cursor Cursor, ev shardEvent) []byte {
	if ev.id <= cursor[ev.k] {
		return b
	}
	cursor[ev.k] = ev.id
	b = append(b, "id: "...)
	b = append(b, cursor.String()...)
	b = append(b, "\nevent: hot\ndata: "...)
	b = append(b, ev.data...)
	return append(b, "\n\n"...)
}

// follow reads shard k's stream after the event id after and sends its events, in order,
// reconnecting after failures, until ctx ends.
func (h *hotHandler) follow(ctx context.Context, k int, after uint64, out chan<- shardEvent) {
	for ctx.Err() == nil {
		err := h.followOnce(ctx, k, &after, out)
		if ctx.Err() != nil {
			return
		}
		h.o.Logger.Warn("front: shard hot stream ended; reconnecting", "shard", k, "url", h.o.Bases[k], "after", after, "err", err)
		t := h.o.Clock.Timer(h.o.Retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (h *hotHandler) followOnce(ctx context.Context, k int, after *uint64, out chan<- shardEvent) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.o.Bases[k]+"/hot?stream=1", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", strconv.FormatUint(*after, 10))
	if h.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.o.Token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("shard %d: GET /hot: %w", k, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("shard %d: GET /hot: %s", k, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		id    uint64
		event string
		data  strings.Builder
	)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "hot" && data.Len() > 0 && id > *after {
				*after = id
				select {
				case out <- shardEvent{k: k, id: id, data: data.String()}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			event = ""
			data.Reset()
		case strings.HasPrefix(line, "id:"):
			v, err := strconv.ParseUint(strings.TrimSpace(line[3:]), 10, 64)
			if err != nil {
				return fmt.Errorf("shard %d: event id %q: %w", k, line, err)
			}
			id = v
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(line[5:], " "))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("shard %d: read /hot: %w", k, err)
	}
	return fmt.Errorf("shard %d: /hot ended", k)
}
