package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/wal"
)

// selfSigned writes a fresh self-signed certificate for 127.0.0.1 and its key as PEM files
// and returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "quotes test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestAuthOverTLS serves the API with a token over TLS and talks to it with real clients.
func TestAuthOverTLS(t *testing.T) {
	const token = "s3cret-token"
	p := openPipeline(t, wal.SyncNone)
	scenario(t, p)
	reg := prometheus.NewRegistry()
	h := NewHandler(Options{Backend: PipelineBackend{P: p}, Logger: quietLogger(), AuthToken: token,
		Gatherer: reg, Registerer: reg})
	certFile, keyFile, pool := selfSigned(t)
	srv, err := ListenTLS("127.0.0.1:0", h, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	base := srv.URL()
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("URL() = %s", base)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	call := func(path, auth string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, string(readBody(t, resp))
	}

	if code, _, body := call("/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz without a token: %d %s", code, body)
	}
	for _, path := range []string{"/instruments", "/metrics", "/readyz", "/hot", "/last30m/" + isinA, "/nope"} {
		code, hd, body := call(path, "")
		if code != http.StatusUnauthorized || hd.Get("WWW-Authenticate") != `Bearer realm="quotes"` ||
			!strings.Contains(body, "missing bearer token") {
			t.Errorf("%s without a token: %d %v %s", path, code, hd, body)
		}
		for _, bad := range []string{"Bearer wrong", "Bearer " + token + "x", "Basic " + token, "Bearer", token} {
			if code, _, body := call(path, bad); code != http.StatusUnauthorized {
				t.Errorf("%s with %q: %d %s", path, bad, code, body)
			}
		}
	}
	code, _, body := call("/instruments", "Bearer "+token)
	var ins []Instrument
	if code != http.StatusOK || json.Unmarshal([]byte(body), &ins) != nil || len(ins) != 2 {
		t.Fatalf("/instruments with the token: %d %s", code, body)
	}
	if code, _, _ := call("/instruments", "bearer "+token); code != http.StatusOK {
		t.Errorf("lower-case scheme: %d", code)
	}
	code, _, body = call("/metrics", "Bearer "+token)
	if code != http.StatusOK || !strings.Contains(body, `quotes_http_requests_total{code="401",route="unauthorized"}`) {
		t.Errorf("/metrics with the token: %d, refusals not counted:\n%s", code, body)
	}

	// Plain HTTP to the TLS port fails; an untrusting client fails.
	if resp, err := http.Get("http://" + srv.Addr() + "/healthz"); err == nil {
		b := readBody(t, resp)
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200: %s", b)
		}
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("a client without the certificate's root connected")
	}

	// The API client with and without the token.
	c := NewClientWith(base, ClientOptions{Token: token, TLS: &tls.Config{RootCAs: pool}})
	if got, err := c.Instruments(context.Background()); err != nil || len(got) != 2 {
		t.Fatalf("client with token: %v, %v", got, err)
	}
	c = NewClientWith(base, ClientOptions{TLS: &tls.Config{RootCAs: pool}})
	if _, err := c.Instruments(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("client without token: %v", err)
	}
}

func TestIsLoopbackAndCheckBind(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.1.2.3:80": true, "[::1]:5000": true, "localhost:5000": true, "LOCALHOST:1": true,
		"0.0.0.0:5000": false, ":5000": false, "[::]:5000": false, "192.168.1.10:5000": false,
		"example.com:5000": false, "[fe80::1%eth0]:5000": false, "": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
		err := CheckBind(addr, "")
		if (err == nil) != want {
			t.Errorf("CheckBind(%q, no token) = %v", addr, err)
		}
		if err != nil {
			for _, s := range []string{addr, "--auth-token", "QUOTES_AUTH_TOKEN", "127.0.0.1"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("CheckBind(%q) message lacks %q: %v", addr, s, err)
				}
			}
		}
		if err := CheckBind(addr, "tok"); err != nil {
			t.Errorf("CheckBind(%q, token) = %v", addr, err)
		}
	}
}

func TestListenTLSBadFiles(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	for name, files := range map[string][2]string{
		"no key":        {certFile, ""},
		"missing files": {filepath.Join(t.TempDir(), "nope.pem"), keyFile},
		"swapped":       {keyFile, certFile},
	} {
		if s, err := ListenTLS("127.0.0.1:0", http.NotFoundHandler(), files[0], files[1]); err == nil {
			s.Shutdown(context.Background())
			t.Errorf("%s: ListenTLS succeeded", name)
		}
	}
}

// TestErrorBodiesQuoteAShortPrefix: a 64 KB bad parameter is not echoed back.
func TestErrorBodiesQuoteAShortPrefix(t *testing.T) {
	srv, _ := newScenarioServer(t)
	long := strings.Repeat("A", 40_000)
	for _, path := range []string{
		"/instruments/" + long + "/candles",
		"/candlesticks?isin=" + long,
		"/instruments/" + isinA + "/candles?last=" + long,
		"/instruments/" + isinA + "/candles?from=" + long + "&to=x",
		"/hot?since=" + long,
		"/hot?after=" + long,
		"/hot?limit=" + long,
		"/" + long,
	} {
		resp := get(t, srv.URL+path)
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusNotFound {
			t.Errorf("%.40s…: status %d", path, resp.StatusCode)
		}
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%.40s…: body %q: %v", path, body, err)
		}
		if len(body) > 300 || !(strings.Contains(e.Error, "…(40000 bytes)") || strings.Contains(e.Error, "…(40001 bytes)")) {
			t.Errorf("%.40s…: %d-byte body: %s", path, len(body), body)
		}
	}
}

func TestQuoteInput(t *testing.T) {
	for in, want := range map[string]string{
		"abc":                           `"abc"`,
		"a\x1b[2Jb":                     `"a\x1b[2Jb"`,
		strings.Repeat("x", 64):         `"` + strings.Repeat("x", 64) + `"`,
		strings.Repeat("x", 65):         `"` + strings.Repeat("x", 64) + `"…(65 bytes)`,
		strings.Repeat("x", 63) + "é!!": `"` + strings.Repeat("x", 63) + `"…(67 bytes)`,
	} {
		if got := quoteInput(in); got != want {
			t.Errorf("quoteInput(%q) = %s, want %s", in, got, want)
		}
	}
	if got := clipInput("/nope"); got != "/nope" {
		t.Errorf("clipInput = %s", got)
	}
	if got := clipInput("/a\nb"); got != `"/a\nb"` {
		t.Errorf("clipInput = %s", got)
	}
}

// TestAuthPageAndQueryToken: with a token, the page and its assets stay open (they hold no
// data), the data needs the token — as a header, or as access_token for the page's
// EventSource, which cannot set headers — and the local token is accepted too.
func TestAuthPageAndQueryToken(t *testing.T) {
	p := openPipeline(t, wal.SyncNone)
	srv := httptest.NewServer(NewHandler(Options{Backend: PipelineBackend{P: p}, Logger: quietLogger(), AuthToken: "s3cret", LocalToken: "local"}))
	defer srv.Close()
	for _, tc := range []struct {
		path, header string
		want         int
	}{
		{"/", "", 200},
		{"/web/app.js", "", 200},
		{"/instruments", "", 401},
		{"/instruments?access_token=wrong", "", 401},
		{"/instruments?access_token=s3cret", "", 200},
		{"/instruments", "Bearer s3cret", 200},
		{"/instruments", "Bearer local", 200},
		{"/hot?format=json&access_token=s3cret", "", 200},
	} {
		var h []string
		if tc.header != "" {
			h = []string{"Authorization", tc.header}
		}
		resp := get(t, srv.URL+tc.path, h...)
		readBody(t, resp)
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s (%q): %d, want %d", tc.path, tc.header, resp.StatusCode, tc.want)
		}
	}
}
