package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/store"
)

// Defaults of NATSOptions.
const (
	DefaultNATSStream      = "QUOTES_ALERTS"
	DefaultDuplicateWindow = 24 * time.Hour
	DefaultTimeout         = 10 * time.Second
)

// NATSOptions configure a NATSSink.
type NATSOptions struct {
	// URL is nats://HOST[:PORT]/SUBJECT (tls:// for TLS; user:password@ allowed): the
	// server and the subject the events are published on (no wildcards).
	URL string
	// Stream is the name of the stream created when no stream captures the subject yet
	// (default DefaultNATSStream). A stream that already captures it is used as it is.
	Stream string
	// DuplicateWindow is the duplicate window of a stream the sink creates (default 24h):
	// a flush redone later than this after its first attempt (a crash, then a restart much
	// later) may store its events twice. An existing stream's smaller window is logged.
	DuplicateWindow time.Duration
	// Timeout bounds each publish (until JetStream's ack) and each stream request
	// (default 10s).
	Timeout time.Duration
	// Name is the outbox consumer name (default NATSConsumerName).
	Name   string
	Filter Filter
	// Clock stamps LastSuccess (default: the wall clock).
	Clock  clock.Clock
	Logger *slog.Logger
}

// NATSSink publishes hot events to a NATS JetStream stream (see the package doc).
type NATSSink struct {
	base
	opts    NATSOptions
	subject string
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  string // the stream capturing subject, once verified
}

// ParseNATSURL splits nats://HOST:PORT/SUBJECT into the server URL (port 4222 by default)
// and the subject.
func ParseNATSURL(s string) (server, subject string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("alert: NATS URL %q: %w", s, err)
	}
	if u.Scheme != "nats" && u.Scheme != "tls" {
		return "", "", fmt.Errorf("alert: NATS URL %q: scheme must be nats:// or tls://", s)
	}
	if u.Hostname() == "" {
		return "", "", fmt.Errorf("alert: NATS URL %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("alert: NATS URL %q: unexpected query or fragment", s)
	}
	subject = strings.TrimPrefix(u.Path, "/")
	if err := checkSubject(subject); err != nil {
		return "", "", fmt.Errorf("alert: NATS URL %q: %w", s, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	srv := url.URL{Scheme: u.Scheme, User: u.User, Host: host}
	return srv.String(), subject, nil
}

// checkSubject accepts a subject to publish on: dot-separated non-empty tokens without
// wildcards or white space.
func checkSubject(s string) error {
	if s == "" {
		return errors.New("no subject (want nats://HOST:PORT/SUBJECT)")
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n*>/") {
			return fmt.Errorf("subject %q: want dot-separated tokens without wildcards, '/' or spaces", s)
		}
	}
	return nil
}

// NewNATSSink checks the options and connects in the background: a server that is down
// now is retried, and delivery waits for it (the outbox keeps the backlog). The stream is
// created or verified on the first Write.
func NewNATSSink(opts NATSOptions) (*NATSSink, error) {
	server, subject, err := ParseNATSURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.Stream == "" {
		opts.Stream = DefaultNATSStream
	}
	if strings.ContainsAny(opts.Stream, " \t\r\n.*>/\\") {
		return nil, fmt.Errorf("alert: NATS stream name %q: no spaces, '.', '*', '>', '/' or '\\' allowed", opts.Stream)
	}
	if opts.DuplicateWindow <= 0 {
		opts.DuplicateWindow = DefaultDuplicateWindow
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Name == "" {
		opts.Name = NATSConsumerName
	}
	s := &NATSSink{base: newBase(opts.Name, opts.Filter, opts.Clock, opts.Logger), opts: opts, subject: subject}
	log := s.log.With("sink", opts.Name)
	nc, err := nats.Connect(server,
		nats.Name("quotes alerts"),
		nats.Timeout(opts.Timeout),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "server", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("alert: connect to NATS %s: %w", redact(server), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("alert: NATS JetStream client: %w", err)
	}
	s.nc, s.js = nc, js
	return s, nil
}

func redact(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Subject returns the subject the sink publishes on.
func (s *NATSSink) Subject() string { return s.subject }

// Stream returns the stream the events go to, once the first Write has verified or created
// it ("" before).
func (s *NATSSink) Stream() string { return s.stream }

// Close closes the connection.
func (s *NATSSink) Close() error {
	s.nc.Close()
	return nil
}

// Write implements export.Sink: it publishes the flush's hot events that pass the filter,
// in order, each waiting for its ack.
func (s *NATSSink) Write(ctx context.Context, flushID uint64, items []store.OutboxItem) error {
	return s.write(ctx, flushID, items, s.publish)
}

func (s *NATSSink) publish(ctx context.Context, e *hot.Event) (outcome, error) {
	if s.stream == "" {
		if err := s.ensureStream(ctx); err != nil {
			return 0, err
		}
	}
	id := strconv.FormatUint(e.ID, 10)
	msg := &nats.Msg{Subject: s.subject, Data: e.AppendJSON(make([]byte, 0, 192)), Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set("Content-Type", "application/json")
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(s.stream))
	if err != nil {
		return 0, fmt.Errorf("publish to NATS subject %s (stream %s): %w", s.subject, s.stream, err)
	}
	if ack.Duplicate {
		return duplicate, nil
	}
	return delivered, nil
}

// ensureStream finds the stream capturing the subject, or creates it.
func (s *NATSSink) ensureStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	name, err := s.js.StreamNameBySubject(ctx, s.subject)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err := s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        s.opts.Stream,
			Description: "quotes hot events (SPEC §4.5), Nats-Msg-Id = event id",
			Subjects:    []string{s.subject},
			Storage:     jetstream.FileStorage,
			Duplicates:  s.opts.DuplicateWindow,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("NATS stream %s exists but does not capture subject %s: add the subject to it, or choose another stream name", s.opts.Stream, s.subject)
		}
		if err != nil {
			return fmt.Errorf("create NATS stream %s for subject %s: %w", s.opts.Stream, s.subject, err)
		}
		s.log.Info("created NATS stream", "sink", s.name, "stream", s.opts.Stream, "subject", s.subject, "duplicate_window", s.opts.DuplicateWindow)
		name = s.opts.Stream
	case err != nil:
		return fmt.Errorf("look up the NATS stream of subject %s: %w", s.subject, err)
	default:
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("NATS stream %s: %w", name, err)
		}
		cfg := st.CachedInfo().Config
		if cfg.Duplicates < s.opts.DuplicateWindow {
			s.log.Warn("the NATS stream's duplicate window is shorter than configured: a flush redone later than it after a crash may store events twice",
				"sink", s.name, "stream", name, "duplicate_window", cfg.Duplicates, "wanted", s.opts.DuplicateWindow)
		}
	}
	s.stream = name
	return nil
}
