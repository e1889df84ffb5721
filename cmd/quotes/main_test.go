package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain gives the tests of this package, and every process they start, a temporary
// directory of their own ($TMPDIR), and removes it at the end: the quotes binary the crash
// tests build (quotesBinary), and whatever a process killed with SIGKILL leaves in the
// temporary directory (an S3 upload's staging file), which no t.Cleanup of the process
// itself can remove. t.TempDir directories are inside it too, and removed as usual.
func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "quotes-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmp)
	code := m.Run()
	if err := os.RemoveAll(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "TestMain: remove the temporary directory:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
