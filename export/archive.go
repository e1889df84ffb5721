package export

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/dgraph-io/badger/v4"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/backoff"
	"github.com/quotesdev/quotes/internal/encoding"
	"github.com/quotesdev/quotes/wal"
)

// Badger keys of the archiver (ARCHITECTURE.md, prefix "a/"), per archive (the store's
// String: a directory or s3://bucket/prefix), so that pointing --archive elsewhere starts
// that archive from the beginning of the log.
func archiveStateKey(store ArchiveStore) []byte  { return []byte("a/state/" + store.String()) }
func archiveIntentKey(store ArchiveStore) []byte { return []byte("a/intent/" + store.String()) }

// Defaults of ArchiveOptions.
const (
	DefaultArchiveRetryMin = time.Second
	DefaultArchiveRetryMax = 30 * time.Second
)

// ArchiveOptions configure an Archiver.
type ArchiveOptions struct {
	// Store is where the files go (required).
	Store ArchiveStore
	// Aggregate must be the pipeline's aggregate options (the grace period): the archiver
	// re-derives the closed candles from the WAL with its own aggregate.Aggregator, and the
	// grace period also decides when an hour is complete.
	Aggregate aggregate.Options
	// TempDir holds the spool of closed candles waiting for their hour (os.TempDir() when
	// empty; cmd uses the data directory).
	TempDir string
	// RowGroupRows is the most rows per Parquet row group (DefaultRowGroupRows when zero).
	RowGroupRows int
	// RetryMin and RetryMax bound the back-off between failed attempts (defaults 1s, 30s).
	RetryMin, RetryMax time.Duration
	// Clock paces retries (the real clock when nil).
	Clock clock.Clock
	// Logger gets failures and cuts (slog.Default() when nil).
	Logger *slog.Logger
}

// ArchiveStats are an archiver's counters.
type ArchiveStats struct {
	// Cuts is the number of committed cuts (hour closes and final cuts); Files the files
	// published by them (redos after a crash counted again).
	Cuts, Files uint64
	// Quotes, Events and Candles count the rows published.
	Quotes, Events, Candles uint64
	// Failures counts failed attempts (each retried); LastError is the latest one.
	Failures  uint64
	LastError string
	// Archived is the last WAL sequence whose effects are committed.
	Archived uint64
}

// Archiver writes the Parquet archive (SPEC §7): hourly files of the raw quotes and
// instrument events of the WAL and of the closed candles, exactly once, atomically.
//
// # Where the rows come from
//
// The archiver is a WAL consumer of its own, independent of the pipeline and of the other
// sinks: it reads the log in sequence order and feeds every record to a private
// aggregate.Aggregator (pure and deterministic, so it derives exactly the pipeline's closed
// candles and late corrections). Raw rows are the records themselves.
//
// # Hours and cuts
//
// Files are partitioned by the UTC hour of event time: a quote or event by its ts, a candle
// by its minute. Hour H is complete when the event-time watermark (the aggregator's: the
// largest ts seen, ticks included) reaches H+1h+grace — the moment its last minute closes
// and quotes up to grace late have arrived. When the watermark crosses such a boundary at
// record r, the archiver makes a cut at r: it writes
//
//   - for every complete hour with unwritten raw records, the quotes and the events of that
//     hour with sequence up to r (a second pass over that stretch of the WAL, streaming, in
//     row groups sorted by isin, ts), named part-FIRST-LAST by the smallest and largest
//     sequence in the file;
//   - every candle state closed (or corrected) since the previous cut, into the partition of
//     its minute's hour, named part-FIRST-LAST by the cut's WAL range (previous cut + 1 … r);
//
// and then commits, in one Badger transaction, the cut (r), the hours that still have
// unwritten records with the sequence of their first one, and the aggregator's state.
// Records of an hour that is not complete yet (the few seconds past the hour end that
// arrived before the cut) stay in the WAL and go into that hour's file at its own cut.
//
// So a normal hour has exactly one file per dataset. More parts appear in three cases, never
// overlapping in sequence ranges, so never duplicating a row: records that arrive more than
// grace late for an already written hour and late candle corrections for it (a further part
// at the next cut), a final cut (below) in the middle of an hour, and a watermark jump that
// closes minutes of the next hour at the cut that completes this one.
//
// # Shutdown: the partial hour
//
// Flush (at shutdown, at the end of a replay) makes a final cut at the log's last record:
// it writes all unwritten raw records of all hours and the closed candles, as parts named by
// their ranges. The rest of the hour arrives later and goes into a part starting after it.
// Open minutes are not written: they are re-derived after a restart and written when they
// close.
//
// # Exactly once
//
// Every cut is a deterministic function of the WAL and of the committed state: its end r
// follows from the records (hour crossings), the rows from the records up to r, the names
// from the rows' and the cut's sequence ranges. A crash (or a failed upload) anywhere before
// the commit redoes the same cut with the same names, replacing the objects a first attempt
// may have published; the commit makes it final. The one non-deterministic end, the final
// cut's, is recorded durably (a/intent) before its first file is written, so a redo cuts at
// the same record. Publishing is atomic per file (ArchiveStore), so a reader sees, per key,
// nothing or the whole file.
//
// # Back-pressure and retention
//
// A failed cut (S3 down, disk full) is retried with back-off; meanwhile the archiver stops
// reading, so its memory does not grow, and its backlog is the WAL itself: Needed is the
// lowest sequence it still needs (the first unwritten raw record, or the record after the
// last cut), for pipeline.Options.Consumers, so that retention keeps it.
type Archiver struct {
	log    *wal.Log
	store  ArchiveStore
	opts   ArchiveOptions
	grace  int64
	logger *slog.Logger

	mu       sync.Mutex // serialises processing (Run, Flush)
	agg      *aggregate.Aggregator
	rd       *wal.Reader
	applied  uint64           // last record applied to agg
	cutSeq   uint64           // last committed cut
	cutHour  int64            // hourOf(watermark-grace) at the last cut: every hour before it was complete
	pending  map[int64]uint64 // hour → first unwritten raw record of it (since cutSeq's commit or later)
	intent   uint64           // a final cut to redo at this sequence (0: none)
	spool    *candleSpool     // candle states since the last cut
	needCut  bool             // a cut at applied is due (a previous attempt failed)
	finalCut bool

	testBeforeCommit func() error // tests: runs between publishing and committing a cut

	needed atomic.Uint64
	stats  ArchiveStats
	smu    sync.Mutex // guards stats
}

// NewArchiver loads the archiver's committed state from log's DB (or starts at the
// beginning of the log) and cleans up what an interrupted publish left in the store. It
// reads nothing yet: call Run.
func NewArchiver(ctx context.Context, log *wal.Log, opts ArchiveOptions) (*Archiver, error) {
	if opts.Store == nil {
		return nil, errors.New("archive: no store")
	}
	if opts.RowGroupRows <= 0 {
		opts.RowGroupRows = DefaultRowGroupRows
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultArchiveRetryMin
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(DefaultArchiveRetryMax, opts.RetryMin)
	}
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Archiver{
		log: log, store: opts.Store, opts: opts, grace: int64(max(opts.Aggregate.Grace, 0)),
		logger: opts.Logger.With("component", "archive", "store", opts.Store.String()),
		agg:    aggregate.New(opts.Aggregate), pending: map[int64]uint64{},
	}
	if err := a.load(); err != nil {
		return nil, err
	}
	spool, err := newCandleSpool(opts.TempDir)
	if err != nil {
		return nil, err
	}
	a.spool = spool
	a.rd = log.NewReader(a.applied + 1)
	if err := a.store.Cleanup(ctx); err != nil {
		// Not fatal: leftovers are invisible; the next start tries again.
		a.logger.Warn("archive cleanup failed", "err", err)
	}
	return a, nil
}

// load reads the committed state.
func (a *Archiver) load() error {
	var state, intent []byte
	err := a.log.DB().View(func(txn *badger.Txn) error {
		for _, kv := range []struct {
			key []byte
			dst *[]byte
		}{{archiveStateKey(a.store), &state}, {archiveIntentKey(a.store), &intent}} {
			item, err := txn.Get(kv.key)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if *kv.dst, err = item.ValueCopy(nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive: load state: %w", err)
	}
	if intent != nil {
		if a.intent, err = wal.DecodeWatermark(intent); err != nil {
			return fmt.Errorf("archive: load intent: %w", err)
		}
	}
	if state == nil {
		if first := a.log.FirstSeq(); first > 1 && a.log.LastSeq() >= first {
			a.logger.Warn("archive starts on a log whose beginning was truncated: candles of instruments added before it are incomplete",
				"first_seq", first)
		}
		a.cutHour = hourOfWatermark(a.agg, a.grace)
		a.updateNeeded()
		return nil
	}
	if err := a.decodeState(state); err != nil {
		return fmt.Errorf("archive: load state: %w", err)
	}
	a.updateNeeded()
	return nil
}

// hourOfWatermark is the hour holding watermark − grace: every hour before it is complete.
func hourOfWatermark(agg *aggregate.Aggregator, grace int64) int64 {
	if agg.LastSeq() == 0 {
		return noHour
	}
	return hourOf(agg.Watermark() - grace)
}

// noHour is hourOfWatermark before the first record.
const noHour = -1 << 62

const archStateVersion = 1

// encodeState: version u8, cut seq be64, pending count be32, (hour be64, from be64)…,
// aggregator state.
func (a *Archiver) encodeState(cut uint64, pending map[int64]uint64) []byte {
	e := encoding.Encbuf{B: make([]byte, 0, 1+8+4+16*len(pending)+1<<10)}
	e.PutByte(archStateVersion)
	e.PutBE64(cut)
	e.PutBE32(uint32(len(pending)))
	for _, h := range slices.Sorted(maps.Keys(pending)) {
		e.PutBE64int64(h)
		e.PutBE64(pending[h])
	}
	return a.agg.AppendState(e.Get())
}

// decodeState restores what encodeState wrote. Its errors match encoding.ErrCorrupt.
func (a *Archiver) decodeState(b []byte) error {
	d := encoding.NewDecbuf(b)
	if v := d.Byte(); v != archStateVersion {
		d.Failf("unknown state format %d", v)
	}
	a.cutSeq = d.BE64()
	n := d.BE32()
	if d.Err() == nil && uint64(n) > uint64(d.Len()/16) {
		d.Failf("%d pending hours in %d bytes", n, d.Len())
	}
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		h := d.BE64int64()
		a.pending[h] = d.BE64()
	}
	if err := d.Err(); err != nil {
		return err
	}
	if err := a.agg.RestoreState(d.Get()); err != nil {
		return err
	}
	if a.agg.LastSeq() != a.cutSeq {
		return fmt.Errorf("aggregator state at seq %d, cut at %d", a.agg.LastSeq(), a.cutSeq)
	}
	a.applied = a.cutSeq
	a.cutHour = hourOfWatermark(a.agg, a.grace)
	return nil
}

// Needed returns the lowest WAL sequence the archiver still needs (for
// pipeline.Options.Consumers): retention must keep it and everything after it.
func (a *Archiver) Needed() uint64 { return a.needed.Load() }

// updateNeeded sets Needed from the committed state (a.cutSeq, a.pending at commit).
func (a *Archiver) updateNeeded() {
	n := a.cutSeq + 1
	for _, from := range a.pending {
		n = min(n, from)
	}
	a.needed.Store(n)
}

// Archived returns the last WAL sequence whose rows are committed to the archive (raw
// records of hours not complete yet excepted: see Needed).
func (a *Archiver) Archived() uint64 {
	a.smu.Lock()
	defer a.smu.Unlock()
	return a.stats.Archived
}

// Stats returns the counters.
func (a *Archiver) Stats() ArchiveStats {
	a.smu.Lock()
	defer a.smu.Unlock()
	return a.stats
}

// Close releases the spool. It does not flush: call Flush first for the partial hour.
func (a *Archiver) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.spool.close()
}

// Run follows the log until ctx is done (it then returns nil), archiving every hour as it
// completes. Failures are logged and retried with back-off; Run returns an error only when
// the log cannot give the records it needs (truncated past Needed, corrupt, closed).
func (a *Archiver) Run(ctx context.Context) error {
	retry := backoff.New(backoff.Policy{Min: a.opts.RetryMin, Max: a.opts.RetryMax}, a.opts.Clock)
	for {
		err := a.advance(ctx, a.log.LastSeq())
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, wal.ErrClosed):
			return nil
		case errors.Is(err, wal.ErrTruncated) || errors.Is(err, wal.ErrCorrupt):
			return err
		case err != nil:
			a.fail(err)
			if retry.Wait(ctx) != nil {
				return nil
			}
			continue
		}
		retry.Reset()
		a.mu.Lock()
		applied := a.applied
		a.mu.Unlock()
		if err := a.log.Wait(ctx, applied); err != nil {
			if ctx.Err() != nil || errors.Is(err, wal.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

func (a *Archiver) fail(err error) {
	a.smu.Lock()
	a.stats.Failures++
	a.stats.LastError = err.Error()
	a.smu.Unlock()
	a.logger.Warn("archive failed, retrying; the backlog stays in the WAL", "err", err, "needed_seq", a.Needed())
}

// Flush archives everything the log holds now, the partial hour included (a final cut, see
// the type's doc). Call it at shutdown and at the end of a replay's input; it may run
// while Run runs. A failure leaves the final cut recorded: the next Run (of this or a later
// process) redoes it.
func (a *Archiver) Flush(ctx context.Context) error {
	last := a.log.LastSeq()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.advanceLocked(ctx, last); err != nil {
		return err
	}
	if a.applied == a.cutSeq && len(a.pending) == 0 {
		return nil // nothing uncommitted
	}
	if a.intent != a.applied {
		err := a.log.DB().Update(func(txn *badger.Txn) error {
			return txn.Set(archiveIntentKey(a.store), wal.EncodeWatermark(a.applied))
		})
		if err == nil {
			err = a.log.Persist()
		}
		if err != nil {
			return fmt.Errorf("archive: record final cut: %w", err)
		}
		a.intent = a.applied
	}
	a.needCut, a.finalCut = true, true
	return a.retryCut(ctx)
}

// advance applies the records up to upto, cutting where due.
func (a *Archiver) advance(ctx context.Context, upto uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.advanceLocked(ctx, upto)
}

func (a *Archiver) advanceLocked(ctx context.Context, upto uint64) error {
	if err := a.retryCut(ctx); err != nil {
		return err
	}
	for a.applied < upto {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := a.rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive: read WAL at %d: %w", a.rd.Seq(), err)
		}
		if err := a.apply(rec); err != nil {
			return err
		}
		h := hourOfWatermark(a.agg, a.grace)
		switch {
		case a.applied == a.intent:
			a.needCut, a.finalCut = true, true
		case a.cutHour == noHour:
			a.cutHour = h // the first record: nothing before it to complete
		case h > a.cutHour:
			a.needCut = true
		}
		if err := a.retryCut(ctx); err != nil {
			return err
		}
	}
	return nil
}

// apply feeds one record to the aggregator (closed candles go to the spool) and notes the
// hours with unwritten raw records.
func (a *Archiver) apply(rec wal.Record) error {
	a.agg.Apply(rec, a.spool)
	if a.spool.err != nil {
		return fmt.Errorf("archive: spool: %w", a.spool.err)
	}
	a.applied = rec.Seq
	switch rec.Kind {
	case feed.KindQuote, feed.KindAdd, feed.KindDelete:
		h := hourOf(rec.TS)
		if _, ok := a.pending[h]; !ok {
			a.pending[h] = rec.Seq
		}
	}
	return nil
}

// retryCut makes the due cut, if any.
func (a *Archiver) retryCut(ctx context.Context) error {
	if !a.needCut {
		return nil
	}
	if err := a.cut(ctx, a.applied, a.finalCut); err != nil {
		return err
	}
	a.needCut, a.finalCut = false, false
	return nil
}

// staged is a finished file waiting to be published.
type staged struct {
	f   *os.File
	key string
}

// hourFiles are the raw writers of one hour.
type hourFiles struct {
	quotes *partWriter[QuoteRow]
	events *partWriter[EventRow]
}

// cut writes the files of the cut ending at r and commits it (see the type's doc).
func (a *Archiver) cut(ctx context.Context, r uint64, final bool) (err error) {
	begin := time.Now()
	limit := hourOfWatermark(a.agg, a.grace) // hours before it are complete
	var hours []int64
	for h := range a.pending {
		if final || h < limit {
			hours = append(hours, h)
		}
	}
	slices.Sort(hours)
	var files []staged
	var open []*os.File // staged files not yet in files
	defer func() {
		if err != nil {
			for _, f := range open {
				a.store.Discard(f)
			}
			for _, s := range files {
				a.store.Discard(s.f)
			}
		}
	}()
	stage := func() (*os.File, error) {
		f, err := a.store.Stage()
		if err == nil {
			open = append(open, f)
		}
		return f, err
	}
	var quotes, events, candles uint64

	// Raw records: one pass over the WAL from the first unwritten record of these hours.
	if len(hours) > 0 {
		writers := map[int64]*hourFiles{}
		from := r
		for _, h := range hours {
			from = min(from, a.pending[h])
			writers[h] = &hourFiles{}
		}
		rd := a.log.NewReader(from)
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, err := rd.Next()
			if err != nil {
				return fmt.Errorf("archive: read WAL at %d: %w", rd.Seq(), err)
			}
			h := hourOf(rec.TS)
			hf := writers[h]
			if hf != nil && rec.Seq >= a.pending[h] {
				switch rec.Kind {
				case feed.KindQuote:
					if hf.quotes == nil {
						f, err := stage()
						if err != nil {
							return err
						}
						hf.quotes = newQuoteWriter(f, a.opts.RowGroupRows)
					}
					row := QuoteRow{ISIN: rec.ISIN.String(), TS: rec.TS, Seq: int64(rec.Seq), Price: int64(rec.Price)}
					if err := hf.quotes.add(row, rec.Seq); err != nil {
						return fmt.Errorf("archive: write quotes: %w", err)
					}
				case feed.KindAdd, feed.KindDelete:
					if hf.events == nil {
						f, err := stage()
						if err != nil {
							return err
						}
						hf.events = newEventWriter(f, a.opts.RowGroupRows)
					}
					row := EventRow{ISIN: rec.ISIN.String(), TS: rec.TS, Seq: int64(rec.Seq), Type: rec.Kind.String(), Description: rec.Description}
					if err := hf.events.add(row, rec.Seq); err != nil {
						return fmt.Errorf("archive: write events: %w", err)
					}
				}
			}
			if rec.Seq >= r {
				break
			}
		}
		for _, h := range hours {
			hf := writers[h]
			if w := hf.quotes; w != nil {
				if err := w.finish(); err != nil {
					return fmt.Errorf("archive: write quotes: %w", err)
				}
				files = append(files, staged{w.f, PartKey(DatasetQuotes, h, w.minSeq, w.maxSeq)})
				quotes += uint64(w.rows)
			}
			if w := hf.events; w != nil {
				if err := w.finish(); err != nil {
					return fmt.Errorf("archive: write events: %w", err)
				}
				files = append(files, staged{w.f, PartKey(DatasetEvents, h, w.minSeq, w.maxSeq)})
				events += uint64(w.rows)
			}
		}
		open = open[:0]
	}

	// Candles: everything closed since the last cut, by the hour of the minute.
	cw := map[int64]*partWriter[CandleRow]{}
	err = a.spool.each(func(c *aggregate.Candle) error {
		h := hourOf(c.Minute)
		w := cw[h]
		if w == nil {
			f, err := stage()
			if err != nil {
				return err
			}
			w = newCandleWriter(f, a.opts.RowGroupRows)
			cw[h] = w
		}
		return w.add(candleRow(c), r)
	})
	if err != nil {
		return fmt.Errorf("archive: write candles: %w", err)
	}
	for _, h := range slices.Sorted(maps.Keys(cw)) {
		w := cw[h]
		if err := w.finish(); err != nil {
			return fmt.Errorf("archive: write candles: %w", err)
		}
		files = append(files, staged{w.f, PartKey(DatasetCandles, h, a.cutSeq+1, r)})
		candles += uint64(w.rows)
	}
	open = open[:0]

	// Publish, then commit.
	nfiles := uint64(len(files))
	for i := range files {
		if err := a.store.Publish(ctx, files[i].f, files[i].key); err != nil {
			files = files[i+1:]
			return err
		}
	}
	files = nil
	if a.testBeforeCommit != nil {
		if err := a.testBeforeCommit(); err != nil {
			return err
		}
	}
	pending := maps.Clone(a.pending)
	for _, h := range hours {
		delete(pending, h)
	}
	state := a.encodeState(r, pending)
	err = a.log.DB().Update(func(txn *badger.Txn) error {
		if err := txn.Set(archiveStateKey(a.store), state); err != nil {
			return err
		}
		if final {
			return txn.Delete(archiveIntentKey(a.store))
		}
		return nil
	})
	if err == nil {
		err = a.log.Persist()
	}
	if err != nil {
		return fmt.Errorf("archive: commit cut at %d: %w", r, err)
	}
	if final {
		a.intent = 0
	}
	a.pending, a.cutSeq, a.cutHour = pending, r, limit
	a.updateNeeded()
	if err := a.spool.reset(); err != nil {
		return fmt.Errorf("archive: spool: %w", err)
	}
	a.smu.Lock()
	a.stats.Cuts++
	a.stats.Files += nfiles
	a.stats.Quotes += quotes
	a.stats.Events += events
	a.stats.Candles += candles
	a.stats.Archived = r
	a.smu.Unlock()
	a.logger.Debug("archive cut", "seq", r, "final", final, "hours", len(hours), "quotes", quotes, "events", events,
		"candles", candles, "took", time.Since(begin))
	return nil
}

// candleSpool keeps the candle states closed since the last cut in a local file, so that
// an hour's candles (up to millions at the spec's scale) do not sit in memory. It is the
// aggregate.Output of the archiver's aggregator.
type candleSpool struct {
	f   *os.File
	w   *bufio.Writer
	n   int
	err error
	buf []byte
}

const spoolRecordSize = feed.ISINLen + 11*8

func newCandleSpool(dir string) (*candleSpool, error) {
	f, err := os.CreateTemp(dir, "quotes-archive-spool-*")
	if err != nil {
		return nil, fmt.Errorf("archive: spool: %w", err)
	}
	os.Remove(f.Name()) // unlinked: nothing to clean up after a crash
	return &candleSpool{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (s *candleSpool) Quote(aggregate.AcceptedQuote)        {}
func (s *candleSpool) Instrument(aggregate.InstrumentEvent) {}
func (s *candleSpool) Closed(c *aggregate.Candle)           { s.add(c) }
func (s *candleSpool) Late(c *aggregate.Candle)             { s.add(c) }

func (s *candleSpool) add(c *aggregate.Candle) {
	if s.err != nil {
		return
	}
	e := encoding.Encbuf{B: s.buf[:0]}
	e.PutBytes(c.ISIN[:])
	for _, v := range [...]uint64{c.Incarnation, uint64(c.Minute), uint64(c.Open), uint64(c.High), uint64(c.Low),
		uint64(c.Close), uint64(c.OpenTS), uint64(c.CloseTS), c.OpenSeq, c.CloseSeq, c.Quotes} {
		e.PutBE64(v)
	}
	s.buf = e.Get()
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
	}
	s.n++
}

// each calls fn for every spooled candle, in the order they were closed.
func (s *candleSpool) each(fn func(c *aggregate.Candle) error) error {
	if s.err != nil {
		return s.err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, int64(s.n)*spoolRecordSize), 1<<20)
	rec := make([]byte, spoolRecordSize)
	var c aggregate.Candle
	for i := 0; i < s.n; i++ {
		if _, err := io.ReadFull(r, rec); err != nil {
			return err
		}
		d := encoding.NewDecbuf(rec)
		copy(c.ISIN[:], d.Bytes(feed.ISINLen))
		c.Incarnation, c.Minute = d.BE64(), d.BE64int64()
		c.Open, c.High, c.Low, c.Close = feed.Price(d.BE64int64()), feed.Price(d.BE64int64()), feed.Price(d.BE64int64()), feed.Price(d.BE64int64())
		c.OpenTS, c.CloseTS, c.OpenSeq, c.CloseSeq, c.Quotes = d.BE64int64(), d.BE64int64(), d.BE64(), d.BE64(), d.BE64()
		if err := d.Done(); err != nil {
			return fmt.Errorf("spooled candle %d: %w", i, err)
		}
		if err := fn(&c); err != nil {
			return err
		}
	}
	return nil
}

func (s *candleSpool) reset() error {
	s.n = 0
	s.w.Reset(s.f)
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	_, err := s.f.Seek(0, io.SeekStart)
	return err
}

func (s *candleSpool) close() error { return s.f.Close() }
