package alert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/store"
)

// ConsumerPrefix starts the outbox consumer name of every alert sink.
const ConsumerPrefix = "alerts-"

// NATSConsumerName is the default outbox consumer name of the NATS sink. There is one per
// data directory: pointing it at another server or subject continues from the same
// position.
const NATSConsumerName = ConsumerPrefix + "nats"

// WebhookConsumerName returns the default outbox consumer name of the webhook sink for url:
// "alerts-webhook-" and 12 hex digits of its SHA-256, so each URL has its own position.
func WebhookConsumerName(url string) string {
	h := sha256.Sum256([]byte(url))
	return ConsumerPrefix + "webhook-" + hex.EncodeToString(h[:6])
}

// Sink is an alert sink: an outbox sink (export.Sink) with alert counters.
type Sink interface {
	export.Sink
	// Stats returns the sink's counters.
	Stats() Stats
	// Close releases the sink's connections.
	Close() error
}

// Stats are an alert sink's counters.
type Stats struct {
	// Sink is the sink's consumer name.
	Sink string
	// Delivered counts events the destination accepted (a webhook's 2xx, a JetStream ack).
	Delivered uint64
	// Duplicates counts JetStream acks that reported a duplicate (a redelivered event
	// JetStream already had: it is stored once). They are included in Delivered.
	Duplicates uint64
	// Retried counts failed attempts that are retried: 429, 5xx, transport errors,
	// timeouts, a broker that is down.
	Retried uint64
	// Rejected counts events a webhook refused with a status other than 2xx, 429 and 5xx;
	// they are logged and not retried.
	Rejected uint64
	// Filtered counts hot events the sink's Filter left out.
	Filtered uint64
	// LastSuccess is the time (the sink's clock) of the last delivered event; zero: none yet.
	LastSuccess time.Time
	// LastError is the last failure's message while the destination is failing.
	LastError string
}

// outcome is what happened to one event.
type outcome uint8

const (
	delivered outcome = iota
	duplicate
	rejected
)

// base is what the sinks share: the filter, the counters, and the progress through a flush
// whose Write failed, so that its retry (the same flush id and items) resumes after the
// events already delivered instead of sending them again.
type base struct {
	name   string
	filter Filter
	clock  clock.Clock
	log    *slog.Logger

	mu    sync.Mutex // guards stats
	stats Stats

	// Only the goroutine calling Write touches these.
	resumeID  uint64 // flush id of the failed Write…
	resumeAt  int    // …and the index of its first item not yet delivered
	resumable bool
}

func newBase(name string, f Filter, clk clock.Clock, log *slog.Logger) base {
	if clk == nil {
		clk = clock.New()
	}
	if log == nil {
		log = slog.Default()
	}
	return base{name: name, filter: f, clock: clk, log: log, stats: Stats{Sink: name}}
}

// Name implements export.Sink.
func (b *base) Name() string { return b.name }

// Stats returns the sink's counters.
func (b *base) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// write delivers the hot events of a flush that pass the filter, one at a time in item
// order, with send. A send error stops the flush: it is counted as retried and returned,
// and the consumer's retry of the same flush resumes with that event.
func (b *base) write(ctx context.Context, flushID uint64, items []store.OutboxItem, send func(ctx context.Context, e *hot.Event) (outcome, error)) error {
	start := 0
	if b.resumable && b.resumeID == flushID && b.resumeAt <= len(items) {
		start = b.resumeAt
	}
	b.resumable = false
	for i := start; i < len(items); i++ {
		it := &items[i]
		if it.Kind != store.OutboxHot {
			continue
		}
		if !b.filter.Match(&it.Event) {
			b.mu.Lock()
			b.stats.Filtered++
			b.mu.Unlock()
			continue
		}
		out, err := send(ctx, &it.Event)
		if err != nil {
			b.resumeID, b.resumeAt, b.resumable = flushID, i, true
			b.mu.Lock()
			b.stats.Retried++
			b.stats.LastError = err.Error()
			b.mu.Unlock()
			return fmt.Errorf("alert %s: event %d: %w", b.name, it.Event.ID, err)
		}
		b.mu.Lock()
		switch out {
		case delivered, duplicate:
			b.stats.Delivered++
			if out == duplicate {
				b.stats.Duplicates++
			}
			b.stats.LastSuccess = b.clock.Now()
			b.stats.LastError = ""
		case rejected:
			b.stats.Rejected++
		}
		b.mu.Unlock()
	}
	return nil
}

// PruneConsumers unregisters the alert consumers (names starting with ConsumerPrefix)
// registered in st that are not in keep — sinks no longer configured — so that retention
// stops keeping the outbox for them, and returns their names. Their undelivered events are
// dropped with them.
func PruneConsumers(st *store.Store, keep ...string) ([]string, error) {
	cs, err := st.Consumers()
	if err != nil {
		return nil, fmt.Errorf("alert: prune consumers: %w", err)
	}
	var pruned []string
outer:
	for name := range cs {
		if !strings.HasPrefix(name, ConsumerPrefix) {
			continue
		}
		for _, k := range keep {
			if k == name {
				continue outer
			}
		}
		if err := st.UnregisterConsumer(name); err != nil {
			return pruned, fmt.Errorf("alert: prune consumers: %w", err)
		}
		pruned = append(pruned, name)
	}
	return pruned, nil
}

// Backlog returns the number of hot events in the outbox that the consumer c has not
// processed yet (before its sink's filter).
func Backlog(st *store.Store, c *export.Consumer) (int, error) {
	applied, err := st.Applied()
	if err != nil {
		return 0, fmt.Errorf("alert: backlog of %s: %w", c.Name(), err)
	}
	n, err := st.CountOutboxHot(c.Stats().Watermark+1, applied)
	if err != nil {
		return 0, fmt.Errorf("alert: backlog of %s: %w", c.Name(), err)
	}
	return n, nil
}
