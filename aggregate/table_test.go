package aggregate

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/quotesdev/quotes/feed"
)

// TestISINTableAgainstMap runs random puts, gets and deletes (valid and invalid ISINs,
// many collisions after growth and shrinking runs) against a Go map.
func TestISINTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var tab isinTable
	want := map[feed.ISIN]*incarnation{}
	keys := make([]feed.ISIN, 3000)
	for i := range keys {
		if i%50 == 0 {
			copy(keys[i][:], fmt.Sprintf("bad-%08d", i)) // not a valid ISIN
		} else {
			keys[i] = isinOf(fmt.Sprintf("K%06d", i))
		}
	}
	for op := 0; op < 200_000; op++ {
		k := keys[rng.IntN(len(keys))]
		switch rng.IntN(3) {
		case 0:
			inc := &incarnation{isin: k, id: uint64(op)}
			tab.put(&k, inc)
			want[k] = inc
		case 1:
			tab.del(&k)
			delete(want, k)
		default:
			if got := tab.get(&k); got != want[k] {
				t.Fatalf("op %d: get(%s) = %v, want %v", op, k, got, want[k])
			}
		}
		if op%1000 == 0 {
			if tab.len() != len(want) {
				t.Fatalf("op %d: len %d, want %d", op, tab.len(), len(want))
			}
			seen := 0
			tab.each(func(inc *incarnation) {
				seen++
				if want[inc.isin] != inc {
					t.Fatalf("op %d: each gave a stale entry %s", op, inc.isin)
				}
			})
			if seen != len(want) {
				t.Fatalf("op %d: each saw %d, want %d", op, seen, len(want))
			}
		}
	}
	for k, inc := range want {
		if tab.get(&k) != inc {
			t.Fatalf("final get(%s)", k)
		}
	}
}
