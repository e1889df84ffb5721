package main

import (
	"log/slog"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/diskguard"
	"github.com/quotesdev/quotes/engine"
)

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

// startAPI serves the HTTP API of o in the background: hotWindow is the data directory's,
// localToken the token other commands on it send.
func startAPI(o httpOptions, hotWindow time.Duration, localToken string, reg *prometheus.Registry, logger *slog.Logger, clk clock.Clock) (*api.Service, error) {
	return api.StartService(api.ServiceOptions{
		Addr: o.addr, TLSCert: o.tlsCert, TLSKey: o.tlsKey, AuthToken: o.authToken, LocalToken: localToken,
		HotWindow: hotWindow, RequestTimeout: o.requestTimeout, Registry: reg, Logger: logger, Clock: clk,
	})
}

// startProcessAPI starts the HTTP API of a process that will open eopts' data directory
// (nil without --http), and makes the engine announce it and report its recovery there.
func startProcessAPI(o httpOptions, eopts *engine.Options, command string, reg *prometheus.Registry, logger *slog.Logger, clk clock.Clock) (*api.Service, error) {
	eopts.Announce = &engine.Running{Command: command}
	if o.addr == "" {
		return nil, nil
	}
	srv, err := startAPI(o, eopts.Settings.HotWindow, eopts.Token, reg, logger, clk)
	if err != nil {
		return nil, err
	}
	eopts.RecoveryProgress = srv.Progress
	eopts.Announce.HTTP = srv.Announced()
	return srv, nil
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
