// Package export holds the sinks that closed minutes flow to besides the embedded store:
// ClickHouse (ClickHouseSink: aggregate states into an AggregatingMergeTree, exactly once per
// flush) and the Parquet archive. The pipeline hands each sink the candles of a flush
// together with the flush's id (the WAL sequence of the flush); a sink that is down keeps its
// backlog in the WAL, and the pipeline replays the same flushes, with the same ids, when it
// is back.
package export
