package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/hot"
)

const (
	// followPoll is how often FollowHot looks for a process to follow while it waits.
	followPoll = 500 * time.Millisecond
	// followIdle is how long a followed event stream may stay silent — no event, no
	// keep-alive comment (the API sends one every 15 s) — before it counts as lost.
	followIdle = 45 * time.Second
)

// FollowOptions configure FollowHot.
type FollowOptions struct {
	// Engine opens the data directory (read-only) when no process holds it.
	Engine Options
	// Since skips events before it.
	Since int64
	// Event receives each event once, in id order; an error ends FollowHot with it.
	Event func(*hot.Event) error
	// Status receives what FollowHot is doing, each new state once (for a person).
	Status func(msg string)
	Clock  clock.Clock
}

// FollowHot prints the stored hot events of the data directory, then the new ones of
// whichever process holds it, across restarts of that process: it follows the process's
// /hot stream (found via running.json, authenticated with its token), and when the process
// stops it waits for the next one and resumes after the last event it passed on
// (Last-Event-ID), so nothing is passed twice or skipped. It never holds the directory while
// it waits, so that an ingest can start on it. It returns when ctx ends (nil) or Event fails.
func FollowHot(ctx context.Context, opts FollowOptions) error {
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	f := &follower{opts: opts, dir: opts.Engine.Dir}
	opts.Engine.ReadOnly = true
	eng, err := Open(opts.Engine)
	switch {
	case err == nil:
		// nobody holds it: pass on what it has, and let go of it before waiting
		events, herr := eng.Backend().HotEvents(ctx, 0, opts.Since, 0)
		if cerr := eng.Close(); herr == nil {
			herr = cerr
		}
		if herr != nil {
			return herr
		}
		for i := range events {
			if err := f.emit(events[i]); err != nil {
				return err
			}
		}
		f.sayIdle()
	case errors.Is(err, ErrLocked):
		// a process holds it: its API has the stored events too (the stream from event 0)
	default:
		return err
	}
	return f.loop(ctx)
}

type follower struct {
	opts     FollowOptions
	dir      string
	last     uint64 // the id of the last event passed on: where to resume
	said     string // the key of the last status, to say each thing once
	after    bool   // a status was said: the next connect says so too
	followed bool   // a stream was open before
}

// printError is Event's failure: it ends FollowHot.
type printError struct{ err error }

func (e *printError) Error() string { return e.err.Error() }

func (f *follower) loop(ctx context.Context) error {
	for {
		rp, ok := ReadRunning(f.dir)
		switch {
		case ok && rp.HTTP != "":
			who := fmt.Sprintf("`quotes %s` (pid %d) at %s", rp.Command, rp.PID, rp.HTTP)
			token, _ := ReadToken(f.dir)
			base := rp.HTTP
			if !strings.Contains(base, "://") {
				base = "http://" + base
			}
			c := api.NewClientWith(base, api.ClientOptions{Token: token})
			connected, err := c.StreamHot(ctx, f.last, followIdle, f.opts.Clock, func() {
				again := ""
				if f.followed {
					again = " again"
				}
				f.followed = true
				if f.after {
					f.say("following", fmt.Sprintf("following %s%s, resuming %s", who, again, f.resumeWhere()))
				}
			}, func(e hot.Event) error { return f.emit(e) })
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
		case <-f.opts.Clock.After(followPoll):
		}
	}
}

func (f *follower) resumeWhere() string {
	if f.last == 0 {
		return "from the first stored event"
	}
	return fmt.Sprintf("after event %d", f.last)
}

// sayIdle says why nothing comes: no process holds the directory.
func (f *follower) sayIdle() {
	f.say("idle", fmt.Sprintf("no process holds %s, so no new hot events can appear; waiting for an ingest (with its HTTP API) to start on it, to follow it. This command does not hold the directory. Ctrl-C to stop.", f.dir))
}

// say passes on a status, unless it is the one passed last.
func (f *follower) say(key, msg string) {
	if key == f.said {
		return
	}
	f.said, f.after = key, true
	if f.opts.Status != nil {
		f.opts.Status(msg)
	}
}

// emit passes on an event after the last one passed on and at or after Since.
func (f *follower) emit(e hot.Event) error {
	if e.ID <= f.last {
		return nil
	}
	f.last = e.ID
	if e.TS < f.opts.Since {
		return nil
	}
	if err := f.opts.Event(&e); err != nil {
		return &printError{fmt.Errorf("print hot event: %w", err)}
	}
	return nil
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
