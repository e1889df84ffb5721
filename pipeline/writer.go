package pipeline

import (
	"fmt"
	"sync"

	"github.com/quotesdev/quotes/feed"
)

// Writer overlaps the two halves of Append for a bulk producer (replay): one goroutine
// appends batches to the WAL, in order, and another applies each batch once it is durable.
// So the WAL's fsync of batch n+1 runs while batch n is aggregated, and the rule "durable
// before it affects anything" still holds batch by batch.
type Writer struct {
	p       *Pipeline
	appendQ chan *writeJob
	applyQ  chan *writeJob
	wg      sync.WaitGroup

	mu  sync.Mutex
	err error
}

type writeJob struct {
	msgs    []feed.Message
	source  string
	pos     []byte
	release func()
	first   uint64
}

// NewWriter starts a Writer with up to depth batches in flight per stage. The caller must
// not Append on the pipeline while the Writer is open.
func (p *Pipeline) NewWriter(depth int) *Writer {
	if depth < 1 {
		depth = 1
	}
	w := &Writer{p: p, appendQ: make(chan *writeJob, depth), applyQ: make(chan *writeJob, depth)}
	w.wg.Add(2)
	go w.appendLoop()
	go w.applyLoop()
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
		if j.source != "" {
			j.first, err = w.p.log.AppendFrom(j.msgs, j.source, j.pos)
		} else {
			j.first, err = w.p.log.Append(j.msgs)
		}
		if err != nil {
			w.fail(fmt.Errorf("pipeline: append to WAL: %w", err))
			j.done()
			continue
		}
		w.applyQ <- j
	}
}

func (w *Writer) applyLoop() {
	defer w.wg.Done()
	for j := range w.applyQ {
		if w.Err() == nil {
			if err := w.p.applyMessages(j.first, j.msgs); err != nil {
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
