//go:build !linux

package wal

// residentTrimmer does nothing outside Linux (see resident_linux.go).
type residentTrimmer struct{}

func newResidentTrimmer(string) *residentTrimmer { return &residentTrimmer{} }

func (t *residentTrimmer) trim() int64 { return 0 }
