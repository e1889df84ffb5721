// Package export holds the sinks that closed minutes flow to besides the embedded store:
// ClickHouse (ClickHouseSink: aggregate states into an AggregatingMergeTree, exactly once per
// flush) and the Parquet archive.
//
// ClickHouse is fed from the store's outbox (package store: every closed candle, late
// correction and instrument change, written in the same flush as the embedded store) by a
// Consumer per sink: it plans a flush after its durable watermark, records it as an intent,
// writes it with a deterministic flush id, and then advances the watermark. A crash or a
// failure redoes the same flush with the same id, so a sink that makes a repeated flush id a
// no-op receives everything exactly once. A sink that is down never stops the pipeline: the
// backlog stays in the outbox (Badger), retention keeps it, and memory stays at one flush.
//
// The archive (Archiver) is not fed from the outbox: it follows the WAL itself, from a
// durable position of its own, re-deriving the candles with a private aggregator, so that it
// can write the raw quotes and events too; its Needed sequence holds WAL retention. Reading
// back (ReadArchiveMessages, ReadArchiveCandles, ReadArchiveEvents) serves replay and
// backfill, and ClickHouseBackend serves queries from ClickHouse.
package export
