package wal

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// SyncMode says when an append is acknowledged relative to fsync. See the package doc for
// exactly which failures each mode survives.
type SyncMode int

const (
	// SyncBatch (the default) group-commits: after a write+fsync the writer waits until
	// BatchInterval has passed since that write started (unless BatchFullRecords records are
	// already waiting), gathering the appends that arrive meanwhile into one block; an append
	// returns after the fsync covering it. Acknowledged records survive process crashes,
	// kernel crashes and power loss.
	SyncBatch SyncMode = iota
	// SyncAlways writes and fsyncs each group as soon as the previous one is done (no added
	// delay; concurrent appends still share a group). Same guarantee as SyncBatch, lower
	// latency, more fsyncs.
	SyncAlways
	// SyncNone writes each group to Badger (the OS page cache) and acknowledges without
	// fsync. Acknowledged records survive a crash of the process (kill -9, panic, OOM kill)
	// but not of the kernel or the machine.
	SyncNone
)

// String returns the flag spelling: "batch", "always" or "none".
func (m SyncMode) String() string {
	switch m {
	case SyncBatch:
		return "batch"
	case SyncAlways:
		return "always"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// ParseSyncMode parses the --sync flag: "always", "batch" or "none" (case-insensitive).
func ParseSyncMode(s string) (SyncMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "batch":
		return SyncBatch, nil
	case "always":
		return SyncAlways, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("wal: invalid sync mode %q (want always, batch or none)", s)
}

// Options configures a Log. The zero value of every field means its default (see
// DefaultOptions); only Dir is required (unless InMemory).
type Options struct {
	// Dir is the Badger directory (created if missing).
	Dir string
	// InMemory runs Badger without any files (tests). Nothing survives Close.
	InMemory bool
	// Sync is the durability mode; default SyncBatch.
	Sync SyncMode
	// BatchInterval is, for SyncBatch, the minimum time between the starts of two
	// write+fsync rounds of small groups, so the most an append waits before its group is
	// written (default 2ms). Ignored by the other modes.
	BatchInterval time.Duration
	// BatchFullRecords is, for SyncBatch, the group size from which the writer stops waiting
	// for BatchInterval and writes at once (default 1024): a big append (ingest and replay
	// append thousands of quotes at a time) already amortises its fsync, and waiting would
	// only cap a single appender at one append per interval.
	BatchFullRecords int
	// Clock drives BatchInterval and Retain; default clock.New().
	Clock clock.Clock
	// Logger receives repair reports, retention errors and Badger's own messages (Badger's
	// info messages at Debug level); default slog.Default().
	Logger *slog.Logger
	// Repair makes Open verify every block and, at the first corrupt or missing one, delete
	// it and everything after it (logging what was dropped) instead of failing. Without
	// Repair, Open checks only the last block and readers report corruption as they meet it.
	Repair bool

	// MaxBlockBytes caps the encoded size of one block (default 256 KiB, at most 512 KiB;
	// a block exceeds it by at most one record): a group commit
	// larger than that is written as several blocks, still in one atomic Badger transaction.
	MaxBlockBytes int
	// MaxGroupRecords caps how many records the writer gathers into one group commit
	// (default 262144); an Append larger than that is still written whole.
	MaxGroupRecords int

	// MemTableSize is Badger's memtable size (default 8 MiB). Blocks live in the value log,
	// so the memtable only holds their keys and value pointers (~110 bytes a block) plus the
	// other packages' small values (most of it: the store's candles, a memtable every 1–2
	// minutes at the spec load). Badger allocates it whole, and while it flushes one it holds
	// the next one's arena and the new table's blocks too: with 16 MiB that was ~50 MiB of
	// heap for a few seconds every 2 minutes, the peaks of a live ingest's resident set. A
	// restart after a crash re-reads the value log written since the last flushed one (with
	// 32 MiB that took ~0.4 s at the spec load). Only flushed and compacted deletions let
	// value-log GC give disk space back. Badger caps one transaction at 15 % of it (1.2 MiB
	// by default), which every transaction in the DB must respect: the log writes a group's
	// many new ISIN ids ahead of it (dict.stage), the store splits long runs of late merges
	// (store.Batch.LateSeqs).
	MemTableSize int64
	// ValueLogFileSize is the size of one Badger value-log file (default 64 MiB), the unit in
	// which retention gives disk space back.
	ValueLogFileSize int64
	// ValueThreshold is the value size from which Badger stores a value in the value log
	// rather than in the LSM tree (default 512 bytes). Blocks are larger than this except for
	// tiny groups.
	ValueThreshold int64
	// BlockCacheSize is Badger's block cache (default 16 MiB).
	BlockCacheSize int64
	// GCDiscardRatio is the fraction of a value-log file that must be garbage for Truncate
	// to rewrite it (default 0.5).
	GCDiscardRatio float64
	// ResidentTrimBytes: with SyncNone, after this many bytes of blocks written, the log asks
	// the kernel to page its value-log and memtable files out of the process's resident set
	// (Linux; default 16 MiB; negative: never, in any mode). Badger writes them through a
	// memory mapping it keeps, so without it the resident set grows with the log. The durable
	// modes do it before a sync, after every MiB written (filesync.go), whatever the value.
	ResidentTrimBytes int64
	// Badger, if set, is applied last to the Badger options (escape hatch for tuning).
	Badger func(badger.Options) badger.Options
}

// DefaultOptions returns the options with every default filled in for a log in dir.
func DefaultOptions(dir string) Options {
	return Options{Dir: dir}.withDefaults()
}

func (o Options) withDefaults() Options {
	if o.BatchInterval <= 0 {
		o.BatchInterval = 2 * time.Millisecond
	}
	if o.BatchFullRecords <= 0 {
		o.BatchFullRecords = 1024
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBlockBytes <= 0 {
		o.MaxBlockBytes = 256 << 10
	}
	o.MaxBlockBytes = min(o.MaxBlockBytes, 512<<10) // in-memory Badger caps values at 1 MiB
	if o.MaxGroupRecords <= 0 {
		o.MaxGroupRecords = 1 << 18
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = 8 << 20
	}
	if o.ValueLogFileSize <= 0 {
		o.ValueLogFileSize = 64 << 20
	}
	if o.ValueThreshold <= 0 {
		o.ValueThreshold = 512
	}
	if o.BlockCacheSize <= 0 {
		o.BlockCacheSize = 16 << 20
	}
	if o.ResidentTrimBytes == 0 {
		o.ResidentTrimBytes = 16 << 20
	}
	if o.GCDiscardRatio <= 0 || o.GCDiscardRatio >= 1 {
		o.GCDiscardRatio = 0.5
	}
	return o
}

// badgerOptions derives the Badger options.
func (o Options) badgerOptions() badger.Options {
	bo := badger.DefaultOptions(o.Dir).
		WithInMemory(o.InMemory).
		// Never: the durable modes sync the files themselves after each write (filesync.go),
		// without holding up Badger's single writer and every other write behind it.
		WithSyncWrites(false).
		WithMemTableSize(o.MemTableSize).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithValueThreshold(o.ValueThreshold).
		WithBlockCacheSize(o.BlockCacheSize).
		WithNumVersionsToKeep(1).
		WithNumMemtables(2).
		WithNumCompactors(2).
		// Tables of 512 KiB in the base level (Badger's default is 2 MiB; each level below
		// doubles it): a compaction builds up to 8 tables and more at once, each in a
		// buffer of twice its size plus a 3 MiB index builder. The compactions that merge
		// the last minutes' candles into the levels below (every ~6.5 minutes at the spec
		// load, a few dozen tables in 2 s) raised a live ingest's live heap by 77 MB with
		// 2 MiB, 56 MB with 1 MiB, 39–51 MB with 512 KiB: the peaks of its resident set.
		WithBaseTableSize(512 << 10).
		// No block compression: what the tree holds (candles, value pointers, sequences)
		// is nearly incompressible — Snappy saved ~20 % of the tables — and a compressing
		// table builder counts its capacity in compressed bytes, holding the uncompressed
		// blocks and their compressed copies at once: level-0 compactions, which merge every
		// minute's candles into all of the base level, held ~100 MiB more heap for ~20 s.
		WithCompression(options.None).
		WithLogger(badgerLogger{o.Logger}).
		WithMetricsEnabled(false)
	if o.InMemory {
		// No value log in memory: every value must fit under the threshold.
		bo = bo.WithDir("").WithValueDir("").WithValueThreshold(1 << 20)
	}
	if o.Badger != nil {
		bo = o.Badger(bo)
	}
	return bo
}

// badgerLogger adapts slog to Badger's logger.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) msg(f string, a []any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }

// Errorf logs at Error level.
func (b badgerLogger) Errorf(f string, a ...any) { b.l.Error(b.msg(f, a), "component", "badger") }

// Warningf logs at Warn level.
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(b.msg(f, a), "component", "badger") }

// Infof logs at Debug level: Badger's info messages (compactions, flushes) are chatty.
func (b badgerLogger) Infof(f string, a ...any) {
	if b.l.Enabled(context.Background(), slog.LevelDebug) {
		b.l.Debug(b.msg(f, a), "component", "badger")
	}
}

// Debugf is dropped.
func (b badgerLogger) Debugf(string, ...any) {}
