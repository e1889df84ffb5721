// Package engine is the application core of quotes: it owns one data directory and
// everything that runs over it, as Prometheus' tsdb.DB owns its blocks and WAL.
//
// Open opens, in order, the write-ahead log (package wal), the pipeline that recovers the
// registry, the open minutes and the hot windows from it (package pipeline, with the
// embedded store), and the sinks that follow it: the outbox consumer of ClickHouse
// (export.Consumer) and the Parquet archiver (export.Archiver), each in a goroutine of its
// own. The engine is then fed by exactly one of
//
//   - Ingest: a live partner (LiveSource, e.g. source.Client) plus the aligned minute tick
//     loop that writes a tick record when a minute is due to close;
//   - Replay: recorded inputs behind one Source interface (JSONL files, another data
//     directory's WAL, a Parquet archive), each resumable under its own key;
//
// and Backfill recomputes a range into the store and/or ClickHouse. Close stops intake
// first (nothing is appended once it began: every message a source handed over is either in
// the WAL or was refused), flushes and checkpoints the pipeline, lets the sinks deliver for
// Options.SinkTimeout, waits for every goroutine it started and only then closes the log.
//
// Nothing here reads flags or the environment: cmd/quotes maps those to Options.
//
//	websocket ─► source.Client ─► Engine.Ingest ─► wal.Log ─► pipeline ─► aggregate ─► store (c/, i/, o/)
//	JSONL/WAL/archive ─► Source ─► Engine.Replay ─┘            │          └► hot ─► store (h/), api /hot
//	                                                            │  store o/ ─► export.Consumer ─► ClickHouse
//	                                                            └───────────► export.Archiver ─► Parquet (dir, S3)
package engine
