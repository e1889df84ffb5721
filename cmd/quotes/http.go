package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/api"
)

// apiServer is the HTTP API of ingest, replay and serve. It starts before the data
// directory is recovered, so /healthz answers at once and /readyz reports the recovery's
// progress; the backend answers 503 until setBackend.
type apiServer struct {
	deferred *api.DeferredBackend
	addr     string
	stop     func()
	shutdown func(timeout time.Duration) error
	served   <-chan error // receives Serve's result (only a listener error ends it early)

	mu        sync.Mutex
	clock     clock.Clock
	start     time.Time
	replayed  uint64
	total     uint64
	recovered bool
	// ready, if set, is asked once recovered (e.g. the partner connection).
	ready func() error
}

// startAPI serves the HTTP API on addr in the background.
func startAPI(addr string, reg *prometheus.Registry, logger *slog.Logger, clk clock.Clock, requestTimeout time.Duration) (*apiServer, error) {
	s := &apiServer{deferred: api.NewDeferredBackend("recovering the data directory"), clock: clk, start: clk.Now()}
	srv, err := api.Listen(addr, api.NewHandler(api.Options{
		Backend:    s.deferred,
		Ready:      s.readiness,
		Gatherer:   reg,
		Registerer: reg,
		Logger:     logger,
		Clock:      clk,
		// RequestTimeout 0 is the api default.
		RequestTimeout: requestTimeout,
	}))
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	logger.Info("HTTP API listening", "url", "http://"+srv.Addr())
	s.addr = srv.Addr()
	s.stop = func() { s.shutdown(5 * time.Second) }
	s.shutdown = func(timeout time.Duration) error {
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-served; serr != nil {
			logger.Error("HTTP API", "err", serr)
			err = errors.Join(err, serr)
		}
		return err
	}
	s.served = served
	return s, nil
}

// progress records the recovery's progress (engine.Options.RecoveryProgress).
func (s *apiServer) progress(replayed, total uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replayed, s.total = replayed, total
}

// setBackend ends the recovery: the API answers from b, and /readyz asks ready.
func (s *apiServer) setBackend(b api.Backend, ready func() error) {
	s.mu.Lock()
	s.recovered, s.ready = true, ready
	s.mu.Unlock()
	s.deferred.Set(b)
}

func (s *apiServer) readiness() error {
	s.mu.Lock()
	recovered, ready := s.recovered, s.ready
	rec := &api.Recovery{Replayed: s.replayed, Total: s.total}
	elapsed := s.clock.Since(s.start)
	s.mu.Unlock()
	if !recovered {
		if rec.Replayed > 0 && rec.Total > rec.Replayed {
			eta := elapsed.Seconds() * float64(rec.Total-rec.Replayed) / float64(rec.Replayed)
			rec.ETASeconds = &eta
		}
		return &api.NotReadyError{
			Reason:   fmt.Sprintf("recovering: %d of %d WAL records re-applied", rec.Replayed, rec.Total),
			Recovery: rec,
		}
	}
	if ready != nil {
		return ready()
	}
	return nil
}
