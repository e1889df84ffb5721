// Package wal is the durable, replayable write-ahead log of quotes: every partner message is
// appended here, with its arrival time, before it affects any output (SPEC §7). It is stored in
// Badger (github.com/dgraph-io/badger/v4), in the same DB as the embedded store, which lets a
// consumer commit its data and its watermark atomically.
//
// The structure follows Prometheus tsdb/wlog + tsdb/record: the record encoding (block.go) is
// separate from the mechanics (log.go: group commit, recovery; reader.go; retention.go), and a
// damaged block is reported as a typed *CorruptionError.
//
// # Key space
//
//	w/ + be64(first seq)   one block of records per group commit (or per MaxBlockBytes of one)
//	d/ + be32(id)          the ISIN dictionary: id → 12-byte ISIN (dict.go)
//	m/ + name              consumer watermark, be64 seq (WatermarkKey, EncodeWatermark)
//	p/ + source            resumable source position, opaque bytes (AppendFrom)
//
// # Block layout (format version 2; version 1 is still read)
//
//	+---------+-----------+--------------+-----------+-----------+--------------+
//	| version | count     | first seq    | min TS    | max TS    | cum max TS   |  header,
//	| u8 = 2  | u32 BE    | u64 BE       | i64 BE    | i64 BE    | i64 BE       |  37 bytes
//	+---------+-----------+--------------+-----------+-----------+--------------+
//	| record 0 | record 1 | ... | record count-1                                 |
//	+---------------------------------------------------------------------------+
//	| crc32c (Castagnoli) of everything above, u32 BE                           |  4 bytes
//	+---------------------------------------------------------------------------+
//
//	record (format 2):
//	+-----+--------+---------------+------------------------+---------------+-----------------+
//	| tag | [kind] | TS delta      | [ISIN]                 | [price]       | [description]   |
//	| u8  | u8     | zigzag varint | uvarint id or 12 bytes | zigzag varint | uvarint len + B |
//	+-----+--------+---------------+------------------------+---------------+-----------------+
//
//	tag: bits 0-2 kind (1…7; 0: the kind byte follows), bits 3-4 the ISIN (0 zero ISIN, not
//	stored; 1 dictionary id; 2 the 12 bytes), bit 5 description present, bit 6 TS delta in
//	whole milliseconds, bit 7 non-zero price present. Fields in brackets are there only when
//	the tag says so; the decoder rejects what the encoder would not write (an escaped kind of
//	1…7, a stored zero price, an empty description, a whole-millisecond delta in nanoseconds).
//
//	record (format 1, read only):
//	+-------------------+------+-----------+-----------------+------------+-------------+
//	| TS delta          | kind | ISIN      | price           | desc len   | description |
//	| zigzag varint     | u8   | 12 bytes  | zigzag varint   | uvarint    | desc len B  |
//	+-------------------+------+-----------+-----------------+------------+-------------+
//
// The record's sequence is first seq + its index. TS delta is relative to the previous record
// of the block (to 0 for the first), so out-of-order arrival times cost nothing special. Kind
// is feed.Kind (1 ADD, 2 DELETE, 3 QUOTE) or KindTick (4); ticks carry a zero ISIN. Price is
// feed.Price in micro-units. An ISIN is stored as its id in the log's dictionary (d/, dense
// ids in order of first use, written in the transaction of the first block using them, or
// just before it when a group brings more than 1,024 new ones; never removed; after 2^22
// distinct ISINs new ones are stored raw). A quote takes about 9–11 bytes
// (22 in format 1): tag 1, TS delta 1–3, id 2–3, price 4. "cum max TS" is the largest TS of
// all records written up to the end of this block: non-decreasing along the log, it makes
// SeqAtTime an exact binary search although TS itself is not monotonic.
//
// Reading seeks the block with the largest first seq <= the target; every block is verified
// (checksum, header against key, exact decoding) before any of its records is returned, and
// a block that fails, or a sequence no block covers, stops the reader with a
// *CorruptionError: records after a damaged block are never silently skipped.
//
// # Sequences and recovery
//
// Sequences start at 1 and have no gaps. Open recovers the next sequence from the last block
// (verifying it; a corrupt last block fails Open unless Options.Repair, which verifies every
// block and deletes the first bad one and everything after it, logging what was dropped). The
// block holding the last sequence is never truncated, so the sequence survives retention.
//
// # Group commit and durability
//
// One writer goroutine takes appends from a channel, assigns sequences, encodes the whole
// group (all appends waiting at that moment) into one or more blocks, and writes them, with
// the source positions of AppendFrom, in ONE Badger transaction: a group, and in particular
// each Append, is on disk entirely or not at all. An append returns when its group is durable
// per the mode; LastSeq and readers only ever show acknowledged groups. StartAppend hands an
// append over without waiting (its PendingAppend's Wait does): a bulk producer keeps a few
// in flight, and those that queue while a group is written and synced go into the next
// group together, one sync for several (replay: see pipeline.Writer).
//
//   - SyncAlways: the transaction is fsynced (value log and memtable WAL) before the
//     appends return; the next group is written right away. Acknowledged
//     records survive process crashes (kill -9, OOM kill, panics), kernel crashes and power
//     loss (given a disk that honours fsync).
//   - SyncBatch (default): as SyncAlways, but after a write the writer waits until
//     BatchInterval (2ms) has passed since that write started, gathering the appends that
//     arrive meanwhile into the next group, so small concurrent appends share one fsync
//     ("fsync at most every few ms"). A group already holding BatchFullRecords (1024)
//     records is written at once: big appends need no help amortising. Same guarantee as
//     SyncAlways; an append waits at most BatchInterval plus one write+fsync.
//   - SyncNone: the transaction is written to Badger's memory-mapped files, i.e. the OS page
//     cache, and acknowledged without fsync. Acknowledged records survive a crash of the
//     process (the kernel still writes the pages back), not a kernel crash or power loss,
//     which can lose the last seconds; what survives is still a consistent prefix, because
//     Badger discards torn transactions on open and every block carries its own checksum.
//
// The log syncs Badger's files itself (filesync.go) rather than running Badger with
// SyncWrites, which msyncs them inside Badger's single writer goroutine: every write to the
// DB waited for that msync, and the kernel's writeback of pages still mapped costs one TLB
// shootdown per page (~4 s of CPU in a spec-load replay on the benchmarks' 2-core VMs). A
// sync takes the written pages out of the process's page tables first (MADV_PAGEOUT, one
// batched flush), then fdatasyncs every memtable and value-log file written since the last
// sync: Badger's own DB.Sync syncs only the current ones, and either may have rotated since
// the write. Concurrent syncs share one pass. The other packages that keep keys in DB()
// call Persist after each write they rely on (a store's candles and watermark, a sink's
// cursor): it syncs in the durable modes and does nothing in SyncNone, so every write to
// the DB is as durable as an append.
//
// TestCrash kill -9s a writer subprocess 20 times per mode and checks that every
// acknowledged record is there, intact, in order, without gaps or duplicates, and that each
// AppendFrom position matches its records exactly.
//
// # Retention
//
// Blocks are stored in Badger's value log (values over ValueThreshold), the LSM tree only
// holds their keys. Truncate(before) deletes whole blocks entirely below before and then runs
// value-log GC. Badger only learns that a value-log file is garbage when compaction meets the
// deletions, i.e. after the memtable holding them was flushed; a value-log file
// (ValueLogFileSize, 64 MiB by default) is then deleted. Disk use is therefore bounded by the
// retained records plus roughly a few memtable flushes' worth of log plus one value-log file
// (TestRetentionBoundsDisk). Retain drives Truncate periodically on the injected clock.
package wal
