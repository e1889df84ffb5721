// Package alert delivers hot events (SPEC §4.5, §12) to the outside: NATS JetStream
// (NATSSink) and webhooks (WebhookSink, one per URL).
//
// The sinks are outbox sinks (export.Sink), run by an export.Consumer each, like the
// ClickHouse sink: the pipeline writes every hot event to the store's outbox
// (store.OutboxHot) in the same transaction as the store, keyed by the WAL sequence of the
// record that produced it; a consumer plans a flush after its durable watermark, records it
// as an intent, calls Write with it, and advances its watermark when Write succeeds. A
// sink that is down only grows the outbox on disk (retention keeps what a registered
// consumer has not delivered); memory stays at one flush. The sinks skip every other item
// kind (candles, instrument events) and the events their Filter leaves out.
//
// Delivery guarantees:
//
//   - NATS: each event is published with Nats-Msg-Id = event id and Write returns only when
//     JetStream has acknowledged every event of the flush, in outbox order. A flush redone
//     after a failure or a crash publishes the same ids again, and JetStream's duplicate
//     window drops them: exactly once per event id, as long as the redo comes within the
//     stream's duplicate window (NATSOptions.DuplicateWindow for a stream this package
//     creates).
//   - Webhooks: at least once, with a stable Idempotency-Key (the event id) and a body that
//     is byte-identical on every attempt, signed with HMAC-SHA256 (X-Quotes-Signature:
//     sha256=<hex>). 2xx is delivered; 429, 5xx, transport errors and timeouts fail the
//     Write, which the consumer retries with capped exponential backoff and jitter on its
//     clock (export.ConsumerOptions MinBackoff, MaxBackoff, Clock), resuming after the events
//     already delivered; any other status (4xx) is counted as rejected and logged, and
//     delivery goes on with the next event. Events are sent one at a time in outbox order,
//     so the order per instrument is kept.
//
// Library code: nothing here reads flags or the environment; cmd maps flags to the
// options.
package alert
