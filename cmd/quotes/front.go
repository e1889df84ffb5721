package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/front"
)

// runFront serves the routing front over --shards (package front).
func (o *serveOptions) runFront(ctx context.Context) error {
	if o.clickhouse != "" {
		return usagef("--shards and --clickhouse exclude each other: the front asks the instances")
	}
	var bases []string
	for _, s := range strings.Split(o.shards, ",") {
		s = strings.TrimRight(strings.TrimSpace(s), "/")
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usagef("--shards: %q is not an http:// or https:// base URL", s)
		}
		bases = append(bases, s)
	}
	logger := o.app.logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b := front.Backend{}
	for _, base := range bases {
		b.Shards = append(b.Shards, api.NewClientWith(base, api.ClientOptions{Token: o.shardsToken}))
	}
	clk := clock.New()
	hotH := front.NewHotHandler(front.HotOptions{Bases: bases, Token: o.shardsToken, Backend: b, Clock: clk, Logger: logger})
	srv, err := api.StartService(api.ServiceOptions{
		Addr: o.http.addr, TLSCert: o.http.tlsCert, TLSKey: o.http.tlsKey, AuthToken: o.http.authToken,
		HotWindow: engine.DefaultSettings().HotWindow, RequestTimeout: o.http.requestTimeout,
		Registry: reg, Logger: logger, Clock: clk, Hot: hotH, NotReadyYetError: "starting",
	})
	if err != nil {
		return err
	}
	readyClient := &http.Client{Timeout: 5 * time.Second}
	srv.SetBackend(b, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return b.Ready(ctx, readyClient, bases, o.shardsToken)
	})
	logger.Info("serving the routing front", "url", srv.URL(), "shards", len(bases))
	select {
	case err := <-srv.Served():
		return err
	case <-ctx.Done():
	}
	logger.Info("stopping the HTTP API")
	return srv.Shutdown(o.shutdownTimeout)
}
