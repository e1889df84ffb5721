package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/api"
)

// serveAPI serves the HTTP API for backend on addr in the background; stop shuts it down
// gracefully. ready, if set, is /readyz.
func serveAPI(addr string, backend api.Backend, reg *prometheus.Registry, logger *slog.Logger, clk clock.Clock, ready func() error) (stop func(), bound string, err error) {
	srv, err := api.Listen(addr, api.NewHandler(api.Options{
		Backend:    backend,
		Ready:      ready,
		Gatherer:   reg,
		Registerer: reg,
		Logger:     logger,
		Clock:      clk,
	}))
	if err != nil {
		return nil, "", fmt.Errorf("--http %s: %w", addr, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	logger.Info("HTTP API listening", "url", "http://"+srv.Addr())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		if err := <-served; err != nil {
			logger.Error("HTTP API", "err", err)
		}
	}, srv.Addr(), nil
}
