package main

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
	"github.com/spf13/pflag"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/diskguard"
	"github.com/quotesdev/quotes/engine"
)

// apiServer is the HTTP API of ingest, replay and serve. It starts before the data
// directory is recovered, so /healthz answers at once and /readyz reports the recovery's
// progress; the backend answers 503 until setBackend.
type apiServer struct {
	deferred *api.DeferredBackend
	addr     string // host:port
	url      string // http:// or https:// and addr
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
	admin http.Handler // /admin/… once set
}

// serveAdmin serves /admin/… once setAdmin gave it a handler (503 before).
func (s *apiServer) serveAdmin(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.admin
	s.mu.Unlock()
	if h == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, `{"error":"recovering the data directory: not ready"}`)
		return
	}
	h.ServeHTTP(w, r)
}

// setAdmin serves h on /admin/… (the engine's admin API).
func (s *apiServer) setAdmin(h http.Handler) {
	s.mu.Lock()
	s.admin = h
	s.mu.Unlock()
}

// httpOptions are the flags of the HTTP API (ingest, replay, serve).
type httpOptions struct {
	addr           string
	authToken      string
	tlsCert        string
	tlsKey         string
	requestTimeout time.Duration
}

func (o *httpOptions) bind(f *pflag.FlagSet, addrDefault, addrHelp string) {
	f.StringVar(&o.addr, "http", addrDefault, addrHelp)
	f.StringVar(&o.authToken, "auth-token", "", "bearer token every request but /healthz must carry (required when --http is not on loopback; prefer QUOTES_AUTH_TOKEN over the command line)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	f.StringVar(&o.tlsKey, "tls-key", "", "the private key of --tls-cert (PEM)")
}

// validate checks the flags (usage errors), before anything is created.
func (o *httpOptions) validate() error {
	if o.addr == "" {
		return nil
	}
	if err := api.CheckBind(o.addr, o.authToken); err != nil {
		return &usageError{err}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	return nil
}

// apiSettings are what the handler needs from the data directory.
type apiSettings struct {
	hotWindow  time.Duration
	localToken string
}

// startAPI serves the HTTP API of o in the background.
func startAPI(o httpOptions, st apiSettings, reg *prometheus.Registry, logger *slog.Logger, clk clock.Clock) (*apiServer, error) {
	s := &apiServer{deferred: api.NewDeferredBackend("recovering the data directory"), clock: clk, start: clk.Now()}
	h := api.NewHandler(api.Options{
		Backend:    s.deferred,
		Ready:      s.readiness,
		Gatherer:   reg,
		Registerer: reg,
		Logger:     logger,
		Clock:      clk,
		// RequestTimeout 0 is the api default.
		RequestTimeout: o.requestTimeout,
		HotWindow:      st.hotWindow,
		AuthToken:      o.authToken,
		LocalToken:     st.localToken,
		Admin:          http.HandlerFunc(s.serveAdmin),
	})
	var srv *api.Server
	var err error
	if o.tlsCert != "" {
		srv, err = api.ListenTLS(o.addr, h, o.tlsCert, o.tlsKey)
	} else {
		srv, err = api.Listen(o.addr, h)
	}
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", o.addr, err)
	}
	if !api.IsLoopback(o.addr) {
		logger.Warn("the HTTP API is reachable beyond loopback: every request but /healthz needs the bearer token", "addr", srv.Addr(), "tls", o.tlsCert != "")
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	logger.Info("HTTP API listening", "url", srv.URL())
	s.addr, s.url = srv.Addr(), srv.URL()
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

// hostPort is the address other commands on the data directory reach the API at (in
// running.json): the scheme is https:// when the URL says so.
func (s *apiServer) hostPort() string {
	if strings.HasPrefix(s.url, "https://") {
		return s.url
	}
	return s.addr
}

// localClient is a client of the process rp that holds dir, authenticated with the token
// it wrote there (readable by the same user only). An https:// address (TLS with a
// certificate of the operator's) is verified as usual.
func localClient(dir string, rp engine.Running) *api.Client {
	token, _ := engine.ReadToken(dir)
	base := rp.HTTP
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return api.NewClientWith(base, api.ClientOptions{Token: token})
}

// bindMinFreeDisk binds --min-free-disk.
func bindMinFreeDisk(f *pflag.FlagSet, v *string) {
	f.StringVar(v, "min-free-disk", diskguard.DefaultThreshold.String(), "pause input while the data directory's file system has less free space than this (bytes like 1GiB, a percentage like 5%, or both: 1GiB+5%; 0 disables); opening below it fails")
}

func parseMinFreeDisk(s string) (diskguard.Threshold, error) {
	t, err := diskguard.ParseThreshold(s)
	if err != nil {
		return t, usagef("--min-free-disk %q: %v", s, err)
	}
	return t, nil
}
