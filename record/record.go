// Package record defines what the write-ahead log holds, apart from how it holds it: a
// Record is a partner message (or a clock tick) with the sequence number the log gave it.
// The pure core (aggregate, hot) works on records without depending on the log's storage,
// as Prometheus keeps tsdb/record apart from tsdb/wlog; package wal stores and reads them.
package record

import "github.com/quotesdev/quotes/feed"

// KindTick is a log-only record kind: the receiver's clock reached TS. Ingest appends one
// when a minute boundary passes, so that closing minutes is a pure function of the log and a
// replay of the log closes exactly the same minutes. It carries no ISIN, price or
// description. The value is part of the WAL format and must never change.
const KindTick feed.Kind = 4

// Record is one entry of the log: a partner message with its arrival time, or a tick, and
// the sequence number the log assigned to it. Sequences start at 1 and have no gaps.
type Record struct {
	Seq uint64
	feed.Message
}
