package pipeline

import (
	"fmt"
	"sync"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/wal"
)

// Writer overlaps the stages of Append for a bulk producer (replay): one goroutine hands
// batches to the WAL, in order, without waiting for them (wal.Log.StartAppend); a second
// applies each batch to the aggregator once it is durable; a third runs the hot detector
// over what that derived and writes it to the store. So the WAL's write and fsync of
// batches n+2…, the aggregation of batch n+1 and the hot detection of batch n run at once,
// and the rule "durable before it affects anything" still holds batch by batch. The batches
// that queue at the WAL while it syncs are written together with one sync: waiting for each
// batch's own sync made the syncs a fifth of a replay's time (--sync batch against none).
//
// Queries stay exact while a Writer runs: a run's closed and late candles are in the
// candle tail and in p.inflight from its derive until its commit writes them to the store.
type Writer struct {
	p       *Pipeline
	appendQ chan *writeJob
	applyQ  chan *writeJob
	commitQ chan *writeJob
	wg      sync.WaitGroup

	mu  sync.Mutex
	err error
}

type writeJob struct {
	msgs    []feed.Message
	source  string
	pos     []byte
	release func()
	pending wal.PendingAppend // the WAL append, from appendLoop until applyLoop's Wait
	derived *derived
}

// NewWriter starts a Writer with up to depth batches in flight per stage. The caller must
// not Append on the pipeline while the Writer is open.
func (p *Pipeline) NewWriter(depth int) *Writer {
	if depth < 1 {
		depth = 1
	}
	w := &Writer{p: p, appendQ: make(chan *writeJob, depth), applyQ: make(chan *writeJob, depth), commitQ: make(chan *writeJob, depth)}
	w.wg.Add(3)
	go w.appendLoop()
	go w.applyLoop()
	go w.commitLoop()
	return w
}

// Write queues msgs, with the source position to record in the same WAL write (source ""
// for none). release, if not nil, is called once the batch is applied (or dropped after an
// error): msgs must not be modified before. Write returns the first error of any earlier
// batch; after an error, batches are dropped.
func (w *Writer) Write(msgs []feed.Message, source string, pos []byte, release func()) error {
	if err := w.Err(); err != nil {
		if release != nil {
			release()
		}
		return err
	}
	w.appendQ <- &writeJob{msgs: msgs, source: source, pos: pos, release: release}
	return nil
}

// Close waits until every queued batch is applied and returns the first error.
func (w *Writer) Close() error {
	close(w.appendQ)
	w.wg.Wait()
	return w.Err()
}

// Err returns the first error met so far.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

func (w *Writer) appendLoop() {
	defer w.wg.Done()
	defer close(w.applyQ)
	for j := range w.appendQ {
		if w.Err() != nil {
			j.done()
			continue
		}
		var err error
		if j.pending, err = w.p.log.StartAppend(j.msgs, j.source, j.pos); err != nil {
			w.fail(fmt.Errorf("pipeline: append to WAL: %w", err))
			j.done()
			continue
		}
		w.applyQ <- j
	}
}

func (w *Writer) applyLoop() {
	defer w.wg.Done()
	defer close(w.commitQ)
	for j := range w.applyQ {
		first, err := j.pending.Wait()
		if err != nil {
			w.fail(fmt.Errorf("pipeline: append to WAL: %w", err))
		}
		if w.Err() != nil {
			j.done()
			continue
		}
		w.p.mu.Lock()
		d, err := w.p.derive(first, j.msgs, false)
		if err == nil {
			w.p.addInflight(d)
		}
		w.p.mu.Unlock()
		if err != nil {
			w.fail(err)
			j.done()
			continue
		}
		j.derived = d
		j.done() // the messages are no longer needed: derive copied what commit uses
		j.release = nil
		w.commitQ <- j
	}
}

func (w *Writer) commitLoop() {
	defer w.wg.Done()
	for j := range w.commitQ {
		if w.Err() == nil {
			if err := w.p.commit(j.derived); err != nil {
				w.fail(err)
			}
		}
		j.done()
	}
}

func (j *writeJob) done() {
	if j.release != nil {
		j.release()
	}
}
