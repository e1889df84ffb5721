package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Authentication and TLS (SPEC §14). The API binds to loopback by default; bound anywhere
// else it must be protected by a bearer token (CheckBind), and may be served over TLS
// (ListenTLS).
//
// With Options.AuthToken set, every request except GET /healthz must carry
//
//	Authorization: Bearer <token>
//
// or it is answered 401 {"error":"…"} with WWW-Authenticate: Bearer realm="quotes" (counted
// in quotes_http_requests_total{route="unauthorized"}). Tokens are compared in constant time
// (of their SHA-256 digests, so not even the length leaks).

// routeUnauthorized is the route label of requests refused for a missing or wrong token.
const routeUnauthorized = "unauthorized"

// withAuth wraps next with the bearer-token check when token is not empty; also is a
// further token accepted then (the local token other commands on the same data directory
// read from it).
func (h *handler) withAuth(token, also string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	var want2 [sha256.Size]byte
	if also != "" {
		want2 = sha256.Sum256([]byte(also))
	}
	deny := h.instrument(routeUnauthorized, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="quotes"`)
		msg := "missing bearer token: send Authorization: Bearer <token>"
		if _, ok := r.Header["Authorization"]; ok {
			msg = "invalid bearer token"
		}
		writeError(w, http.StatusUnauthorized, msg)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /healthz, and the page and its assets (they hold no data: the page sends the
		// token on every request it makes) are open.
		if r.URL.Path == routeHealthz || r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, routeAssets) {
			next.ServeHTTP(w, r)
			return
		}
		got, ok := bearer(r)
		sum := sha256.Sum256([]byte(got))
		match := subtle.ConstantTimeCompare(sum[:], want[:]) == 1
		if also != "" && subtle.ConstantTimeCompare(sum[:], want2[:]) == 1 {
			match = true
		}
		if !ok || !match {
			deny.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer returns the token of an "Authorization: Bearer <token>" header (scheme case-
// insensitive, RFC 6750), or, without one, of an access_token query parameter (RFC 6750
// §2.3: what a browser's EventSource, which cannot set headers, can send).
func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if v == "" {
		if tok := r.URL.Query().Get("access_token"); tok != "" {
			return tok, true
		}
	}
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// IsLoopback reports whether addr ("host:port") binds to loopback only: an IP literal in
// 127.0.0.0/8 or ::1, or "localhost". An empty host (all interfaces) and every other name
// count as beyond loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if i := strings.IndexByte(host, '%'); i >= 0 { // zone of a link-local address
		host = host[:i]
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckBind refuses to serve the API beyond loopback without authentication: it returns an
// error saying how to set a token when addr is not loopback (see IsLoopback) and token is
// empty, nil otherwise.
func CheckBind(addr, token string) error {
	if token != "" || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("--http %s is reachable beyond loopback and would serve everything (/metrics included) without authentication: "+
		"set a bearer token with --auth-token or QUOTES_AUTH_TOKEN (clients send \"Authorization: Bearer TOKEN\"; add --tls-cert/--tls-key for TLS), "+
		"or bind to 127.0.0.1", addr)
}

// ListenTLS is Listen serving HTTPS with the certificate chain and key in the PEM files
// certFile and keyFile (TLS 1.2 or later); they are read now, so a bad file fails here.
func ListenTLS(addr string, h http.Handler, certFile, keyFile string) (*Server, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("api: TLS needs both a certificate and a key file (got cert %q, key %q)", certFile, keyFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("api: load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	s, err := Listen(addr, h)
	if err != nil {
		return nil, err
	}
	s.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	s.ln = tls.NewListener(s.ln, s.srv.TLSConfig)
	s.tls = true
	return s, nil
}

// URL returns the base URL of the server: "http://ADDR" or "https://ADDR".
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// ClientOptions configure a Client beyond its base URL.
type ClientOptions struct {
	// Token is sent as "Authorization: Bearer <Token>" when not empty.
	Token string
	// TLS configures HTTPS (e.g. RootCAs for a self-signed certificate); nil: the system
	// roots.
	TLS *tls.Config
}

// NewClientWith returns a client for the API at base ("http://…" or "https://…") with a
// token and TLS settings.
func NewClientWith(base string, o ClientOptions) *Client {
	c := NewClient(base)
	c.token = o.Token
	if o.TLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = o.TLS
		c.http.Transport = tr
	}
	return c
}
