//go:build !linux

package pipeline

import "os"

// readCheckpointFile returns the contents of the checkpoint file at path; release is a
// no-op here (the Linux build maps the file instead).
func readCheckpointFile(path string) (data []byte, release func(), err error) {
	data, err = os.ReadFile(path)
	return data, func() {}, err
}
