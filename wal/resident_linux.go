package wal

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// residentTrimmer keeps the log's files from accumulating in the process's resident set and
// in its page tables.
//
// Badger maps its value-log files (where the blocks live) and memtable files with mmap and
// writes through the mapping; the pages it wrote stay mapped until it closes the file, so
// the resident set grew with the log (at 50,000 quotes/s, by ~0.5 GB per 10 minutes)
// although nothing reads them again. The trimmer asks the kernel to reclaim the mapped
// pages of the log's value-log and memtable files (madvise MADV_PAGEOUT): clean pages leave
// memory, dirty ones leave the process's page tables and stay in the page cache until they
// are written back (which then needs no TLB shootdown per page: see fileSyncer). The data
// stays in the file and is read back on demand (a recovery, a replay of the WAL, a
// backfill).
//
// MADV_PAGEOUT is only a hint: it never changes what a mapping contains (unlike
// MADV_DONTNEED it is harmless even on memory that is no longer the file), and a kernel
// without it (before Linux 5.4) returns EINVAL, after which the trimmer turns itself off.
type residentTrimmer struct {
	dir      string // absolute, cleaned
	disabled bool
}

func newResidentTrimmer(dir string) *residentTrimmer {
	abs, err := filepath.Abs(dir)
	if err != nil || dir == "" {
		return &residentTrimmer{disabled: true}
	}
	return &residentTrimmer{dir: filepath.Clean(abs)}
}

// trim pages out the mapped value-log and memtable files of the log's directory and returns
// the bytes of address space it advised.
func (t *residentTrimmer) trim() int64 {
	if t == nil || t.disabled {
		return 0
	}
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.disabled = true
		return 0
	}
	var advised int64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		start, end, path, ok := parseMapsLine(sc.Bytes())
		if !ok || filepath.Dir(path) != t.dir {
			continue
		}
		if _, _, badger := badgerFile(filepath.Base(path)); !badger {
			continue
		}
		// The raw system call: the range is an address of the maps file, not Go memory.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_PAGEOUT); errno != 0 {
			if errno == unix.EINVAL || errno == unix.ENOSYS {
				t.disabled = true // no MADV_PAGEOUT in this kernel
			}
			return advised // else (EAGAIN, ENOMEM: the mapping changed) the next trim tries again
		}
		advised += int64(end - start)
	}
	return advised
}

// parseMapsLine parses "start-end perms offset dev inode   path" of /proc/self/maps (also
// the header lines of /proc/self/smaps); an anonymous mapping has no path (""). ok is
// false for any other line.
func parseMapsLine(line []byte) (start, end uintptr, path string, ok bool) {
	fields := bytes.Fields(line)
	if len(fields) < 5 {
		return 0, 0, "", false
	}
	lo, hi, found := bytes.Cut(fields[0], []byte("-"))
	if !found {
		return 0, 0, "", false
	}
	s, err1 := strconv.ParseUint(string(lo), 16, 64)
	e, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, "", false
	}
	if len(fields) == 5 {
		return uintptr(s), uintptr(e), "", true
	}
	// The path is the rest of the line after the inode (it may contain spaces).
	i := bytes.Index(line, fields[5])
	return uintptr(s), uintptr(e), string(line[i:]), true
}

// datasync flushes f's data (and the metadata needed to read it) to the disk.
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
