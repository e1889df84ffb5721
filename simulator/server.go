package simulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/coder/websocket"

	"github.com/quotesdev/quotes/feed"
)

// Defaults of ServerConfig.
const (
	// DefaultAddr is where the partner listens by default (SPEC §2).
	DefaultAddr = "127.0.0.1:8032"
	// DefaultQueueLimit is the default bound of messages queued for one connection.
	DefaultQueueLimit = 100_000
	// maxBatch is the largest number of messages published at once.
	maxBatch = 1024
	// drainTimeout bounds how long shutdown waits for connections to send what they
	// already hold before they are cut.
	drainTimeout = 3 * time.Second
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Options is the feed. Its Speed must not be SpeedMax: a server is paced.
	Options Options
	// Addr is the TCP address to listen on; "" means DefaultAddr, port 0 picks a free port.
	Addr string
	// Clock paces the feed; nil means the wall clock.
	Clock clock.Clock
	// Logger receives connection and shutdown logs; nil means slog.Default().
	Logger *slog.Logger
	// Record, if set, also receives the feed as recorded JSONL (SPEC §3) with the model's
	// virtual timestamps, exactly as Record would write it.
	Record io.Writer
	// QueueLimit bounds the messages queued for one connection (the snapshot of a new
	// /instruments connection not counted); 0 means DefaultQueueLimit.
	QueueLimit int
}

// Server is the partner simulator: a websocket server with the partner's two endpoints
// (SPEC §2), fed by a Model paced in real time.
//
//   - /instruments: on connect, one ADD per active instrument (sorted by ISIN), then every ADD
//     and DELETE as it happens.
//   - /quotes: every QUOTE from the moment of connection on; only active instruments quote.
//
// Each message is one text frame in the wire form of feed.AppendJSON. Every client gets the
// same stream. Slow clients: the generator never waits for a client. Each connection has a
// queue bounded by QueueLimit messages; a client that falls so far behind that its queue
// would overflow is disconnected and its queue freed, so memory stays bounded and the other
// clients are not affected: a write blocked on the full TCP connection is cut (the client
// sees the connection end), otherwise the close status is 1008 "client too slow". It may
// reconnect and gets a fresh snapshot. The queue limit must exceed the bursts of the feed
// (about Instruments/QuoteInterval × a few milliseconds at real speed).
//
// Shutdown (ctx done or Duration passed) sends each client what is queued for it, then a
// close frame with status 1001; a client that does not answer the close handshake delays
// Run by at most a few seconds.
type Server struct {
	opts       Options
	clk        clock.Clock
	log        *slog.Logger
	record     io.Writer
	queueLimit int
	ln         net.Listener

	mu       sync.Mutex
	closed   bool                     // no new connections
	active   map[feed.ISIN]string     // as published: ISIN → description
	subs     map[*subscriber]struct{} // all connections, both streams
	handlers sync.WaitGroup           // running connection handlers

	done       chan struct{}      // closed when the feed ends: connections close gracefully
	connCtx    context.Context    // cancelled to cut connections that do not finish in time
	connCancel context.CancelFunc // cancels connCtx

	// onChange, if set before Run (tests only), is called after every change a test may
	// wait for: a batch published, a connection's queue written, a client connected or
	// dropped. It must not block.
	onChange func()
}

// changed calls the test hook, if any.
func (s *Server) changed() {
	if s.onChange != nil {
		s.onChange()
	}
}

// NewServer validates cfg and listens on cfg.Addr. Call Run to serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Options.Validate(); err != nil {
		return nil, err
	}
	if cfg.Options.Speed == SpeedMax {
		return nil, errors.New("simulator: Speed max cannot be served: a server needs a real-time speed like 1x")
	}
	if cfg.QueueLimit < 0 {
		return nil, fmt.Errorf("simulator: QueueLimit %d: want 0 (default) or more", cfg.QueueLimit)
	}
	if cfg.QueueLimit == 0 {
		cfg.QueueLimit = DefaultQueueLimit
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("simulator: listen: %w", err)
	}
	connCtx, connCancel := context.WithCancel(context.Background())
	return &Server{
		opts:       cfg.Options,
		clk:        cfg.Clock,
		log:        cfg.Logger,
		record:     cfg.Record,
		queueLimit: cfg.QueueLimit,
		ln:         ln,
		active:     make(map[feed.ISIN]string, cfg.Options.Instruments),
		subs:       make(map[*subscriber]struct{}),
		done:       make(chan struct{}),
		connCtx:    connCtx,
		connCancel: connCancel,
	}, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns the websocket base URL of the server, e.g. "ws://127.0.0.1:8032".
func (s *Server) URL() string { return "ws://" + s.ln.Addr().String() }

// Handler returns the HTTP handler of the two endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /instruments", func(w http.ResponseWriter, r *http.Request) { s.serveStream(w, r, true) })
	mux.HandleFunc("GET /quotes", func(w http.ResponseWriter, r *http.Request) { s.serveStream(w, r, false) })
	return mux
}

// Run serves until ctx is done or the feed's Duration has passed, then shuts down
// gracefully: it stops accepting, closes every connection with a close frame (status 1001)
// after at most a few seconds of draining, and flushes the recording. It returns the
// statistics of the feed; the end of ctx is not an error. Run may be called once.
func (s *Server) Run(ctx context.Context) (Stats, error) {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(s.ln) }()

	model, err := NewModel(s.opts)
	if err != nil {
		return Stats{}, err
	}
	var rec *recorder
	if s.record != nil {
		rec = newRecorder(s.record, s.clk)
	}
	pub := publisher{s: s}
	var stats Stats
	err = drive(ctx, model, s.opts, s.clk, func(m *feed.Message, reused bool) error {
		stats.count(m, reused)
		if rec != nil {
			if err := rec.write(m); err != nil {
				return err
			}
		}
		pub.add(m)
		return nil
	}, func() error {
		pub.publish()
		if rec != nil {
			return rec.idle()
		}
		return nil
	}, func(m *feed.Message) {
		if m.Kind == feed.KindQuote {
			return
		}
		// Skipped (Options.Skip): only the active set follows, for the snapshots.
		s.mu.Lock()
		if m.Kind == feed.KindAdd {
			s.active[m.ISIN] = m.Description
		} else {
			delete(s.active, m.ISIN)
		}
		s.mu.Unlock()
	})
	pub.publish()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	if err == nil {
		s.log.Info("simulator: feed ended, shutting down", "messages", stats.Messages)
	}

	// Shutdown: no new connections, close the open ones gracefully, cut them if they do
	// not finish in time.
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	shutCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if serr := srv.Shutdown(shutCtx); serr != nil && err == nil {
		err = fmt.Errorf("simulator: shut down http: %w", serr)
	}
	if serr := <-serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("simulator: serve: %w", serr)
	}
	close(s.done)
	handlersDone := make(chan struct{})
	go func() { s.handlers.Wait(); close(handlersDone) }()
	select {
	case <-handlersDone:
	case <-time.After(drainTimeout):
		s.connCancel()
		<-handlersDone
	}
	s.connCancel()
	if rec != nil {
		if ferr := rec.flush(); ferr != nil && err == nil {
			err = ferr
		}
	}
	return stats, err
}

// batch is a run of encoded messages of one stream, shared read-only by every connection.
type batch struct {
	buf  []byte
	ends []int // end offset in buf of each message
}

func (b *batch) append(m *feed.Message) {
	b.buf = feed.AppendJSON(b.buf, m)
	b.ends = append(b.ends, len(b.buf))
}

func (b *batch) len() int { return len(b.ends) }

// frame returns message i.
func (b *batch) frame(i int) []byte {
	from := 0
	if i > 0 {
		from = b.ends[i-1]
	}
	return b.buf[from:b.ends[i]]
}

// publisher collects the messages the generator emits and publishes them in batches.
type publisher struct {
	s      *Server
	inst   *batch
	events []feed.Message // the ADDs and DELETEs of inst, to update the active set
	quotes *batch
}

func (p *publisher) add(m *feed.Message) {
	if m.Kind == feed.KindQuote {
		if p.quotes == nil {
			p.quotes = &batch{buf: make([]byte, 0, 64*64), ends: make([]int, 0, 64)}
		}
		p.quotes.append(m)
	} else {
		if p.inst == nil {
			p.inst = &batch{}
		}
		p.inst.append(m)
		p.events = append(p.events, *m)
	}
	if p.events != nil && len(p.events) >= maxBatch || p.quotes != nil && p.quotes.len() >= maxBatch {
		p.publish()
	}
}

// publish hands the pending batches to every connection, and applies the instrument events
// to the active set, atomically with respect to new connections taking their snapshot.
func (p *publisher) publish() {
	if p.inst == nil && p.quotes == nil {
		return
	}
	s := p.s
	s.mu.Lock()
	for i := range p.events {
		if e := &p.events[i]; e.Kind == feed.KindAdd {
			s.active[e.ISIN] = e.Description
		} else {
			delete(s.active, e.ISIN)
		}
	}
	for sub := range s.subs {
		b := p.quotes
		if sub.instruments {
			b = p.inst
		}
		if b != nil && !sub.push(b, s.queueLimit) {
			delete(s.subs, sub)
		}
	}
	s.mu.Unlock()
	p.inst, p.quotes, p.events = nil, nil, p.events[:0]
	s.changed()
}

// subscriber is one websocket connection's queue of batches.
type subscriber struct {
	instruments bool // the /instruments stream, else /quotes
	notify      chan struct{}
	cancel      context.CancelFunc // cuts the connection's writes

	mu       sync.Mutex
	queue    []*batch
	pending  int  // messages in queue
	overflow bool // the queue overflowed: the connection is being dropped
}

// push queues b, unless that would exceed limit messages: then it marks the subscriber
// overflowed, cuts its writes and returns false.
func (sub *subscriber) push(b *batch, limit int) bool {
	sub.mu.Lock()
	if sub.pending+b.len() > limit {
		sub.overflow = true
		sub.queue = nil
		sub.mu.Unlock()
		sub.cancel()
		return false
	}
	sub.queue = append(sub.queue, b)
	sub.pending += b.len()
	sub.mu.Unlock()
	select {
	case sub.notify <- struct{}{}:
	default:
	}
	return true
}

// take returns the queued batches and whether the queue overflowed.
func (sub *subscriber) take(spare []*batch) ([]*batch, bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	q := sub.queue
	sub.queue = spare[:0]
	return q, sub.overflow
}

func (sub *subscriber) done(n int) {
	sub.mu.Lock()
	sub.pending -= n
	sub.mu.Unlock()
}

// snapshot encodes one ADD per active instrument, sorted by ISIN. s.mu must be held.
func (s *Server) snapshot() *batch {
	isins := make([]feed.ISIN, 0, len(s.active))
	for isin := range s.active {
		isins = append(isins, isin)
	}
	slices.SortFunc(isins, func(a, b feed.ISIN) int { return bytes.Compare(a[:], b[:]) })
	b := &batch{buf: make([]byte, 0, len(isins)*80), ends: make([]int, 0, len(isins))}
	for _, isin := range isins {
		b.append(&feed.Message{Kind: feed.KindAdd, ISIN: isin, Description: s.active[isin]})
	}
	return b
}

// serveStream serves one websocket connection of the /instruments or /quotes stream.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, instruments bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	hw := &holdingWriter{ResponseWriter: w}
	c, err := websocket.Accept(hw, r, nil)
	if err != nil {
		s.log.Warn("simulator: websocket accept", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
		return
	}
	defer c.CloseNow()
	// Clients send nothing; reading handles pings and the close handshake.
	readCtx := c.CloseRead(context.Background())

	wctx, cancel := context.WithCancel(s.connCtx)
	defer cancel()
	sub := &subscriber{instruments: instruments, notify: make(chan struct{}, 1), cancel: cancel}
	var snap *batch
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close(websocket.StatusGoingAway, "shutting down")
		return
	}
	if instruments {
		snap = s.snapshot()
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	s.changed()
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
		s.changed()
	}()
	log := s.log.With("remote", r.RemoteAddr, "path", r.URL.Path)
	log.Info("simulator: client connected")

	// The snapshot goes first and does not count against the queue limit; events that
	// happen meanwhile queue up behind it.
	if snap != nil {
		err = s.write(wctx, c, hw.conn, snap)
	}
	var spare []*batch
	for err == nil {
		select {
		case <-readCtx.Done():
			log.Info("simulator: client disconnected")
			return
		case <-s.done:
			// The feed ended: send what is queued (bounded by drainTimeout), then close.
			if _, err := s.send(wctx, c, hw.conn, sub, spare); err == nil {
				c.Close(websocket.StatusGoingAway, "feed ended")
			}
			return
		case <-wctx.Done():
			err = wctx.Err()
		case <-sub.notify:
			spare, err = s.send(wctx, c, hw.conn, sub, spare)
			s.changed()
		}
	}
	if _, overflow := sub.take(nil); overflow {
		log.Warn("simulator: client too slow, dropped", "queue_limit", s.queueLimit)
		c.Close(websocket.StatusPolicyViolation, "client too slow")
	} else if readCtx.Err() != nil {
		log.Info("simulator: client disconnected")
	} else if wctx.Err() == nil {
		log.Info("simulator: write failed, dropping client", "err", err)
	}
}

// send writes every queued batch; it returns the emptied queue slice for reuse.
func (s *Server) send(ctx context.Context, c *websocket.Conn, hc *heldConn, sub *subscriber, spare []*batch) ([]*batch, error) {
	q, overflow := sub.take(spare)
	if overflow {
		return nil, errors.New("simulator: queue overflow")
	}
	for i, b := range q {
		if err := s.write(ctx, c, hc, b); err != nil {
			return nil, err
		}
		sub.done(b.len())
		q[i] = nil
	}
	return q[:0], nil
}

// write sends the messages of b, one text frame each, gathered into few TCP writes (hc).
//
// ctx ends the batch's writes by closing the connection (as Conn.Write does for its own
// context), with one hook for the batch: Conn.Write registers a context.AfterFunc for
// every call whose context can end, an eighth of the generator's CPU at 50,000 quotes a
// second, so the frames are written with a context that cannot. The hook also covers the
// flush of the held frames, which no Conn.Write context did.
func (s *Server) write(ctx context.Context, c *websocket.Conn, hc *heldConn, b *batch) error {
	stop := context.AfterFunc(ctx, func() { c.CloseNow() })
	defer stop()
	frameCtx := context.WithoutCancel(ctx)
	hc.hold()
	for j := 0; j < b.len(); j++ {
		if err := c.Write(frameCtx, websocket.MessageText, b.frame(j)); err != nil {
			_ = hc.release() // the write error is the one to report
			return fmt.Errorf("simulator: write: %w", err)
		}
	}
	return hc.release()
}
