package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/quotesdev/quotes/internal/proc"
)

// The no-op control: a plain net/http server in a process of its own that answers every
// request with "ok". Under the same clients, beside the same ingest and generator, its tail
// is the machine's (two vCPUs shared by the clients, the generator and ingest, and by other
// tenants of the host) with no quotes code on the request's path or in its process — the
// floor under the last=30m figure. /healthz on ingest itself, the other control, also
// carries ingest's own goroutines competing for the process's two Ps.

// serveNoop serves the no-op control on addr until the process is killed (quotesbench
// -noop-server ADDR; the bench starts its own binary that way).
func serveNoop(addr string) error {
	srv := &http.Server{
		Addr: addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("ok\n"))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	return srv.ListenAndServe()
}

// startNoop starts the no-op control on a free loopback port and returns its base URL once
// it answers.
func (b *bench) startNoop(ctx context.Context, logDir string) (*proc.Process, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("no-op control: %w", err)
	}
	port, err := proc.FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := b.ps.Start(proc.Spec{Name: "noop-server", LogDir: logDir, Bin: self, Args: []string{"-noop-server", addr}})
	if err != nil {
		return nil, "", fmt.Errorf("no-op control: %w", err)
	}
	base := "http://" + addr
	if _, err := waitReady(ctx, base+"/", p, 10*time.Second); err != nil {
		p.Kill()
		return nil, "", fmt.Errorf("no-op control: %w", err)
	}
	return p, base, nil
}
