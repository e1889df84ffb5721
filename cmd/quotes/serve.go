package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/export"
)

// serveOptions are the flags of `quotes serve`.
type serveOptions struct {
	app             *app
	data            dataOptions
	clickhouse      string
	shards          string
	shardsToken     string
	http            httpOptions
	shutdownTimeout time.Duration
}

func newServeCmd(a *app) *cobra.Command {
	o := &serveOptions{app: a}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API over an existing data directory, read-only",
		Long: `serve recovers the state in --data (the same as ingest would) and serves the HTTP API
on --http, without a partner connection and without writing to the WAL: instruments, candles
(the open minutes included, as of the last message received), hot events (JSON and
Server-Sent Events), /metrics, /healthz and /readyz.

While it runs, serve holds --data: ` + "`quotes query`" + ` on the same directory asks it over HTTP
(it finds the address in --data/running.json). When a running ingest or replay holds --data,
serve answers from that process's API (it proxies every request), on its own --http address:
the same answers, the open minute included.

With --clickhouse DSN, instruments and candles are served from ClickHouse (see ` + "`quotes query --help`" + `
for what "now" is there); hot events from --data when it exists, otherwise /hot fails.

With --shards URL,URL,… serve is the routing front of a sharded deployment (SPEC §11):
the N URLs are the HTTP APIs of the instances running --shard 0/N, 1/N, … in that order.
Requests about one ISIN go to the instance that owns it; /instruments and /hot merge all of
them; the merged /hot stream's event ids are resume cursors covering every shard
("ID0-ID1-…", each the last event id delivered from that shard). It holds no state: run as
many copies as you like. --data is not used.

SIGINT or SIGTERM stops it gracefully: requests in flight finish (up to
--shutdown-timeout) and event streams end.`,
		Example: `  quotes serve --data ./data
  quotes serve --data ./data --http 127.0.0.1:8080
  curl -s localhost:5000/instruments
  curl -s 'localhost:5000/instruments/DJ40J281M584/candles?last=2h'
  curl -sN localhost:5000/hot

  # the front of two shards
  quotes serve --shards http://127.0.0.1:5001,http://127.0.0.1:5002 --http 127.0.0.1:5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd)
		},
	}
	f := cmd.Flags()
	o.data.bindDir(f)
	f.StringVar(&o.shards, "shards", "", "serve as the routing front of these instances' APIs (comma-separated base URLs, shard 0 first)")
	f.StringVar(&o.shardsToken, "shards-token", "", "bearer token for the --shards instances' APIs (prefer QUOTES_SHARDS_TOKEN)")
	f.StringVar(&o.clickhouse, "clickhouse", "", "serve instruments and candles from ClickHouse (clickhouse://host:9000/database); hot events from --data if it exists")
	o.http.bind(f, "127.0.0.1:5000", "address of the HTTP API (host:port; port 0 picks a free one)")
	f.DurationVar(&o.http.requestTimeout, "request-timeout", api.DefaultRequestTimeout, "time limit of one HTTP request (event streams excepted)")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful stop waits for requests in flight")
	return cmd
}

func (o *serveOptions) run(ctx context.Context, cmd *cobra.Command) error {
	if o.http.addr == "" {
		return usagef("--http must not be empty: serve has nothing else to do")
	}
	if o.http.requestTimeout <= 0 {
		return usagef("--request-timeout %s: must be positive", o.http.requestTimeout)
	}
	if err := o.http.validate(); err != nil {
		return err
	}
	if o.shutdownTimeout <= 0 {
		return usagef("--shutdown-timeout %s: must be positive", o.shutdownTimeout)
	}
	if o.shards != "" {
		return o.runFront(ctx)
	}
	if o.data.dir == "" {
		return usagef("--data must not be empty")
	}
	logger := o.app.logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	hotWindow := engine.DefaultSettings().HotWindow
	if st, ok, _ := engine.ReadSettings(o.data.dir); ok {
		hotWindow = st.HotWindow
	}
	token := engine.NewToken()
	srv, err := startAPI(o.http, hotWindow, token, reg, logger, clock.New())
	if err != nil {
		return err
	}
	var (
		backend api.Backend
		via     string
	)
	if o.clickhouse == "" || dirExists(o.data.dir) {
		eopts, err := o.data.engineOptions(logger, reg)
		if err != nil {
			srv.Stop()
			return err
		}
		eopts.ReadOnly = true
		eopts.Announce = &engine.Running{Command: "serve", HTTP: srv.Announced()}
		eopts.Token = token
		eopts.RecoveryProgress = srv.Progress
		eng, err := engine.Open(eopts)
		switch {
		case errors.Is(err, engine.ErrLocked):
			rp, ok := engine.ReadRunning(o.data.dir)
			if !ok || rp.HTTP == "" {
				srv.Stop()
				return fmt.Errorf("%w; start it with --http to serve it while it runs", err)
			}
			backend, via = localClient(o.data.dir, rp), rp.HTTP
		case err != nil:
			srv.Stop()
			return engineError(err)
		default:
			defer eng.Close()
			backend = eng.Backend()
		}
	}
	if o.clickhouse != "" {
		ch, err := engine.OpenClickHouse(ctx, o.clickhouse)
		if err != nil {
			srv.Stop()
			return engineError(err)
		}
		defer ch.Close()
		backend = export.NewClickHouseBackend(ch, backend)
	}
	srv.SetBackend(backend, nil)
	logger.Info("serving the HTTP API", "url", srv.URL(), "data", o.data.dir, "clickhouse", o.clickhouse, "via", via)

	select {
	case err := <-srv.Served():
		return err // Serve fails only on a listener error
	case <-ctx.Done():
	}
	logger.Info("stopping the HTTP API")
	return srv.Shutdown(o.shutdownTimeout)
}
