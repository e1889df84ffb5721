package main

import (
	"context"
	"fmt"
	"io"

	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/render"
)

// runFollow is `query hot --follow`: the stored events, then new ones from whichever process
// holds the data directory, across restarts of it (see the command's help and
// engine.FollowHot).
func (o *hotQuery) runFollow(ctx context.Context, w, errw io.Writer, since int64) error {
	if o.data.dir == "" {
		return usagef("--data must not be empty")
	}
	eopts, err := o.data.engineOptions(o.app.logger, nil)
	if err != nil {
		return err
	}
	out, err := render.NewHotStream(w, o.format)
	if err != nil {
		return err
	}
	err = engine.FollowHot(ctx, engine.FollowOptions{
		Engine: eopts, Since: since, Clock: o.clk, Event: out.Print,
		Status: func(msg string) { fmt.Fprintln(errw, "quotes:", msg) },
	})
	return engineError(err)
}
