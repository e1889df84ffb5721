package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2/z"
)

// fileSyncer makes what was written to the log's Badger DB durable: it fsyncs every
// memtable (.mem) and value-log (.vlog) file written since its last pass. Badger runs
// without SyncWrites (see badgerOptions); this is what the durable modes use instead.
//
// Why not Badger's SyncWrites: Badger writes both kinds of file through a shared memory
// mapping and msyncs it in its single writer goroutine, so every write in the DB waits for
// that msync. The kernel's writeback write-protects each dirty page that is still mapped,
// one TLB shootdown (an inter-processor interrupt) per page; on the 2-core VMs of the
// benchmarks that was ~4 s of CPU in a spec replay, on the goroutine everything else waits
// for. A pass here first asks the kernel to take the files' pages out of the process's page
// tables (trim: MADV_PAGEOUT, one batched flush for a whole range; the pages stay in the
// page cache, dirty, until written back), then fdatasyncs the files: writeback finds no
// mapping to protect. And Badger's own DB.Sync would not do: it syncs only the current
// memtable and value-log file, and either may have rotated since the write.
//
// Which files: Badger numbers each kind of file in the order it creates them and writes
// only to the newest one of each kind (it finishes writing a file before it creates the
// next). A pass syncs, per kind, every file numbered at least as high as the newest one the
// previous pass saw: the older ones were already finished then, and synced by that pass or
// an earlier one. A file that vanished was a memtable flushed to a table (which Badger
// syncs itself) or a value-log file given back by retention.
//
// Unmapping costs a read of /proc/self/maps, more than the shootdowns of a few pages: the
// log asks for it (sync(true)) once it has written syncTrimBytes since the last time.
//
// Passes are group-committed: a caller takes a ticket after its write and returns as soon
// as a pass that started after its ticket has finished.
type fileSyncer struct {
	dir      string
	trim     func() int64         // takes the files' pages out of the page tables (nil: never)
	datasync func(*os.File) error // fdatasync (tests record the calls)

	tickets  atomic.Uint64
	wantTrim atomic.Bool // a caller asked for the next pass to unmap first

	mu     sync.Mutex
	synced uint64              // every ticket up to synced is covered by a finished pass
	newest map[string]int      // per suffix, the newest file number the last pass saw
	open   map[string]*os.File // the files still being written, kept open between passes
}

// syncedSuffixes are the suffixes of the files Badger writes through its memory mappings.
var syncedSuffixes = [...]string{".mem", ".vlog"}

func newFileSyncer(dir string, trim func() int64) *fileSyncer {
	return &fileSyncer{dir: dir, trim: trim, datasync: datasync,
		newest: map[string]int{}, open: map[string]*os.File{}}
}

// syncTrimBytes is how much the log writes between two passes that unmap the files first.
const syncTrimBytes = 1 << 20

// sync returns when every write to the DB that returned before it was called is durable;
// with trim, the pass that covers it unmaps the files' pages first.
func (s *fileSyncer) sync(trim bool) error {
	if trim {
		s.wantTrim.Store(true)
	}
	ticket := s.tickets.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.synced >= ticket {
		return nil // a pass that started after our write has finished meanwhile
	}
	upTo := s.tickets.Load() // every ticket so far was taken after its write returned
	if err := s.pass(); err != nil {
		return err
	}
	s.synced = upTo
	return nil
}

// pass syncs the files written since the last pass (see fileSyncer).
func (s *fileSyncer) pass() error {
	if s.wantTrim.Swap(false) && s.trim != nil {
		s.trim()
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("wal: sync: list %s: %w", s.dir, err)
	}
	newest := make(map[string]int, len(syncedSuffixes))
	created := false
	for _, e := range entries {
		suffix, num, ok := badgerFile(e.Name())
		if !ok {
			continue
		}
		newest[suffix] = max(newest[suffix], num)
		if num < s.newest[suffix] {
			continue
		}
		created = created || num > s.newest[suffix]
		f := s.open[e.Name()]
		if f == nil {
			f, err = os.OpenFile(filepath.Join(s.dir, e.Name()), os.O_RDWR, 0)
			if errors.Is(err, fs.ErrNotExist) {
				continue // flushed to a table, or given back, since the listing
			}
			if err != nil {
				return fmt.Errorf("wal: sync: %w", err)
			}
			s.open[e.Name()] = f
		}
		if err := s.datasync(f); err != nil {
			return fmt.Errorf("wal: sync %s: %w", f.Name(), err)
		}
	}
	if created {
		// The new files' directory entries (Badger does not sync them itself).
		if err := z.SyncDir(s.dir); err != nil {
			return fmt.Errorf("wal: sync directory: %w", err)
		}
	}
	for name, f := range s.open {
		if suffix, num, _ := badgerFile(name); num < newest[suffix] {
			_ = f.Close() // finished: the next passes skip it
			delete(s.open, name)
		}
	}
	s.newest = newest
	return nil
}

// close closes the files kept open.
func (s *fileSyncer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, f := range s.open {
		_ = f.Close()
		delete(s.open, name)
	}
}

// badgerFile parses a memtable or value-log file name ("000012.vlog").
func badgerFile(name string) (suffix string, num int, ok bool) {
	for _, suffix := range syncedSuffixes {
		if stem, found := strings.CutSuffix(name, suffix); found {
			n, err := strconv.Atoi(stem)
			return suffix, n, err == nil
		}
	}
	return "", 0, false
}
