package hot

import (
	"testing"
	"unsafe"
)

// TestWindowHeaderSize: a compact window's header is one cache line on 64-bit platforms
// (every quote reads all of it), and maxKey is the largest key of each word.
func TestWindowHeaderSize(t *testing.T) {
	if n := unsafe.Sizeof(window[int32]{}); unsafe.Sizeof(uintptr(0)) == 8 && n != 64 {
		t.Errorf("compact window header is %d bytes, want 64 (on a 64-bit platform)", n)
	}
	if k := maxKey[int32](); k != 1<<31-1 {
		t.Errorf("maxKey[int32] = %d", k)
	}
	if k := maxKey[int64](); k != 1<<63-1 {
		t.Errorf("maxKey[int64] = %d", k)
	}
}
