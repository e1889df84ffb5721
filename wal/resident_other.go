//go:build !linux

package wal

import "os"

// residentTrimmer does nothing outside Linux (see resident_linux.go).
type residentTrimmer struct{}

func newResidentTrimmer(string) *residentTrimmer { return &residentTrimmer{} }

func (t *residentTrimmer) trim() int64 { return 0 }

// datasync flushes f to the disk.
func datasync(f *os.File) error { return f.Sync() }
