package feed

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// packRef is PackISIN written plainly: validate, then read the base-36 number.
func packRef(isin ISIN) uint64 {
	if _, ok := ParseISINBytes(isin[:]); !ok {
		return 0
	}
	var v uint64
	for _, c := range isin {
		d := uint64(c - '0')
		if c >= 'A' {
			d = uint64(c-'A') + 10
		}
		v = v*36 + d
	}
	return v + 1
}

func TestPackISIN(t *testing.T) {
	for _, tt := range []struct {
		isin string
		want uint64
	}{
		{"000000000000", 1},
		{"000000000001", 2},
		{"00000000000A", 11},
		{"00000000000Z", 36},
		{"000000000010", 37},
		{"100000000000", 131621703842267136 + 1}, // 36^11 + 1
		{"ZZZZZZZZZZZZ", 4738381338321616896},    // 36^12
		{"US0378331005", packRef(ISIN([]byte("US0378331005")))},
		{"", 0}, // the zero ISIN
		{"us0378331005", 0},
		{"US037833100-", 0},
		{"US03783310 5", 0},
		{"US037833100@", 0}, // '@' is just below 'A'
		{"US037833100[", 0}, // '[' is just above 'Z'
		{"US037833100/", 0}, // '/' is just below '0'
		{"US037833100:", 0}, // ':' is just above '9'
		{"\xffS0378331005", 0},
		{"US0378331005"[:11], 0}, // a NUL at the end
	} {
		var isin ISIN
		copy(isin[:], tt.isin)
		if got := PackISIN(&isin); got != tt.want {
			t.Errorf("PackISIN(%q) = %d, want %d", tt.isin, got, tt.want)
		}
	}
	if packRef(ISIN([]byte("US0378331005"))) == 0 {
		t.Fatal("reference rejects a valid ISIN")
	}
}

// TestPackISINRandom compares PackISIN with the reference on random valid ISINs and on
// ones with a random byte anywhere, and checks that it is injective and order-preserving
// on valid ones.
func TestPackISINRandom(t *testing.T) {
	const alpha = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	rng := rand.New(rand.NewPCG(1, 2))
	valid := func() ISIN {
		var isin ISIN
		for j := range isin {
			isin[j] = alpha[rng.IntN(len(alpha))]
		}
		return isin
	}
	for range 100_000 {
		a, b := valid(), valid()
		if rng.IntN(4) == 0 {
			copy(b[:rng.IntN(ISINLen)], a[:]) // share a prefix
		}
		pa, pb := PackISIN(&a), PackISIN(&b)
		if pa != packRef(a) || pa == 0 {
			t.Fatalf("PackISIN(%s) = %d, want %d", a, pa, packRef(a))
		}
		if c := bytes.Compare(a[:], b[:]); (c < 0) != (pa < pb) || (c == 0) != (pa == pb) {
			t.Fatalf("order: %s vs %s (%d) packed %d vs %d", a, b, c, pa, pb)
		}
		bad := a
		bad[rng.IntN(ISINLen)] = byte(rng.IntN(256))
		if got := PackISIN(&bad); got != packRef(bad) {
			t.Fatalf("PackISIN(%q) = %d, want %d", bad[:], got, packRef(bad))
		}
	}
}

func BenchmarkPackISIN(b *testing.B) {
	isins := make([]ISIN, 1024)
	for i := range isins {
		copy(isins[i][:], fmt.Sprintf("US%010d", i*7919))
	}
	var sink uint64
	for i := 0; b.Loop(); i++ {
		sink += PackISIN(&isins[i&1023])
	}
	_ = sink
}
