package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// The web page of SPEC §13 (GET /): index.html, our plain JavaScript and CSS, and the
// vendored chart library (TradingView lightweight-charts, standalone build, with its
// licence) that `make web` copies from web/node_modules. Everything is embedded, so the
// binary needs no files and the build needs no Node.
//
//go:embed web
var webFS embed.FS

// Routes of the web page, as the route label of the HTTP metrics.
const (
	routePage   = "/"
	routeAssets = "/web/"
)

// webAsset is one embedded file, ready to serve.
type webAsset struct {
	body        []byte
	contentType string
	etag        string
}

// webAssets are the embedded files by URL path ("/" for index.html, "/web/app.js", …).
var webAssets = loadWebAssets()

func loadWebAssets() map[string]webAsset {
	out := map[string]webAsset{}
	err := fs.WalkDir(webFS, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := webFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" || strings.HasPrefix(path.Base(p), "LICENSE") {
			ct = "text/plain; charset=utf-8"
		}
		a := webAsset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		out["/"+p] = a
		if p == "web/index.html" {
			out["/"] = a
		}
		return nil
	})
	if err != nil {
		panic("api: read the embedded web page: " + err.Error())
	}
	return out
}

// pageCSP is the Content-Security-Policy of the page: our own scripts only (partner strings
// are only ever set as text, and this stops anything that slipped through from running).
// Inline styles are allowed for the chart library's attribution logo, a <style> element.
const pageCSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// registerWeb registers the web page: GET / (index.html) and GET /web/… (its assets).
func (h *handler) registerWeb() {
	h.mux.Handle("/{$}", h.instrument(routePage, getOnly(routePage, http.HandlerFunc(serveWebAsset))))
	h.mux.Handle(routeAssets, h.instrument(routeAssets, getOnly(routeAssets, http.HandlerFunc(serveWebAsset))))
}

// getOnly answers 405 to methods other than GET and HEAD.
func getOnly(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+route+": use GET")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serveWebAsset serves the embedded file at r's path, revalidated by ETag (the files change
// only with the binary).
func serveWebAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := webAssets[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, "no such file: "+r.URL.Path)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path == "/" {
		hd.Set("Content-Security-Policy", pageCSP)
		hd.Set("Referrer-Policy", "no-referrer")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
