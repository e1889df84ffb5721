package zktest_test

import (
	"testing"

	"github.com/quotesdev/quotes/internal/zktest"
)

func TestStart(t *testing.T) {
	s := zktest.Start(t)
	if s.PID() == 0 {
		t.Fatal("no process")
	}
	t.Logf("zookeeper on %s", s.Addr)
	s.Stop()
	if s.PID() != 0 {
		t.Fatal("running after Stop")
	}
}
