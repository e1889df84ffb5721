package wal

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// vlogResident returns the resident bytes of this process's mappings of dir's value-log
// files (/proc/self/smaps).
func vlogResident(t *testing.T, dir string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	var total int64
	in := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Bytes()
		if _, _, path, ok := parseMapsLine(line); ok {
			in = filepath.Ext(path) == ".vlog" && filepath.Dir(path) == dir
			continue
		}
		if in && bytes.HasPrefix(line, []byte("Rss:")) {
			f := bytes.Fields(line)
			kb, _ := strconv.ParseInt(string(f[1]), 10, 64)
			total += kb << 10
		}
	}
	return total
}

// TestResidentTrim: the value-log pages Badger writes through its mapping stay in the
// process's resident set unless the log pages them out; with the trim they do not pile up.
func TestResidentTrim(t *testing.T) {
	const records = 1_500_000 // ~15 MB of blocks
	for _, tc := range []struct {
		name string
		trim int64
	}{{"off", -1}, {"every 1 MiB", 1 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := filepath.Abs(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			l := openTest(t, Options{Dir: dir, Sync: SyncNone, ResidentTrimBytes: tc.trim})
			for i := 0; i < records; i += 50_000 {
				if _, err := l.Append(quoteBatch(i, 50_000)); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			// MADV_PAGEOUT is advice: pages the kernel is writing back at that moment stay
			// (seen on a loaded CI machine). A few tries settle it.
			l.TrimResident()
			rss := vlogResident(t, dir)
			for try := 0; tc.trim > 0 && rss > 2<<20 && try < 5; try++ {
				l.TrimResident()
				rss = vlogResident(t, dir)
			}
			t.Logf("value-log pages resident after %d records: %d KiB", records, rss>>10)
			if tc.trim < 0 && rss < 8<<20 {
				t.Errorf("without the trim only %d KiB resident: the test does not measure what it should", rss>>10)
			}
			if tc.trim > 0 && rss > 2<<20 {
				t.Errorf("with the trim %d KiB of the value log stay resident", rss>>10)
			}
		})
	}
}

// TestParseMapsLine: file mappings give their path (spaces included), anonymous ones an
// empty path — vlogResident relies on it to end a value-log mapping's fields at the next
// mapping —, and smaps's field lines are not mappings.
func TestParseMapsLine(t *testing.T) {
	for _, tc := range []struct {
		line       string
		start, end uintptr
		path       string
		ok         bool
	}{
		{"7f0000000000-7f0008000000 rw-s 00000000 fd:01 1234   /tmp/a b/000001.vlog", 0x7f0000000000, 0x7f0008000000, "/tmp/a b/000001.vlog", true},
		{"c000000000-c000400000 rw-p 00000000 00:00 0 ", 0xc000000000, 0xc000400000, "", true},
		{"7ffd1000-7ffd2000 rw-p 00000000 00:00 0    [stack]", 0x7ffd1000, 0x7ffd2000, "[stack]", true},
		{"Rss:                1024 kB", 0, 0, "", false},
		{"VmFlags: rd wr mr mw me ac sd", 0, 0, "", false},
		{"2000-1000 rw-p 00000000 00:00 0", 0, 0, "", false},
	} {
		start, end, path, ok := parseMapsLine([]byte(tc.line))
		if ok != tc.ok || ok && (start != tc.start || end != tc.end || path != tc.path) {
			t.Errorf("parseMapsLine(%q) = %#x, %#x, %q, %v; want %#x, %#x, %q, %v", tc.line, start, end, path, ok, tc.start, tc.end, tc.path, tc.ok)
		}
	}
}
