package aggregate

import (
	"math/rand/v2"
	"testing"

	"github.com/quotesdev/quotes/feed"
)

func TestMinuteOf(t *testing.T) {
	tests := []struct{ ts, want int64 }{
		{0, 0},
		{1, 0},
		{MinuteNanos - 1, 0},
		{MinuteNanos, MinuteNanos},
		{-1, -MinuteNanos},
		{-MinuteNanos, -MinuteNanos},
		{-MinuteNanos - 1, -2 * MinuteNanos},
		{t0 + 59_999_999_999, t0},
	}
	for _, tt := range tests {
		if got := MinuteOf(tt.ts); got != tt.want {
			t.Errorf("MinuteOf(%d) = %d, want %d", tt.ts, got, tt.want)
		}
	}
}

func TestCandleAddTies(t *testing.T) {
	tests := []struct {
		name   string
		quotes [][3]int64 // ts, seq, price
		want   Candle
	}{
		{"single", [][3]int64{{5, 1, 7}}, Candle{Open: 7, High: 7, Low: 7, Close: 7, OpenTS: 5, CloseTS: 5, OpenSeq: 1, CloseSeq: 1, Quotes: 1}},
		{"same ts: seq decides", [][3]int64{{5, 2, 7}, {5, 1, 8}, {5, 3, 6}},
			Candle{Open: 8, High: 8, Low: 6, Close: 6, OpenTS: 5, CloseTS: 5, OpenSeq: 1, CloseSeq: 3, Quotes: 3}},
		{"ts decides before seq", [][3]int64{{5, 1, 7}, {4, 2, 9}, {6, 3, 1}, {5, 4, 3}},
			Candle{Open: 9, High: 9, Low: 1, Close: 1, OpenTS: 4, CloseTS: 6, OpenSeq: 2, CloseSeq: 3, Quotes: 4}},
	}
	for _, tt := range tests {
		var c Candle
		for _, q := range tt.quotes {
			c.Add(q[0], uint64(q[1]), feed.Price(q[2]))
		}
		if c != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, c, tt.want)
		}
	}
}

// TestCandleMergeAnyOrder checks that partial states merge into the state of their union,
// in any grouping and order (what late corrections and ClickHouse states rely on).
func TestCandleMergeAnyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	key := Key{ISIN: isinOf("AAAA"), Incarnation: 3, Minute: t0}
	for iter := 0; iter < 2000; iter++ {
		n := 1 + rng.IntN(12)
		type q struct {
			ts  int64
			seq uint64
			p   feed.Price
		}
		qs := make([]q, n)
		for i := range qs {
			qs[i] = q{t0 + rng.Int64N(4), uint64(i + 1), feed.Price(1 + rng.IntN(5))}
		}
		want := Candle{Key: key}
		for _, x := range qs {
			want.Add(x.ts, x.seq, x.p)
		}
		parts := make([]Candle, 1+rng.IntN(4))
		for i := range parts {
			parts[i].Key = key
		}
		for _, i := range rng.Perm(n) {
			parts[rng.IntN(len(parts))].Add(qs[i].ts, qs[i].seq, qs[i].p)
		}
		got := Candle{Key: key}
		for _, i := range rng.Perm(len(parts)) {
			got.Merge(&parts[i])
		}
		if got != want {
			t.Fatalf("iter %d: merged %+v, want %+v", iter, got, want)
		}
	}
	var empty Candle
	empty.Merge(&Candle{})
	if !empty.Empty() {
		t.Error("merging empty states made a quote")
	}
}
