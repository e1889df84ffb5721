//go:build unix

package engine

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the size bytes of f into memory, read-only, for a sequential read; unmap
// releases the mapping. A file that cannot be mapped (a pipe, a special file system)
// returns an error, and the caller reads it with read(2).
func mapFile(f *os.File, size int64) (data []byte, unmap func() error, err error) {
	if size <= 0 || size != int64(int(size)) {
		return nil, nil, fmt.Errorf("map %s: size %d", f.Name(), size)
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map %s: %w", f.Name(), err)
	}
	_ = syscall.Madvise(data, syscall.MADV_SEQUENTIAL) // a hint: read-ahead, early reclaim
	return data, func() error { return syscall.Munmap(data) }, nil
}
