package main

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
	"syscall"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/render"
)

const (
	// followPoll is how often `query hot --follow` looks for a process to follow while it
	// waits for one.
	followPoll = 500 * time.Millisecond
	// followIdle is how long a followed event stream may stay silent — no event, no
	// keep-alive comment (the API sends one every 15 s) — before it counts as lost.
	followIdle = 45 * time.Second
)

// hotFollower is the state of `query hot --follow`.
type hotFollower struct {
	dir    string
	since  int64
	clk    clock.Clock
	out    *render.HotStream
	errw   io.Writer
	client *http.Client

	last     uint64 // the id of the last event printed: where to resume
	said     string // the key of the last status line on stderr, to say each thing once
	after    bool   // a status line was printed: the next connect says so too
	followed bool   // a stream was open before
}

// runFollow is `query hot --follow`: the stored events, then new ones from whichever process
// holds the data directory, across restarts of it (see the command's help).
func (o *hotQuery) runFollow(ctx context.Context, w, errw io.Writer, since int64) error {
	if o.data.dir == "" {
		return usagef("--data must not be empty")
	}
	eopts, err := o.data.engineOptions(o.app.logger, nil)
	if err != nil {
		return err
	}
	eopts.ReadOnly = true
	out, err := render.NewHotStream(w, o.format)
	if err != nil {
		return err
	}
	f := &hotFollower{dir: o.data.dir, since: since, clk: o.clk, out: out, errw: errw, client: &http.Client{}}

	// A directory no process holds: print what it has, and let go of it before waiting, so
	// that an ingest can start on it.
	eng, err := engine.Open(eopts)
	switch {
	case err == nil:
		events, herr := eng.Backend().HotEvents(ctx, 0, since, 0)
		if cerr := eng.Close(); herr == nil {
			herr = cerr
		}
		if herr != nil {
			return herr
		}
		if err := f.emit(events...); err != nil {
			return err
		}
		f.sayIdle()
	case errors.Is(err, engine.ErrLocked):
		// A process holds it: its API has the stored events too (the stream from event 0).
	default:
		return engineError(err)
	}
	return f.loop(ctx)
}

// loop follows the process recorded in the data directory's running.json, and waits for
// one whenever there is none to follow.
func (f *hotFollower) loop(ctx context.Context) error {
	for {
		rp, ok := engine.ReadRunning(f.dir)
		switch {
		case ok && rp.HTTP != "":
			who := fmt.Sprintf("`quotes %s` (pid %d) at %s", rp.Command, rp.PID, rp.HTTP)
			connected, err := f.stream(ctx, "http://"+rp.HTTP, func() {
				again := ""
				if f.followed {
					again = " again"
				}
				f.followed = true
				if f.after {
					f.say("following", fmt.Sprintf("following %s%s, %s", who, again, f.resume()))
				}
			})
			if ctx.Err() != nil {
				return nil
			}
			var pe *printError
			if errors.As(err, &pe) {
				return pe.err
			}
			if connected {
				f.say("lost", fmt.Sprintf("lost %s: %s; waiting for it to come back (will resume %s). Ctrl-C to stop.", who, brief(err), f.resumeWhere()))
			} else {
				f.say("unreachable "+rp.HTTP, fmt.Sprintf("cannot reach %s, which holds %s: %s; retrying (will resume %s). Ctrl-C to stop.", who, f.dir, brief(err), f.resumeWhere()))
			}
		case ok:
			f.say("no-http", fmt.Sprintf("%s is held by `quotes %s` (pid %d), which has no HTTP API to follow; waiting for a process that has one (ingest with --http). Ctrl-C to stop.", f.dir, rp.Command, rp.PID))
		default:
			f.sayIdle()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-f.clk.After(followPoll):
		}
	}
}

// resume says where the stream resumes, for a status line.
func (f *hotFollower) resume() string { return "resuming " + f.resumeWhere() }

func (f *hotFollower) resumeWhere() string {
	if f.last == 0 {
		return "from the first stored event"
	}
	return fmt.Sprintf("after event %d", f.last)
}

// sayIdle says why nothing comes: no process holds the directory.
func (f *hotFollower) sayIdle() {
	f.say("idle", fmt.Sprintf("no process holds %s, so no new hot events can appear; waiting for an ingest (with its HTTP API) to start on it, to follow it. This command does not hold the directory. Ctrl-C to stop.", f.dir))
}

// say prints a status line on stderr, unless it is the one printed last.
func (f *hotFollower) say(key, msg string) {
	if key == f.said {
		return
	}
	f.said = key
	f.after = true
	fmt.Fprintln(f.errw, "quotes:", msg)
}

// printError is a failure to print (stdout closed): it ends the command.
type printError struct{ err error }

func (e *printError) Error() string { return e.err.Error() }

// emit prints the events after the last one printed and at or after --since.
func (f *hotFollower) emit(events ...hot.Event) error {
	for i := range events {
		e := &events[i]
		if e.ID <= f.last {
			continue
		}
		f.last = e.ID
		if e.TS < f.since {
			continue
		}
		if err := f.out.Print(e); err != nil {
			return &printError{fmt.Errorf("print hot event: %w", err)}
		}
	}
	return nil
}

// stream follows GET base/hot as Server-Sent Events, resuming after f.last (Last-Event-ID),
// and prints every event. connected is called once the stream is open. It returns when the
// stream ends, with why, and whether it had been open.
func (f *hotFollower) stream(ctx context.Context, base string, connected func()) (bool, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/hot", nil)
	if err != nil {
		return false, fmt.Errorf("request %s/hot: %w", base, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", strconv.FormatUint(f.last, 10))
	if token, err := engine.ReadToken(f.dir); err == nil && token != "" {
		req.Header.Set("Authorization", "Bearer "+token) // the holder's API may require it
	}
	errIdle := fmt.Errorf("no event and no keep-alive for %s", followIdle)
	idle := f.clk.AfterFunc(followIdle, func() { cancel(errIdle) })
	defer idle.Stop()
	resp, err := f.client.Do(req)
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
			return false, fmt.Errorf("GET %s/hot: %s: %s", base, resp.Status, e.Error)
		}
		return false, fmt.Errorf("GET %s/hot: %s, %s: not an event stream", base, resp.Status, resp.Header.Get("Content-Type"))
	}
	connected()

	// SSE (https://html.spec.whatwg.org/multipage/server-sent-events.html): lines of
	// field: value, an event ends at an empty line, lines starting with ':' are comments.
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var event, data strings.Builder
	for sc.Scan() {
		idle.Reset(followIdle)
		line := sc.Text()
		if line == "" {
			if data.Len() > 0 && (event.Len() == 0 || event.String() == "hot") {
				e, err := hot.ParseEventJSON([]byte(data.String()))
				if err != nil {
					return true, fmt.Errorf("decode hot event from %s: %w", base, err)
				}
				if err := f.emit(e); err != nil {
					return true, err
				}
			}
			event.Reset()
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
			event.Reset()
			event.WriteString(value)
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

// brief names a network failure the way a person would, without the request around it.
func brief(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (the process is gone or not listening yet)"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the connection was closed"
	}
	return err.Error()
}
