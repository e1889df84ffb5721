package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
)

// ServiceOptions configure StartService.
type ServiceOptions struct {
	// Addr is where to listen (host:port); TLSCert and TLSKey, if set, serve HTTPS.
	Addr             string
	TLSCert, TLSKey  string
	AuthToken        string
	LocalToken       string
	HotWindow        time.Duration
	RequestTimeout   time.Duration
	Registry         *prometheus.Registry
	Logger           *slog.Logger
	Clock            clock.Clock
	NotReadyYetError string // what the API answers before SetBackend (default "recovering the data directory")
	// Hot, if set, serves GET /hot instead of the backend (Options.Hot: serve --shards).
	Hot http.Handler
}

// Service is the HTTP API of a process that owns a data directory (ingest, replay, serve).
// It listens before the data directory is recovered, so /healthz answers at once and
// /readyz reports the recovery's progress (Progress); queries answer 503 until SetBackend,
// and /admin/… until SetAdmin.
type Service struct {
	deferred *DeferredBackend
	srv      *Server
	served   chan error
	logger   *slog.Logger

	mu        sync.Mutex
	clock     clock.Clock
	start     time.Time
	replayed  uint64
	total     uint64
	recovered bool
	ready     func() error
	admin     http.Handler
}

// StartService listens on opts.Addr and serves in the background.
func StartService(opts ServiceOptions) (*Service, error) {
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.NotReadyYetError == "" {
		opts.NotReadyYetError = "recovering the data directory"
	}
	s := &Service{deferred: NewDeferredBackend(opts.NotReadyYetError), clock: opts.Clock, start: opts.Clock.Now(), logger: opts.Logger}
	hopts := Options{
		Backend:        s.deferred,
		Ready:          s.readiness,
		Logger:         opts.Logger,
		Clock:          opts.Clock,
		RequestTimeout: opts.RequestTimeout,
		HotWindow:      opts.HotWindow,
		AuthToken:      opts.AuthToken,
		LocalToken:     opts.LocalToken,
		Admin:          http.HandlerFunc(s.serveAdmin),
		Hot:            opts.Hot,
	}
	if opts.Registry != nil {
		hopts.Gatherer, hopts.Registerer = opts.Registry, opts.Registry
	}
	h := NewHandler(hopts)
	var err error
	if opts.TLSCert != "" {
		s.srv, err = ListenTLS(opts.Addr, h, opts.TLSCert, opts.TLSKey)
	} else {
		s.srv, err = Listen(opts.Addr, h)
	}
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", opts.Addr, err)
	}
	if !IsLoopback(opts.Addr) {
		opts.Logger.Warn("the HTTP API is reachable beyond loopback: every request but /healthz needs the bearer token", "addr", s.srv.Addr(), "tls", opts.TLSCert != "")
	}
	s.served = make(chan error, 1)
	go func() { s.served <- s.srv.Serve() }()
	opts.Logger.Info("HTTP API listening", "url", s.srv.URL())
	return s, nil
}

// Addr is the bound host:port; URL the same with its scheme.
func (s *Service) Addr() string { return s.srv.Addr() }

// URL is the service's base URL (http:// or https://).
func (s *Service) URL() string { return s.srv.URL() }

// Announced is the address other commands on the data directory reach the API at (in
// running.json): host:port, or the URL when it is https://.
func (s *Service) Announced() string {
	if strings.HasPrefix(s.URL(), "https://") {
		return s.URL()
	}
	return s.Addr()
}

// Served receives the result of serving: only a listener error ends it before Shutdown.
func (s *Service) Served() <-chan error { return s.served }

// Shutdown stops the service gracefully within timeout.
func (s *Service) Shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.served; serr != nil {
		s.logger.Error("HTTP API", "err", serr)
		err = errors.Join(err, serr)
	}
	return err
}

// Stop is Shutdown with a 5 s timeout, for a defer.
func (s *Service) Stop() { s.Shutdown(5 * time.Second) }

// Progress records the recovery's progress (engine.Options.RecoveryProgress).
func (s *Service) Progress(replayed, total uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replayed, s.total = replayed, total
}

// SetBackend ends the recovery: the API answers from b, and /readyz asks ready (nil:
// always ready).
func (s *Service) SetBackend(b Backend, ready func() error) {
	s.mu.Lock()
	s.recovered, s.ready = true, ready
	s.mu.Unlock()
	s.deferred.Set(b)
}

// SetAdmin serves h on /admin/….
func (s *Service) SetAdmin(h http.Handler) {
	s.mu.Lock()
	s.admin = h
	s.mu.Unlock()
}

func (s *Service) serveAdmin(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.admin
	s.mu.Unlock()
	if h == nil {
		writeError(w, http.StatusServiceUnavailable, "recovering the data directory: not ready")
		return
	}
	h.ServeHTTP(w, r)
}

func (s *Service) readiness() error {
	s.mu.Lock()
	recovered, ready := s.recovered, s.ready
	rec := &Recovery{Replayed: s.replayed, Total: s.total}
	elapsed := s.clock.Since(s.start)
	s.mu.Unlock()
	if !recovered {
		if rec.Replayed > 0 && rec.Total > rec.Replayed {
			eta := elapsed.Seconds() * float64(rec.Total-rec.Replayed) / float64(rec.Replayed)
			rec.ETASeconds = &eta
		}
		return &NotReadyError{
			Reason:   fmt.Sprintf("recovering: %d of %d WAL records re-applied", rec.Replayed, rec.Total),
			Recovery: rec,
		}
	}
	if ready != nil {
		return ready()
	}
	return nil
}
