package shard_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/shard"
)

// vectors are the documented test vectors: ISIN, sipHash64, shard of 2, 3 and 16.
var vectors = []struct {
	isin          string
	hash          uint64
	of2, of3, o16 int
}{
	{"US0378331005", 8677131507609368438, 1, 1, 3},
	{"DE0007164600", 15042880227146515722, 0, 0, 4},
	{"GB0002634946", 17292220704968538577, 0, 0, 0},
	{"FR0000120271", 6808285979737852525, 1, 1, 11},
	{"JP3633400001", 2829665477965544532, 1, 2, 2},
	{"CH0012032048", 12400698811100919807, 0, 0, 0},
}

func mustISIN(t *testing.T, s string) feed.ISIN {
	t.Helper()
	i, ok := feed.ParseISIN(s)
	if !ok {
		t.Fatalf("bad ISIN %q", s)
	}
	return i
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		i := mustISIN(t, v.isin)
		if h := shard.Hash(i); h != v.hash {
			t.Errorf("Hash(%s) = %d, want %d", v.isin, h, v.hash)
		}
		for _, c := range []struct{ n, want int }{{2, v.of2}, {3, v.of3}, {16, v.o16}, {1, 0}} {
			if got := shard.Of(i, c.n); got != c.want {
				t.Errorf("Of(%s, %d) = %d, want %d", v.isin, c.n, got, c.want)
			}
		}
	}
	// SipHash-2-4 reference vector (key 0…15 is not ours; the empty input with key 0 is):
	// the SipHash paper's implementation gives 0x1e924b9d737700d7 for "" and key 0.
	if h := shard.SipHash64(nil); h != 0x1e924b9d737700d7 {
		t.Errorf("SipHash64(\"\") = %#x, want 0x1e924b9d737700d7", h)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]shard.Spec{"": {}, "0/2": {0, 2}, "1/2": {1, 2}, "3/4": {3, 4}, "0/1": {0, 1}} {
		got, err := shard.Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("String of %q = %q", in, got.String())
		}
	}
	for _, bad := range []string{"2/2", "-1/2", "1", "a/b", "0/0", "1/0", "0/70000"} {
		if _, err := shard.Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// TestBalanceAndFilter: every ISIN lands in exactly one shard, the shards are about even,
// and Filter keeps exactly Keeps' ISINs plus ticks.
func TestBalanceAndFilter(t *testing.T) {
	const n, total = 3, 3000
	counts := make([]int, n)
	var msgs []feed.Message
	for i := 0; i < total; i++ {
		isin := mustISIN(t, fmt.Sprintf("XX%09d", i)+checkDigit(fmt.Sprintf("XX%09d", i)))
		counts[shard.Of(isin, n)]++
		msgs = append(msgs, feed.Message{Kind: feed.KindQuote, ISIN: isin, TS: int64(i)})
	}
	msgs = append(msgs, feed.Message{Kind: 4, TS: total}) // a tick: no ISIN
	for k, c := range counts {
		if c < total/n*8/10 || c > total/n*12/10 {
			t.Errorf("shard %d of %d holds %d of %d ISINs", k, n, c, total)
		}
	}
	kept := 0
	for k := 0; k < n; k++ {
		sp := shard.Spec{K: k, N: n}
		in := append([]feed.Message(nil), msgs...)
		out, dropped := sp.Filter(in)
		if len(out)+dropped != len(msgs) || out[len(out)-1].Kind != 4 {
			t.Fatalf("shard %d: kept %d + dropped %d of %d, last %+v", k, len(out), dropped, len(msgs), out[len(out)-1])
		}
		for _, m := range out[:len(out)-1] {
			if !sp.Keeps(m.ISIN) {
				t.Fatalf("shard %d kept %s", k, m.ISIN)
			}
		}
		kept += len(out) - 1
	}
	if kept != total {
		t.Fatalf("the shards kept %d ISINs in all, want %d", kept, total)
	}
}

// checkDigit returns the ISIN check digit of the first 11 characters.
func checkDigit(s string) string {
	var digits strings.Builder
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			fmt.Fprintf(&digits, "%d", r-'A'+10)
		} else {
			digits.WriteRune(r)
		}
	}
	d := digits.String()
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		x := int(d[i] - '0')
		if (len(d)-1-i)%2 == 0 {
			x *= 2
		}
		sum += x/10 + x%10
	}
	return fmt.Sprint((10 - sum%10) % 10)
}

// TestSameAsClickHouse: ClickHouse's SQL(…) gives the same hash and shard as Go.
func TestSameAsClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a ClickHouse server")
	}
	srv := chtest.Start(t)
	opts, err := clickhouse.ParseDSN(srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range vectors {
		for _, n := range []int{2, 3, 16} {
			var h uint64
			var k int32
			col := fmt.Sprintf("toFixedString('%s', 12)", v.isin)
			q := fmt.Sprintf("SELECT sipHash64(%s), toInt32(%s)", col, shard.SQL(col, n))
			if err := conn.QueryRow(ctx, q).Scan(&h, &k); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if h != v.hash || int(k) != shard.Of(mustISIN(t, v.isin), n) {
				t.Errorf("%s: ClickHouse %d, %d; Go %d, %d", v.isin, h, k, v.hash, shard.Of(mustISIN(t, v.isin), n))
			}
		}
	}
}
