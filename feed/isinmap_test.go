package feed

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestISINMapAgainstMap runs random puts, gets and deletes (valid and invalid ISINs,
// many collisions after growth and shrinking runs) against a Go map.
func TestISINMapAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var tab ISINMap[*entryOf]
	want := map[ISIN]*entryOf{}
	keys := make([]ISIN, 3000)
	for i := range keys {
		if i%50 == 0 {
			copy(keys[i][:], fmt.Sprintf("bad-%08d", i)) // not a valid ISIN
		} else {
			keys[i] = ISIN([]byte((fmt.Sprintf("K%06d", i) + "000000000000")[:ISINLen]))
		}
	}
	for op := 0; op < 200_000; op++ {
		k := keys[rng.IntN(len(keys))]
		switch rng.IntN(3) {
		case 0:
			inc := &entryOf{isin: k, id: uint64(op)}
			tab.Put(&k, inc)
			want[k] = inc
		case 1:
			tab.Delete(&k)
			delete(want, k)
		default:
			if got, _ := tab.Get(&k); got != want[k] {
				t.Fatalf("op %d: get(%s) = %v, want %v", op, k, got, want[k])
			}
		}
		if op%1000 == 0 {
			if tab.Len() != len(want) {
				t.Fatalf("op %d: len %d, want %d", op, tab.Len(), len(want))
			}
			seen := 0
			for inc := range tab.Values() {
				seen++
				if want[inc.isin] != inc {
					t.Fatalf("op %d: Values gave a stale entry %s", op, inc.isin)
				}
			}
			if seen != len(want) {
				t.Fatalf("op %d: Values saw %d, want %d", op, seen, len(want))
			}
		}
	}
	for k, inc := range want {
		if got, ok := tab.Get(&k); !ok || got != inc {
			t.Fatalf("final get(%s)", k)
		}
	}
}

// TestISINMapGet: values of ISINs that pack and of byte strings that do not (kept aside,
// the zero ISIN among them) are found again, and unknown ones are not.
func TestISINMapGet(t *testing.T) {
	var tab ISINMap[uint32]
	isins := []ISIN{
		ISIN([]byte("US0378331005")),
		ISIN([]byte("DE000BASF111")),
		ISIN([]byte("us0378331005")), // lower case: does not pack
		ISIN([]byte("ZZZZZZZZZZZZ")),
		{},
	}
	for i := range isins {
		tab.Put(&isins[i], uint32(i+7))
	}
	for i := range isins {
		if id, ok := tab.Get(&isins[i]); !ok || id != uint32(i+7) {
			t.Errorf("Get(%q) = %d, %v; want %d", isins[i][:], id, ok, i+7)
		}
		if k := PackISIN(&isins[i]); k != 0 {
			if id, ok := tab.GetPacked(k); !ok || id != uint32(i+7) {
				t.Errorf("GetPacked(%q) = %d, %v; want %d", isins[i][:], id, ok, i+7)
			}
		}
	}
	unknown := ISIN([]byte("US0378331006"))
	if id, ok := tab.Get(&unknown); ok {
		t.Errorf("Get of an ISIN never put = %d, true", id)
	}
	odd := ISIN([]byte("us0378331006"))
	if id, ok := tab.Get(&odd); ok {
		t.Errorf("Get of an unpackable ISIN never put = %d, true", id)
	}
}

// entryOf is a value of TestISINMapAgainstMap's table.
type entryOf struct {
	isin ISIN
	id   uint64
}
