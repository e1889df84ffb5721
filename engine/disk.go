package engine

import (
	"context"
	"fmt"
	"sync"

	"github.com/quotesdev/quotes/diskguard"
)

// Pauser is a LiveSource that can stop taking input while disk space is low (source.Client):
// Pause closes its connections until Resume.
type Pauser interface {
	Pause(reason string)
	Resume()
}

// disk watches the free space of the data directory (Options.MinFreeDisk): appends wait
// while it is low, and the live source is paused.
type disk struct {
	w      *diskguard.Watcher
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	pauser Pauser
}

// startDisk checks that the data directory's file system has room and starts watching it;
// nil when no minimum is set.
func (e *Engine) startDisk() (*disk, error) {
	min := e.opts.MinFreeDisk
	if min.IsZero() || e.opts.ReadOnly {
		return nil, nil
	}
	d := &disk{}
	w, err := diskguard.New(diskguard.Options{
		Dir: e.opts.Dir, Threshold: min, Interval: e.opts.DiskCheckEvery, Clock: e.opts.Clock,
		Stat: e.opts.DiskStat, Logger: e.opts.Logger, Registerer: e.opts.Registerer,
		OnChange: d.changed,
	})
	if err != nil {
		return nil, fmt.Errorf("watch free disk space: %w", err)
	}
	d.w = w
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		w.Run(ctx)
	}()
	return d, nil
}

// changed pauses or resumes the live source at a transition.
func (d *disk) changed(st diskguard.State) {
	d.mu.Lock()
	p := d.pauser
	d.mu.Unlock()
	if p == nil {
		return
	}
	if st.Low {
		p.Pause("disk space low: " + st.Reason)
	} else {
		p.Resume()
	}
}

// attach makes p the source to pause (nil detaches), pausing it at once if space is low.
func (d *disk) attach(p Pauser) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.pauser = p
	d.mu.Unlock()
	if st := d.w.State(); p != nil && st.Low {
		p.Pause("disk space low: " + st.Reason)
	}
}

// wait blocks while space is low.
func (d *disk) wait(ctx context.Context) error {
	if d == nil {
		return nil
	}
	return d.w.Wait(ctx)
}

func (d *disk) stop() {
	if d == nil {
		return
	}
	d.cancel()
	d.wg.Wait()
}

// DiskErr is nil while the data directory's file system has room (or no minimum is set),
// else an error with the reason: for /readyz.
func (e *Engine) DiskErr() error {
	if e.disk == nil {
		return nil
	}
	return e.disk.w.Err()
}
