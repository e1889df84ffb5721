package engine

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/diskguard"
	"github.com/quotesdev/quotes/feed"
)

// pausingSource is a fakeSource that records Pause and Resume.
type pausingSource struct {
	*fakeSource
	mu     sync.Mutex
	paused bool
	pauses int
}

func (s *pausingSource) Pause(string) { s.mu.Lock(); s.paused = true; s.pauses++; s.mu.Unlock() }
func (s *pausingSource) Resume()      { s.mu.Lock(); s.paused = false; s.mu.Unlock() }
func (s *pausingSource) isPaused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

// TestDiskFull: with free space below Options.MinFreeDisk, input pauses (the source is
// paused, a batch already handed over waits instead of being written), reads keep working,
// /readyz has the reason, and everything resumes when space is back; nothing acknowledged is
// lost. Opening on a full disk is one clear error.
func TestDiskFull(t *testing.T) {
	mock := clock.NewMock()
	t0 := time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)
	mock.Set(t0)
	var free atomic.Uint64
	free.Store(10 << 30)
	stat := func(string) (diskguard.Usage, error) {
		return diskguard.Usage{Free: free.Load(), Total: 100 << 30}, nil
	}
	opts := testOptions(t, "d")
	opts.Clock, opts.DiskStat, opts.DiskCheckEvery = mock, stat, time.Second
	opts.MinFreeDisk = diskguard.Threshold{Bytes: 1 << 30}
	e := mustOpen(t, opts)
	src := &pausingSource{fakeSource: newFakeSource()}
	done := make(chan error, 1)
	go func() { done <- e.Ingest(context.Background(), src, IngestOptions{}) }()
	<-src.running
	isin := mustISIN("US0378331005")
	ts := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	src.in <- []feed.Message{{TS: ts(time.Second), Kind: feed.KindAdd, ISIN: isin, Description: "Apple"}}
	for i := 0; i < 1e6 && e.WALLastSeq() < 1; i++ {
		runtime.Gosched() // the ADD is appended before the disk fills up
	}

	free.Store(100 << 20) // 100 MiB: below the minimum
	settle := func(cond func() bool) bool {
		for i := 0; i < 100 && !cond(); i++ {
			mock.Add(time.Second)
			for j := 0; j < 50; j++ {
				runtime.Gosched()
			}
		}
		return cond()
	}
	if !settle(src.isPaused) {
		t.Fatal("source not paused on a full disk")
	}
	if err := e.DiskErr(); err == nil {
		t.Fatal("DiskErr nil on a full disk")
	}
	// a batch handed over now waits, unwritten
	sent := make(chan struct{})
	go func() {
		src.in <- []feed.Message{{TS: ts(2 * time.Second), Kind: feed.KindQuote, ISIN: isin, Price: 100 * feed.PriceScale}}
		close(sent)
	}()
	<-sent
	for i := 0; i < 100; i++ {
		runtime.Gosched()
	}
	if last := e.WALLastSeq(); last != 1 {
		t.Fatalf("WAL at seq %d on a full disk, want 1 (nothing written)", last)
	}
	// reads keep working
	if ins, err := e.Backend().Instruments(context.Background()); err != nil || len(ins) != 1 {
		t.Fatalf("instruments on a full disk: %v %v", ins, err)
	}

	free.Store(10 << 30) // space is back
	if !settle(func() bool { return !src.isPaused() && e.WALLastSeq() == 2 }) {
		t.Fatalf("not resumed: paused %v, WAL at %d", src.isPaused(), e.WALLastSeq())
	}
	if err := e.DiskErr(); err != nil {
		t.Fatalf("DiskErr after space returned: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if src.acked != 2 || len(src.refused) != 0 {
		t.Fatalf("acknowledged %d, refused %v", src.acked, src.refused)
	}

	// opening on a full disk: one clear error
	free.Store(1 << 20)
	opts2 := testOptions(t, "full")
	opts2.DiskStat = stat
	opts2.MinFreeDisk = opts.MinFreeDisk
	_, err := Open(opts2)
	if err == nil || errors.Is(err, ErrLocked) {
		t.Fatalf("open on a full disk: %v", err)
	}
	t.Logf("open on a full disk: %v", err)
}

// TestDiskWatchedDuringRecovery: the free-space watcher starts before the WAL is re-applied,
// so a disk that fills up while a long recovery runs shows at once (quotes_disk_low 1), not
// only once recovery is over.
func TestDiskWatchedDuringRecovery(t *testing.T) {
	var stats atomic.Int64
	stat := func(string) (diskguard.Usage, error) {
		free := uint64(10 << 30)
		if stats.Add(1) > 1 { // Open's own check passes; the watcher's first one finds it low
			free = 100 << 20
		}
		return diskguard.Usage{Free: free, Total: 100 << 30}, nil
	}
	reg := prometheus.NewRegistry()
	opts := testOptions(t, "d")
	opts.Clock, opts.DiskStat, opts.Registerer = clock.NewMock(), stat, reg
	opts.MinFreeDisk = diskguard.Threshold{Bytes: 1 << 30}
	var lowDuringRecovery []float64
	opts.RecoveryProgress = func(done, total uint64) {
		low, ok := gauge(t, reg, "quotes_disk_low", "")
		if !ok {
			low = -1 // not reported yet
		}
		lowDuringRecovery = append(lowDuringRecovery, low)
	}
	e := mustOpen(t, opts)
	defer e.Close()
	if len(lowDuringRecovery) == 0 {
		t.Fatal("RecoveryProgress never called")
	}
	for _, v := range lowDuringRecovery {
		if v != 1 {
			t.Fatalf("quotes_disk_low during recovery: %v, want 1 throughout", lowDuringRecovery)
		}
	}
	if e.DiskErr() == nil {
		t.Fatal("DiskErr nil after opening on a disk that filled up during recovery")
	}
}
