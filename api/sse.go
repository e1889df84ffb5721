package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/hot"
)

const (
	// sseBatch is how many events one stream reads from the backend at a time.
	sseBatch = 1024
	// ssePollInterval is how often a stream polls when the backend's change channel stays
	// closed (a polling backend such as Client, or a closed pipeline).
	ssePollInterval = time.Second
	// sseWriteTimeout bounds one write to a stream's client: a client that stops reading is
	// dropped rather than holding the stream forever.
	sseWriteTimeout = 30 * time.Second
)

// hotStream serves GET /hot as Server-Sent Events: one `hot` event per hot.Event, with its id.
// It starts after Last-Event-ID (header, or ?lastEventId=), or with the events from now on
// without one, then follows the backend without gaps or duplicates: events are always read
// by id after the last one sent. It ends when the client goes away, a write fails, or the
// Server shuts down.
func (h *handler) hotStream(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	after, resume, err := lastEventID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !resume {
		if after, err = h.latestHotID(r); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	markStream(w)
	h.metrics.streams.Inc()
	defer h.metrics.streams.Dec()

	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream; charset=utf-8")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	keepAlive := h.opts.Clock.Ticker(h.opts.HotKeepAlive)
	defer keepAlive.Stop()
	stop := stopping(r)

	send := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send([]byte(": connected\n\n")) {
		return
	}

	buf := make([]byte, 0, 4096)
	emptyWakes := 0 // wake-ups of the change channel in a row that brought no event
	for {
		changed := h.opts.Backend.HotEventsChanged() // before reading: no notification is lost
		evs, err := h.opts.Backend.HotEvents(ctx, after, 0, sseBatch)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Error("api: hot event stream: read events", "after", after, "err", err)
			}
			return // the client reconnects with Last-Event-ID
		}
		if len(evs) > 0 {
			emptyWakes = 0
			buf = buf[:0]
			for i := range evs {
				buf = appendSSEEvent(buf, &evs[i])
			}
			if !send(buf) {
				return
			}
			after = evs[len(evs)-1].ID
			if len(evs) == sseBatch {
				continue // more may be waiting
			}
		}
		// A change channel that is closed again and again without new events is one that
		// stays closed (a polling backend, a closed pipeline): poll instead.
		var poll *clock.Timer
		var pollC <-chan time.Time
		if emptyWakes >= 2 {
			poll = h.opts.Clock.Timer(ssePollInterval)
			pollC, changed = poll.C, nil
		}
		woke, ok := waitHot(ctx.Done(), stop, changed, pollC, keepAlive, send)
		if poll != nil {
			poll.Stop()
		}
		if !ok {
			return
		}
		if woke {
			emptyWakes++ // reset above when the next read brings events
		}
	}
}

// waitHot waits for the next reason to read events, sending keep-alive comments meanwhile.
// woke reports a wake-up by changed; ok is false when the stream must end.
func waitHot(done, stop, changed <-chan struct{}, poll <-chan time.Time, keepAlive *clock.Ticker,
	send func([]byte) bool) (woke, ok bool) {
	for {
		select {
		case <-done:
			return false, false
		case <-stop:
			return false, false
		case <-changed:
			return true, true
		case <-poll:
			return false, true
		case <-keepAlive.C:
			if !send([]byte(": keep-alive\n\n")) {
				return false, false
			}
		}
	}
}

// appendSSEEvent appends e as one SSE `hot` event.
func appendSSEEvent(b []byte, e *hot.Event) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, e.ID, 10)
	b = append(b, "\nevent: hot\ndata: "...)
	b = e.AppendJSON(b)
	return append(b, "\n\n"...)
}

// lastEventID returns the Last-Event-ID of r (header, or ?lastEventId=), and whether there
// is one.
func lastEventID(r *http.Request) (uint64, bool, error) {
	name, v := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if v == "" {
		name, v = "parameter lastEventId", r.URL.Query().Get("lastEventId")
	}
	if v == "" {
		return 0, false, nil
	}
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s %s: want an event id (a non-negative integer)", name, quoteInput(v))
	}
	return id, true, nil
}

// latestHotID returns the id of the newest stored hot event (0 if none): a stream without
// Last-Event-ID starts after it.
func (h *handler) latestHotID(r *http.Request) (uint64, error) {
	var after uint64
	for {
		evs, err := h.opts.Backend.HotEvents(r.Context(), after, 0, sseBatch)
		if err != nil {
			return 0, fmt.Errorf("find the latest hot event: %w", err)
		}
		if len(evs) > 0 {
			after = evs[len(evs)-1].ID
		}
		if len(evs) < sseBatch {
			return after, nil
		}
	}
}
