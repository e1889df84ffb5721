package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/store"
)

// The headers of a webhook request besides Content-Type.
const (
	// HeaderIdempotencyKey carries the event id: the same on every attempt.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of the body with the secret.
	HeaderSignature = "X-Quotes-Signature"
	// HeaderTest is "true" on the sample event of SendTest.
	HeaderTest = "X-Quotes-Test"
)

// maxResponseBody bounds how much of a response is read (for logs and SendTest).
const maxResponseBody = 64 << 10

// WebhookOptions configure a WebhookSink (and SendTest).
type WebhookOptions struct {
	// URL receives a POST per event (http:// or https://).
	URL string
	// Secret is the HMAC-SHA256 key of the signature (required).
	Secret []byte
	// Timeout bounds each request, response included (default 10s); a timeout is retried.
	Timeout time.Duration
	// Name is the outbox consumer name (default WebhookConsumerName(URL)).
	Name   string
	Filter Filter
	// Client, if set, sends the requests (its Timeout and redirect policy apply); the
	// default client does not follow redirects (a 3xx is a rejection: fix the URL).
	Client *http.Client
	// Clock stamps LastSuccess and SendTest's sample event (default: the wall clock).
	Clock  clock.Clock
	Logger *slog.Logger
}

// WebhookSink POSTs hot events to one URL (see the package doc).
type WebhookSink struct {
	base
	opts   WebhookOptions
	client *http.Client
	shown  string // the URL for logs and errors, password redacted
}

func (o *WebhookOptions) check() error {
	u, err := url.Parse(o.URL)
	if err != nil {
		return fmt.Errorf("alert: webhook URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("alert: webhook URL %s: want http:// or https:// and a host", redact(o.URL))
	}
	if len(o.Secret) == 0 {
		return errors.New("alert: webhook: a signing secret is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Client == nil {
		o.Client = &http.Client{
			Timeout:       o.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	return nil
}

// NewWebhookSink checks the options and returns the sink; nothing is sent yet.
func NewWebhookSink(opts WebhookOptions) (*WebhookSink, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = WebhookConsumerName(opts.URL)
	}
	return &WebhookSink{base: newBase(opts.Name, opts.Filter, opts.Clock, opts.Logger), opts: opts, client: opts.Client, shown: redact(opts.URL)}, nil
}

// URL returns the webhook's URL.
func (s *WebhookSink) URL() string { return s.opts.URL }

// Close releases idle connections.
func (s *WebhookSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// Write implements export.Sink: it POSTs the flush's hot events that pass the filter, one
// at a time, in order.
func (s *WebhookSink) Write(ctx context.Context, flushID uint64, items []store.OutboxItem) error {
	return s.write(ctx, flushID, items, s.post)
}

// Sign returns the X-Quotes-Signature value of body: "sha256=" and the hex HMAC-SHA256
// of body keyed with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature (an X-Quotes-Signature value) is body's signature with
// secret, in constant time: what a receiver checks.
func Verify(secret, body []byte, signature string) bool {
	hexSum, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// request builds the signed POST of body for event id.
func request(ctx context.Context, o *WebhookOptions, id string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "quotes-alerts")
	req.Header.Set(HeaderIdempotencyKey, id)
	req.Header.Set(HeaderSignature, Sign(o.Secret, body))
	return req, nil
}

// statusError is a response that is not a success.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("HTTP %d", e.status)
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
}

// retryable reports whether a response status is worth retrying: 429 and 5xx.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

func (s *WebhookSink) post(ctx context.Context, e *hot.Event) (outcome, error) {
	body := e.AppendJSON(make([]byte, 0, 192))
	id := strconv.FormatUint(e.ID, 10)
	req, err := request(ctx, &s.opts, id, body)
	if err != nil {
		return 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", s.shown, err)
	}
	snippet := readSnippet(resp.Body, 512)
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return delivered, nil
	case retryable(resp.StatusCode):
		return 0, fmt.Errorf("POST %s: %w", s.shown, &statusError{resp.StatusCode, snippet})
	}
	s.log.Warn("webhook rejected a hot event; it is not retried", "sink", s.name, "url", s.shown,
		"event", e.ID, "isin", e.ISIN.String(), "status", resp.StatusCode, "response", snippet)
	return rejected, nil
}

// readSnippet reads up to limit bytes of r as a single line (for logs), and drains a
// little more so that the connection can be reused.
func readSnippet(r io.Reader, limit int) string {
	b, _ := io.ReadAll(io.LimitReader(r, int64(limit)))
	io.Copy(io.Discard, io.LimitReader(r, maxResponseBody))
	return strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
}

// TestResponse is the answer of a webhook to SendTest.
type TestResponse struct {
	// Status is the HTTP status code, StatusText the status line's text ("200 OK").
	Status     int
	StatusText string
	Header     http.Header
	// Body is the response body (at most 64 KiB).
	Body []byte
	// Payload is the body that was sent, Signature its X-Quotes-Signature.
	Payload   []byte
	Signature string
	// Delivered reports whether the webhook accepted it (2xx).
	Delivered bool
}

// SampleEvent returns the sample event of SendTest: id 0 (never a real event id: those are
// WAL sequences, from 1), ISIN TEST00000000, a 10.5 % rise over five minutes ending at now.
func SampleEvent(now time.Time) hot.Event {
	isin, _ := feed.ParseISIN("TEST00000000")
	e := hot.Event{ID: 0, ISIN: isin, Incarnation: 0, TS: now.UnixNano(), Price: 110_500_000,
		ReferencePrice: 100_000_000, ReferenceTS: now.Add(-5 * time.Minute).UnixNano()}
	e.ChangePercent = hot.Change(e.Price, e.ReferencePrice)
	return e
}

// SendTest POSTs one signed sample event (SampleEvent at the options' clock; header
// X-Quotes-Test: true) to opts.URL and returns the webhook's answer, whatever its status.
// The error is for a request that got no answer (or bad options).
func SendTest(ctx context.Context, opts WebhookOptions) (TestResponse, error) {
	if err := opts.check(); err != nil {
		return TestResponse{}, err
	}
	body := SampleEvent(opts.Clock.Now()).AppendJSON(nil)
	req, err := request(ctx, &opts, "0", body)
	if err != nil {
		return TestResponse{}, err
	}
	req.Header.Set(HeaderTest, "true")
	resp, err := opts.Client.Do(req)
	if err != nil {
		return TestResponse{}, fmt.Errorf("alert: test POST %s: %w", redact(opts.URL), err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return TestResponse{}, fmt.Errorf("alert: test POST %s: read response: %w", redact(opts.URL), err)
	}
	return TestResponse{
		Status: resp.StatusCode, StatusText: resp.Status, Header: resp.Header, Body: rb,
		Payload: body, Signature: req.Header.Get(HeaderSignature),
		Delivered: resp.StatusCode >= 200 && resp.StatusCode < 300,
	}, nil
}
