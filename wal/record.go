package wal

import "github.com/quotesdev/quotes/record"

// KindTick is record.KindTick: the log's clock-tick record kind (see package record).
const KindTick = record.KindTick

// Record is record.Record: one entry of the log with its sequence number. The type lives in
// package record so that the pure core does not depend on the log's storage.
type Record = record.Record
