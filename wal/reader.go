package wal

import (
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// Reader reads the log in sequence order. It is not safe for concurrent use; use one Reader
// per goroutine.
type Reader struct {
	l       *Log
	next    uint64 // sequence of the next record to return
	recs    []Record
	pos     int
	started bool
}

// NewReader returns a reader of the records with Seq >= from, in order. If from is below
// FirstSeq when reading starts, the reader starts at FirstSeq.
func (l *Log) NewReader(from uint64) *Reader {
	return &Reader{l: l, next: max(from, 1)}
}

// Next returns the next record. At the current end of the log (LastSeq) it returns io.EOF;
// calling it again later returns the records appended meanwhile (use Log.Wait to block until
// there are some). It returns a *CorruptionError for a corrupt or missing block, ErrTruncated
// (wrapped) if Truncate removed records the reader had not read yet, and ErrClosed after Close.
func (r *Reader) Next() (Record, error) {
	if r.pos >= len(r.recs) {
		if err := r.load(); err != nil {
			return Record{}, err
		}
	}
	rec := r.recs[r.pos]
	r.pos++
	r.next = rec.Seq + 1
	return rec, nil
}

// Seq returns the sequence of the record the next call to Next will return.
func (r *Reader) Seq() uint64 { return r.next }

// load decodes the block holding r.next.
func (r *Reader) load() error {
	r.recs, r.pos = r.recs[:0], 0
	if err := r.l.acquire(); err != nil {
		return err
	}
	defer r.l.mu.RUnlock()
	if first := r.l.FirstSeq(); r.next < first {
		if r.started {
			return fmt.Errorf("wal: reader at seq %d, log now starts at %d: %w", r.next, first, ErrTruncated)
		}
		r.next = first
	}
	if r.next > r.l.LastSeq() {
		return io.EOF
	}
	r.started = true
	want := r.next
	err := r.l.db.View(func(txn *badger.Txn) error {
		return r.l.findBlock(txn, want, func(first uint64, v []byte) error {
			var h blockHeader
			var err error
			r.recs, h, err = decodeBlock(v, first, r.recs[:0], r.l.dict.snapshot())
			if err != nil {
				return err
			}
			if want > h.lastSeq() {
				return errGap
			}
			r.pos = int(want - h.FirstSeq)
			return nil
		})
	})
	if err != nil {
		r.recs = r.recs[:0]
		if errors.Is(err, errGap) && want < r.l.FirstSeq() { // truncated under our feet
			return fmt.Errorf("wal: reader at seq %d, log now starts at %d: %w", want, r.l.FirstSeq(), ErrTruncated)
		}
		return err
	}
	return nil
}

// errGap: no retained block holds a sequence that should exist.
var errGap = errors.New("no block holds this sequence (gap in the log)")

// findBlock calls fn with the first sequence (from the key) and the value of the block
// holding seq: the block with the largest first sequence <= seq. fn returns errGap if that
// block ends before seq. Decoding errors and gaps come back as *CorruptionError.
func (l *Log) findBlock(txn *badger.Txn, seq uint64, fn func(first uint64, val []byte) error) error {
	item, err := txn.Get(blockKey(seq)) // the common case: reading on from the previous block
	if errors.Is(err, badger.ErrKeyNotFound) {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefixBlock), Reverse: true})
		defer it.Close()
		it.Seek(blockKey(seq))
		if !it.Valid() {
			return &CorruptionError{Seq: seq, Kept: seq - 1, Err: errGap}
		}
		item, err = it.Item(), nil
	}
	if err != nil {
		return fmt.Errorf("wal: read block for seq %d: %w", seq, err)
	}
	key := item.KeyCopy(nil)
	first, ok := parseBlockKey(key)
	if !ok {
		return &CorruptionError{Seq: seq, Key: key, Kept: seq - 1, Err: errors.New("malformed block key")}
	}
	err = item.Value(func(v []byte) error { return fn(first, v) })
	var de *decodeError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errGap):
		return &CorruptionError{Seq: seq, Kept: seq - 1, Err: fmt.Errorf("%w (block %d ends before it)", errGap, first)}
	case errors.As(err, &de):
		return &CorruptionError{Seq: first, Key: key, Kept: first - 1, Err: err}
	}
	return fmt.Errorf("wal: read block %d: %w", first, err)
}

// SeqAtTime returns the first sequence whose record has TS >= ts, among the retained records;
// LastSeq()+1 if there is none (yet).
//
// This is exact even though TS is not monotonic (arrival order, clock steps): every block
// stores the running maximum of TS over the whole log up to its end (CumMaxTS), which is
// non-decreasing, so a binary search finds the first block whose running maximum reaches ts.
// All records before that block have TS < ts, and that block holds a record with TS >= ts;
// the answer is the first such record. Records after the answer may still have TS < ts.
// (If truncated records pushed the running maximum to ts, the search degrades to a scan from
// FirstSeq; the answer is still exact.)
func (l *Log) SeqAtTime(ts int64) (uint64, error) {
	if err := l.acquire(); err != nil {
		return 0, err
	}
	defer l.mu.RUnlock()
	lo, hi := l.FirstSeq(), l.LastSeq()+1 // answer in [lo, hi]; hi means none
	var ans uint64
	err := l.db.View(func(txn *badger.Txn) error {
		for lo < hi {
			mid := lo + (hi-lo)/2
			var h blockHeader
			err := l.findBlock(txn, mid, func(first uint64, v []byte) error {
				var err error
				h, err = decodeHeader(v, first)
				if err == nil && mid > h.lastSeq() {
					err = errGap
				}
				return err
			})
			if err != nil {
				return err
			}
			if h.CumMaxTS >= ts {
				hi = h.FirstSeq
				if h.FirstSeq < lo { // cannot happen: lo is always a block start
					hi = lo
				}
			} else {
				lo = h.lastSeq() + 1
			}
		}
		// lo is the first sequence of the first block whose CumMaxTS >= ts. Its running
		// maximum can come from records truncated since; then scan on.
		last := l.LastSeq()
		for seq := lo; seq <= last; {
			found := false
			err := l.findBlock(txn, seq, func(first uint64, v []byte) error {
				recs, h, err := decodeBlock(v, first, nil, l.dict.snapshot())
				if err != nil {
					return err
				}
				for _, r := range recs {
					if r.Seq >= seq && r.TS >= ts {
						ans, found = r.Seq, true
						return nil
					}
				}
				seq = h.lastSeq() + 1
				return nil
			})
			if err != nil || found {
				return err
			}
		}
		ans = last + 1
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("wal: seq at time %d: %w", ts, err)
	}
	return ans, nil
}
