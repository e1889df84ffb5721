package hot

import (
	"testing"
	"unsafe"
)

// TestWindowHeaderSize: a compact window's header is one cache line on 64-bit platforms
// (every quote reads all of it), a delta window's two (its last three entries start the
// second), and maxKey is the largest key of each word.
func TestWindowHeaderSize(t *testing.T) {
	if n := unsafe.Sizeof(window[int32]{}); unsafe.Sizeof(uintptr(0)) == 8 && n != 64 {
		t.Errorf("compact window header is %d bytes, want 64 (on a 64-bit platform)", n)
	}
	if n, off := unsafe.Sizeof(deltaWindow{}), unsafe.Offsetof(deltaWindow{}.front); unsafe.Sizeof(uintptr(0)) == 8 && (n != 128 || off != 64) {
		t.Errorf("delta window header is %d bytes, its entries at %d, want 128 and 64 (on a 64-bit platform)", n, off)
	}
	if k := maxKey[int32](); k != 1<<31-1 {
		t.Errorf("maxKey[int32] = %d", k)
	}
	if k := maxKey[int64](); k != 1<<63-1 {
		t.Errorf("maxKey[int64] = %d", k)
	}
}
