package pipeline

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// readCheckpointFile returns the contents of the checkpoint file at path, mapped read-only
// with its pages populated at once (it is mostly in the page cache: reading it into the
// heap would fault in and copy ~70 MB of fresh memory), and release, which unmaps it: the
// caller must not touch the contents after. The file is only ever replaced by a rename, so
// the mapped inode does not change under the mapping.
func readCheckpointFile(path string) (data []byte, release func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size == 0 {
		return nil, func() {}, nil
	}
	if size != int64(int(size)) {
		return nil, nil, fmt.Errorf("checkpoint file of %d bytes: too large to map", size)
	}
	data, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, nil, fmt.Errorf("map %s: %w", path, err)
	}
	return data, func() { _ = unix.Munmap(data) }, nil
}
