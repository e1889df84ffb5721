package wal

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/quotesdev/quotes/feed"
)

// syncRecorder replaces a fileSyncer's fdatasync and records the names of the files.
type syncRecorder struct {
	mu    sync.Mutex
	names []string
	block chan struct{} // if set, each call first waits for a send (or the close)
}

func (r *syncRecorder) datasync(f *os.File) error {
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names = append(r.names, filepath.Base(f.Name()))
	return nil
}

// take returns the names recorded since the last take, sorted.
func (r *syncRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := r.names
	r.names = nil
	slices.Sort(names)
	return names
}

func touch(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFileSyncerPasses: a pass syncs, per kind of file, the newest one the previous pass saw
// and every newer one; older files, tables and vanished files are skipped. It unmaps the
// pages first when asked to.
func TestFileSyncerPasses(t *testing.T) {
	dir := t.TempDir()
	rec := &syncRecorder{}
	trims := 0
	s := newFileSyncer(dir, func() int64 { trims++; return 0 })
	s.datasync = rec.datasync
	defer s.close()

	steps := []struct {
		add, remove []string
		trim        bool // ask for the pages to be unmapped first
		want        []string
	}{
		{add: []string{"000001.vlog", "000002.vlog", "000001.mem", "000003.mem", "000010.sst", "MANIFEST", "x.mem"},
			want: []string{"000001.mem", "000001.vlog", "000002.vlog", "000003.mem"}},
		{add: []string{"000003.vlog", "000004.mem"}, remove: []string{"000003.mem"}, trim: true,
			want: []string{"000002.vlog", "000003.vlog", "000004.mem"}},
		{want: []string{"000003.vlog", "000004.mem"}},
		{remove: []string{"000004.mem"}, add: []string{"000005.mem"},
			want: []string{"000003.vlog", "000005.mem"}},
	}
	for i, st := range steps {
		touch(t, dir, st.add...)
		for _, n := range st.remove {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
		trims = 0
		if err := s.sync(st.trim); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := rec.take(); !slices.Equal(got, st.want) {
			t.Errorf("step %d: synced %v, want %v", i, got, st.want)
		}
		if (trims == 1) != st.trim || trims > 1 {
			t.Errorf("step %d: unmapped %d times, asked: %v", i, trims, st.trim)
		}
	}
	if len(s.open) != 2 {
		t.Errorf("%d files kept open, want the newest of each kind: %v", len(s.open), s.open)
	}
}

// TestFileSyncerSharesPasses: syncs called while a pass runs are all served by one more pass,
// and none returns before a pass that started after it was called.
func TestFileSyncerSharesPasses(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir, "000001.vlog")
	rec := &syncRecorder{block: make(chan struct{})}
	s := newFileSyncer(dir, nil)
	s.datasync = rec.datasync
	defer s.close()

	first := make(chan error)
	go func() { first <- s.sync(false) }()
	for s.tickets.Load() < 1 {
		runtime.Gosched()
	}
	const waiters = 5
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.sync(false)
		}()
	}
	for s.tickets.Load() < 1+waiters {
		runtime.Gosched()
	}
	rec.block <- struct{}{} // the first pass's only fdatasync
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := len(rec.take()); got != 1 {
		t.Fatalf("first pass synced %d files, want 1", got)
	}
	select {
	case err := <-errs:
		t.Fatalf("a sync called during the first pass returned (%v) before a pass of its own", err)
	default:
	}
	close(rec.block)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(rec.take()); got != 1 {
		t.Errorf("%d syncs waiting behind a pass took %d passes, want 1", waiters, got)
	}
}

// TestLogSyncsItsFiles: Badger runs without SyncWrites; a durable mode's append returns
// after its value-log and memtable files were fdatasynced, SyncNone's without, and Sync
// syncs in every mode while Persist does only in the durable ones.
func TestLogSyncsItsFiles(t *testing.T) {
	for _, mode := range []SyncMode{SyncBatch, SyncAlways, SyncNone} {
		t.Run(mode.String(), func(t *testing.T) {
			l := openTest(t, Options{Dir: t.TempDir(), Sync: mode})
			if l.db.Opts().SyncWrites {
				t.Fatal("Badger runs with SyncWrites")
			}
			rec := &syncRecorder{}
			l.syncer.datasync = rec.datasync
			msgs := make([]feed.Message, 2000)
			for i := range msgs {
				msgs[i] = testMsg(1, uint64(i))
			}
			if _, err := l.Append(msgs); err != nil {
				t.Fatal(err)
			}
			got := rec.take()
			var vlog, mem bool
			for _, n := range got {
				vlog = vlog || filepath.Ext(n) == ".vlog"
				mem = mem || filepath.Ext(n) == ".mem"
			}
			if durable := mode != SyncNone; (vlog && mem) != durable || (len(got) > 0) != durable {
				t.Errorf("append in mode %s synced %v", mode, got)
			}
			if err := l.Persist(); err != nil {
				t.Fatal(err)
			}
			if got := rec.take(); (len(got) > 0) != (mode != SyncNone) {
				t.Errorf("Persist in mode %s synced %v", mode, got)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := rec.take(); len(got) == 0 {
				t.Errorf("Sync in mode %s synced nothing", mode)
			}
		})
	}
}
