package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
)

// Defaults of Options.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultHotKeepAlive   = 15 * time.Second
	// DefaultLast is the range of a candles request without parameters: the last 30 minutes.
	DefaultLast = 30
	// MaxMinutes bounds the minutes one candles request may select (?last= or from/to).
	MaxMinutes = 100_000
)

// contentTypeJSON is the Content-Type of every JSON response.
const contentTypeJSON = "application/json; charset=utf-8"

// Options configure the handler NewHandler returns.
type Options struct {
	// Backend answers the queries. Required.
	Backend Backend
	// Ready reports readiness for GET /readyz: nil error means ready (recovery done, source
	// connected); otherwise /readyz answers 503 with {"error": err.Error()}. A nil func is
	// always ready.
	Ready func() error
	// Gatherer is served on GET /metrics (Prometheus text format). Nil: /metrics answers 404.
	Gatherer prometheus.Gatherer
	// Registerer receives the HTTP metrics (quotes_http_requests_total,
	// quotes_http_request_duration_seconds, quotes_http_sse_streams). Nil: not registered.
	Registerer prometheus.Registerer
	// Logger receives failed requests (500) and stream errors; default slog.Default().
	Logger *slog.Logger
	// RequestTimeout bounds every request except Server-Sent Event streams (default 10s);
	// a request that takes longer answers 503 {"error":"request timed out"}.
	RequestTimeout time.Duration
	// Clock drives the SSE keep-alive comments; default the wall clock.
	Clock clock.Clock
	// HotKeepAlive is the interval of the SSE keep-alive comments (default 15s).
	HotKeepAlive time.Duration
	// Admin, if set, serves /admin/…: the operations other commands on the same data
	// directory ask the running process for (it authenticates them itself).
	Admin http.Handler
	// Hot, if set, serves GET /hot (JSON and event stream) instead of the Backend's hot
	// events, behind the same authentication: the routing front's merged streams.
	Hot http.Handler
	// HotWindow is the pipeline's hot window (default hot.DefaultWindow): a paged GET
	// /instruments and the web page show each instrument's change over it.
	HotWindow time.Duration
	// AuthToken, when not empty, is the bearer token every request but GET /healthz must
	// carry (see auth.go). Required beyond loopback: see CheckBind.
	AuthToken string
	// LocalToken, when not empty, is accepted besides AuthToken: the token of the data
	// directory's running process (engine's running.token), which other commands on the same
	// directory send.
	LocalToken string
}

// Routes, as the route label of the HTTP metrics.
const (
	routeInstruments = "/instruments"
	routeCandles     = "/instruments/{isin}/candles"
	routeLast30m     = "/last30m/{isin}"
	routeCandlestick = "/candlesticks"
	routeHot         = "/hot"
	routeMetrics     = "/metrics"
	routeHealthz     = "/healthz"
	routeReadyz      = "/readyz"
	routeAdmin       = "/admin/"
	routeUnmatched   = "unmatched"
)

// handler is the http.Handler of NewHandler.
type handler struct {
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *httpMetrics
	bufs    sync.Pool // *[]byte response buffers of the candles endpoints
	views   sync.Pool // *[]Candle answers of the candles endpoints (NowBackend)
}

// NewHandler returns the HTTP API of SPEC §6 over opts.Backend:
//
//	GET /instruments                                  active instruments, sorted by ISIN
//	GET /instruments?q=&sort=&limit=&offset=          one page of them, with the change (instrumentsPage)
//	GET /                                             the web page (SPEC §13; registerWeb)
//	GET /instruments/{isin}/candles[?last=30m | ?from=RFC3339&to=RFC3339]
//	GET /last30m/{isin}, GET /candlesticks?isin=…     aliases (last 30 minutes)
//	GET /hot  (Accept: text/event-stream or ?stream=1) Server-Sent Events, resumable with Last-Event-ID
//	GET /hot[?since=RFC3339&after=ID&limit=N]         hot events as a JSON array (polling)
//	GET /metrics, /healthz, /readyz
//
// Candles: ?last is a Go duration rounded up to whole minutes (at most MaxMinutes); from/to
// go together and span at most MaxMinutes; no parameter means the last 30 minutes. Hot
// events (JSON): since defaults to everything stored (the store keeps at least the hot
// window), after to 0 and limit to 0 (no limit). A stream without Last-Event-ID starts
// with the events stored after it connected.
//
// Errors are JSON {"error":"…"}: 400 for a malformed ISIN or parameter (named in the
// message, quoting at most the first 64 bytes of the offending input), 404 for an unknown or
// deleted instrument or path, 405 for a method other than GET or HEAD, 503 for a timeout,
// 500 otherwise (logged). With Options.AuthToken set, everything but /healthz answers 401
// without "Authorization: Bearer <token>" (see auth.go).
func NewHandler(opts Options) http.Handler {
	if opts.Backend == nil {
		panic("api: NewHandler without a Backend")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	if opts.HotKeepAlive <= 0 {
		opts.HotKeepAlive = DefaultHotKeepAlive
	}
	if opts.HotWindow <= 0 {
		opts.HotWindow = hot.DefaultWindow
	}
	h := &handler{opts: opts, log: opts.Logger, mux: http.NewServeMux(), metrics: newHTTPMetrics(opts.Registerer)}
	h.bufs.New = func() any { b := make([]byte, 0, 8<<10); return &b }
	h.views.New = func() any { cs := make([]Candle, 0, DefaultLast+1); return &cs }

	h.handle(routeInstruments, h.timeout(http.HandlerFunc(h.instruments)))
	pathISIN := func(r *http.Request) (string, bool) { return r.PathValue("isin"), true }
	h.handle(routeCandles, h.candleRoute("isin", pathISIN, false))
	h.handle(routeLast30m, h.candleRoute("isin", pathISIN, true))
	h.handle(routeCandlestick, h.candleRoute("parameter isin", func(r *http.Request) (string, bool) {
		q := r.URL.Query()
		return q.Get("isin"), q.Has("isin")
	}, false))
	hotJSON := h.timeout(http.HandlerFunc(h.hotJSON))
	h.handle(routeHot, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if opts.Hot != nil {
			opts.Hot.ServeHTTP(w, r) // the routing front's merged events (package front)
			return
		}
		if r.Method == http.MethodGet && wantsEventStream(r) {
			h.hotStream(w, r)
			return
		}
		hotJSON.ServeHTTP(w, r)
	}))
	metrics := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "metrics are not enabled")
	}))
	if opts.Gatherer != nil {
		metrics = promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{ErrorLog: slogPromLogger{h.log}})
	}
	h.handle(routeMetrics, h.timeout(metrics))
	h.handle(routeHealthz, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	}))
	h.handle(routeReadyz, h.timeout(http.HandlerFunc(h.readyz)))
	if opts.Admin != nil {
		h.mux.Handle("/admin/", h.instrument(routeAdmin, opts.Admin))
	}
	h.registerWeb() // GET / and /web/… (web.go)
	h.mux.Handle("/", h.instrument(routeUnmatched, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+clipInput(r.URL.Path))
	})))
	return h.withAuth(opts.AuthToken, opts.LocalToken, h.mux)
}

// handle registers next under pattern, GET and HEAD only, instrumented with the route's
// metrics.
func (h *handler) handle(pattern string, next http.Handler) {
	h.mux.Handle(pattern, h.instrument(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method "+clipInput(r.Method)+" not allowed on "+pattern+": use GET")
			return
		}
		next.ServeHTTP(w, r)
	})))
}

// timeout bounds next by the request timeout: it gets a context with that deadline, and the
// client gets 503 {"error":"request timed out"} if it is not done by then.
func (h *handler) timeout(next http.Handler) http.Handler {
	msg := fmt.Sprintf(`{"error":"request timed out after %s"}`, h.opts.RequestTimeout)
	th := http.TimeoutHandler(next, h.opts.RequestTimeout, msg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// TimeoutHandler copies the handler's headers over these on success; on a timeout
		// its JSON message goes out with this Content-Type.
		w.Header().Set("Content-Type", contentTypeJSON)
		th.ServeHTTP(w, r)
	})
}

func (h *handler) instruments(w http.ResponseWriter, r *http.Request) {
	if isPaged(r.URL.Query()) {
		h.instrumentsPage(w, r) // ?limit, offset, q, sort (instruments.go)
		return
	}
	ins, err := h.opts.Backend.Instruments(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if ins == nil {
		ins = []Instrument{}
	}
	b, err := json.Marshal(ins)
	if err != nil {
		h.fail(w, r, fmt.Errorf("encode instruments: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, append(b, '\n'))
}

// candleRoute serves a candles route. isin gives the request's raw ISIN (false: the
// parameter is missing), what names it in errors, and last30m fixes the range. A request
// whose answer the backend has at hand (NowBackend.CandlesNow: from memory, without
// waiting) is answered directly; any other — malformed, one the backend must wait or read
// for, all of them when the backend cannot tell — under the request timeout. The answer is
// the same either way; only the timeout, which needs a goroutine and a timer per request,
// is left out where there is nothing to time out.
func (h *handler) candleRoute(what string, isin func(*http.Request) (string, bool), last30m bool) http.Handler {
	slow := h.timeout(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := isin(r)
		if !ok {
			writeError(w, http.StatusBadRequest, "missing "+what+" (an ISIN: 12 characters A-Z, 0-9)")
			return
		}
		id, rng, msg := candleRequest(r, what, raw, last30m)
		if msg != "" {
			writeError(w, http.StatusBadRequest, msg)
			return
		}
		cs, err := h.opts.Backend.Candles(r.Context(), id, rng)
		h.writeCandles(w, r, id, cs, err)
	}))
	nb, ok := h.opts.Backend.(NowBackend)
	if !ok {
		return slow
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if raw, ok := isin(r); ok {
			if id, rng, msg := candleRequest(r, what, raw, last30m); msg == "" {
				vp := h.views.Get().(*[]Candle)
				cs, ok, err := nb.AppendCandlesNow((*vp)[:0], id, rng)
				if ok {
					h.writeCandles(w, r, id, cs, err)
				}
				if cap(cs) <= maxPooledCandles { // do not keep a huge from/to answer around
					*vp = cs[:0]
				}
				h.views.Put(vp)
				if ok {
					return
				}
			}
		}
		slow.ServeHTTP(w, r)
	})
}

// maxPooledCandles is the capacity up to which a candles answer's storage goes back to
// the handler's pool.
const maxPooledCandles = 1 << 12

// candleRequest parses the ISIN raw (named what in errors) and, unless last30m, the range
// parameters of r; msg says what is wrong with a malformed request.
func candleRequest(r *http.Request, what, raw string, last30m bool) (isin feed.ISIN, rng pipeline.CandleRange, msg string) {
	isin, ok := feed.ParseISIN(raw)
	if !ok {
		return isin, rng, fmt.Sprintf("%s %s: malformed ISIN, want 12 characters A-Z, 0-9", what, quoteInput(raw))
	}
	if last30m {
		return isin, pipeline.CandleRange{Last: DefaultLast}, ""
	}
	rng, err := parseCandleRange(r.URL.Query())
	if err != nil {
		return isin, rng, err.Error()
	}
	return isin, rng, ""
}

// writeCandles writes the answer to a candles request for isin.
func (h *handler) writeCandles(w http.ResponseWriter, r *http.Request, isin feed.ISIN, cs []Candle, err error) {
	if errors.Is(err, pipeline.ErrUnknownInstrument) {
		writeError(w, http.StatusNotFound, "instrument "+isin.String()+": "+pipeline.ErrUnknownInstrument.Error())
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	bp := h.bufs.Get().(*[]byte)
	b := appendCandlesJSON((*bp)[:0], cs)
	b = append(b, '\n')
	writeJSON(w, http.StatusOK, b)
	if cap(b) <= 1<<20 { // do not keep a huge from/to answer around
		*bp = b
		h.bufs.Put(bp)
	}
}

// parseCandleRange reads ?last= or ?from=&to= (default: the last 30 minutes).
func parseCandleRange(q url.Values) (pipeline.CandleRange, error) {
	hasLast, hasFrom, hasTo := q.Has("last"), q.Has("from"), q.Has("to")
	switch {
	case hasLast && (hasFrom || hasTo):
		return pipeline.CandleRange{}, errors.New("parameter last excludes from and to: give either last or from and to")
	case hasLast:
		n, err := parseLast(q.Get("last"))
		if err != nil {
			return pipeline.CandleRange{}, err
		}
		return pipeline.CandleRange{Last: n}, nil
	case hasFrom != hasTo:
		if hasFrom {
			return pipeline.CandleRange{}, errors.New("parameter to missing: from and to go together")
		}
		return pipeline.CandleRange{}, errors.New("parameter from missing: from and to go together")
	case hasFrom:
		from, err := parseTime("from", q.Get("from"))
		if err != nil {
			return pipeline.CandleRange{}, err
		}
		to, err := parseTime("to", q.Get("to"))
		if err != nil {
			return pipeline.CandleRange{}, err
		}
		if to <= from {
			return pipeline.CandleRange{}, fmt.Errorf("parameter to %s is not after from %s", quoteInput(q.Get("to")), quoteInput(q.Get("from")))
		}
		if uint64(to-from) > uint64(MaxMinutes)*uint64(time.Minute) {
			return pipeline.CandleRange{}, fmt.Errorf("parameters from, to: the range spans more than %d minutes", MaxMinutes)
		}
		return pipeline.CandleRange{From: from, To: to}, nil
	}
	return pipeline.CandleRange{Last: DefaultLast}, nil
}

// parseLast parses ?last= (a Go duration such as 30m or 2h) into whole minutes, rounded up.
func parseLast(s string) (int, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("parameter last %s: want a duration like 30m or 2h", quoteInput(s))
	}
	if d <= 0 {
		return 0, fmt.Errorf("parameter last %s: must be positive", quoteInput(s))
	}
	n := (d + time.Minute - 1) / time.Minute
	if n > MaxMinutes || d > time.Duration(math.MaxInt64)-time.Minute {
		return 0, fmt.Errorf("parameter last %s: at most %d minutes", quoteInput(s), MaxMinutes)
	}
	return int(n), nil
}

// maxNanos bounds the from/to/since parameters: Unix nanoseconds must represent them, with
// room for the minute arithmetic after them.
const maxNanos = math.MaxInt64 - int64(time.Hour)

// parseTime parses an RFC 3339 parameter into Unix nanoseconds.
func parseTime(name, s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("parameter %s %s: want RFC 3339, e.g. 2026-11-26T13:00:00Z", name, quoteInput(s))
	}
	if t.Before(time.Unix(0, 0)) || t.After(time.Unix(0, maxNanos)) {
		return 0, fmt.Errorf("parameter %s %s: out of range (1970 to 2262)", name, quoteInput(s))
	}
	return t.UnixNano(), nil
}

// hotJSON serves GET /hot?since=&after=&limit= as a JSON array.
func (h *handler) hotJSON(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since int64
	var after uint64
	limit := 0
	var err error
	if q.Has("since") {
		if since, err = parseTime("since", q.Get("since")); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if q.Has("after") {
		if after, err = strconv.ParseUint(q.Get("after"), 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter after %s: want an event id (a non-negative integer)", quoteInput(q.Get("after"))))
			return
		}
	}
	if q.Has("limit") {
		if limit, err = strconv.Atoi(q.Get("limit")); err != nil || limit < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("parameter limit %s: want a non-negative integer (0: no limit)", quoteInput(q.Get("limit"))))
			return
		}
	}
	evs, err := h.opts.Backend.HotEvents(r.Context(), after, since, limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, append(appendEventsJSON(nil, evs), '\n'))
}

func (h *handler) readyz(w http.ResponseWriter, _ *http.Request) {
	if h.opts.Ready != nil {
		if err := h.opts.Ready(); err != nil {
			var nr *NotReadyError
			if errors.As(err, &nr) && nr.Recovery != nil {
				b, _ := json.Marshal(struct {
					Error    string    `json:"error"`
					Recovery *Recovery `json:"recovery"`
				}{err.Error(), nr.Recovery})
				writeJSON(w, http.StatusServiceUnavailable, append(b, '\n'))
				return
			}
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, []byte(`{"status":"ready"}`+"\n"))
}

// fail answers 500 and logs err (unless the client has gone: then there is nobody to tell);
// a backend that is not ready yet (ErrNotReady) answers 503.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrNotReady) {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if r.Context().Err() != nil {
		writeError(w, http.StatusServiceUnavailable, "request cancelled: "+r.Context().Err().Error())
		return
	}
	h.log.Error("api: request failed", "method", quoteInput(r.Method), "path", quoteInput(r.URL.Path), "err", err)
	writeError(w, http.StatusInternalServerError, err.Error())
}

// writeJSON writes a JSON body with status.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", contentTypeJSON)
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError writes {"error": msg} with status.
func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Del("Content-Length")
	writeJSON(w, status, append(b, '\n'))
}

// appendCandlesJSON appends cs as a JSON array, byte for byte what encoding/json makes of
// []Candle, without reflection (the hot path of the API).
func appendCandlesJSON(b []byte, cs []Candle) []byte {
	b = append(b, '[')
	for i := range cs {
		c := &cs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"openTimestamp":"`...)
		b = c.OpenTimestamp.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","closeTimestamp":"`...)
		b = c.CloseTimestamp.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","openPrice":`...)
		b = c.OpenPrice.AppendText(b)
		b = append(b, `,"highPrice":`...)
		b = c.HighPrice.AppendText(b)
		b = append(b, `,"lowPrice":`...)
		b = c.LowPrice.AppendText(b)
		b = append(b, `,"closePrice":`...)
		b = c.ClosePrice.AppendText(b)
		b = append(b, `,"quotes":`...)
		b = strconv.AppendUint(b, c.Quotes, 10)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendEventsJSON appends evs as a JSON array of SPEC §4.5 objects.
func appendEventsJSON(b []byte, evs []hot.Event) []byte {
	b = append(b, '[')
	for i := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = evs[i].AppendJSON(b)
	}
	return append(b, ']')
}

// slogPromLogger adapts a slog.Logger to promhttp's error log.
type slogPromLogger struct{ log *slog.Logger }

func (l slogPromLogger) Println(v ...any) { l.log.Error("api: /metrics: " + fmt.Sprint(v...)) }

// Server is an HTTP server for the API that binds before it serves, and whose Shutdown also
// ends the Server-Sent Event streams (which would otherwise keep it waiting).
type Server struct {
	srv      *http.Server
	ln       net.Listener
	tls      bool
	stopping chan struct{}
	stopOnce sync.Once
}

// stopKey is the request-context key of the server's stopping channel.
type stopKey struct{}

// Listen binds addr (e.g. "127.0.0.1:5000"; port 0 picks a free one, see Addr) and returns a
// Server for h; call Serve to start answering.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", addr, err)
	}
	s := &Server{ln: ln, stopping: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), stopKey{}, (<-chan struct{})(s.stopping))
		},
	}
	return s, nil
}

// Addr returns the address the server is bound to, e.g. "127.0.0.1:5000".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until Shutdown; it then returns nil.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("api: serve on %s: %w", s.Addr(), err)
}

// Shutdown stops the server gracefully: it stops accepting, ends the event streams, and
// waits for the requests in flight until ctx is done; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stopping) })
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}

// stopping returns the channel closed when the Server that received r shuts down (nil, so
// never ready, when the handler runs under another server).
// Stopping returns a channel closed when the Server serving r shuts down (nil outside a
// Server): long-lived responses (event streams) end on it.
func Stopping(r *http.Request) <-chan struct{} { return stopping(r) }

// WantsEventStream reports whether r asks for Server-Sent Events (Accept:
// text/event-stream or ?stream=1).
func WantsEventStream(r *http.Request) bool { return wantsEventStream(r) }

func stopping(r *http.Request) <-chan struct{} {
	ch, _ := r.Context().Value(stopKey{}).(<-chan struct{})
	return ch
}

// wantsEventStream reports whether r asks for Server-Sent Events.
func wantsEventStream(r *http.Request) bool {
	q := r.URL.Query()
	if v := q.Get("stream"); v == "1" || v == "true" {
		return true
	}
	if q.Get("format") == "json" {
		return false
	}
	for _, a := range r.Header.Values("Accept") {
		if strings.Contains(a, "text/event-stream") {
			return true
		}
		if strings.Contains(a, "application/json") {
			return false
		}
	}
	// Polling parameters ask for the JSON array; everything else, plain curl included,
	// gets the stream.
	return !q.Has("since") && !q.Has("after") && !q.Has("limit")
}
