// Package shard assigns ISINs to the shards of a scaled-out deployment (SPEC §11): with
// `--shard K/N` an instance keeps exactly the ISINs whose shard is K, and the ClickHouse
// cluster's Distributed tables route rows by the same function.
//
// The function, for other tools to compute:
//
//	shard(isin, N) = jump(sipHash64(isin), N)
//
// where isin is the 12 ASCII bytes of the ISIN, sipHash64 is SipHash-2-4 with a zero key
// (k0 = k1 = 0) returning its 64-bit result as an unsigned integer — ClickHouse's
// sipHash64(FixedString(12)) — and jump is the jump consistent hash of Lamping and Veach
// ("A Fast, Minimal Memory, Consistent Hash Algorithm", 2014) — ClickHouse's
// jumpConsistentHash. In ClickHouse SQL it is SQL("isin", N):
//
//	jumpConsistentHash(sipHash64(isin), N)
//
// Test vectors (shard_test.go checks them, and that ClickHouse computes the same):
//
//	isin          sipHash64 (decimal)    of 2  of 3  of 16
//	US0378331005  8677131507609368438      1     1     3
//	DE0007164600  15042880227146515722     0     0     4
//	FR0000120271  6808285979737852525      1     1    11
//	JP3633400001  2829665477965544532      1     2     2
//
// Jump consistent hashing moves only about 1/N of the ISINs when N grows by one, and
// N is part of the assignment: every instance and the cluster must agree on it.
package shard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/quotesdev/quotes/feed"
)

// Spec is one shard of N: K in [0, N). The zero Spec (N = 0) means "not sharded": every
// ISIN is kept.
type Spec struct {
	K, N int
}

// MaxShards is the largest N.
const MaxShards = 1 << 16

// ErrSpec is wrapped by Parse's errors.
var ErrSpec = errors.New("invalid shard")

// Parse reads "K/N" (0 ≤ K < N ≤ MaxShards). The empty string is the zero Spec.
func Parse(s string) (Spec, error) {
	if s == "" {
		return Spec{}, nil
	}
	ks, ns, ok := strings.Cut(s, "/")
	if !ok {
		return Spec{}, fmt.Errorf("%w %q: want K/N, e.g. 0/2", ErrSpec, s)
	}
	k, err1 := strconv.Atoi(strings.TrimSpace(ks))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	if err1 != nil || err2 != nil {
		return Spec{}, fmt.Errorf("%w %q: want K/N with integers, e.g. 0/2", ErrSpec, s)
	}
	sp := Spec{K: k, N: n}
	if n < 1 {
		return Spec{}, fmt.Errorf("%w %q: N must be at least 1", ErrSpec, s)
	}
	if err := sp.Validate(); err != nil {
		return Spec{}, err
	}
	return sp, nil
}

// Validate checks 0 ≤ K < N ≤ MaxShards (the zero Spec is valid).
func (s Spec) Validate() error {
	if s == (Spec{}) {
		return nil
	}
	if s.N < 1 || s.N > MaxShards || s.K < 0 || s.K >= s.N {
		return fmt.Errorf("%w %d/%d: want 0 ≤ K < N ≤ %d", ErrSpec, s.K, s.N, MaxShards)
	}
	return nil
}

// IsZero reports whether s is the zero Spec (not sharded).
func (s Spec) IsZero() bool { return s.N == 0 }

// String returns "K/N", or "" for the zero Spec.
func (s Spec) String() string {
	if s.IsZero() {
		return ""
	}
	return strconv.Itoa(s.K) + "/" + strconv.Itoa(s.N)
}

// Keeps reports whether the instance of s keeps isin.
func (s Spec) Keeps(isin feed.ISIN) bool {
	return s.IsZero() || Of(isin, s.N) == s.K
}

// Filter removes from msgs, in place, the messages of ISINs that s does not keep: quotes,
// ADDs and DELETEs alike. Messages without an ISIN (clock ticks) are kept. It returns the
// kept prefix and the number removed.
func (s Spec) Filter(msgs []feed.Message) ([]feed.Message, int) {
	if s.IsZero() {
		return msgs, 0
	}
	out := msgs[:0]
	for i := range msgs {
		m := &msgs[i]
		if m.ISIN.IsZero() || Of(m.ISIN, s.N) == s.K {
			out = append(out, *m)
		}
	}
	return out, len(msgs) - len(out)
}

// Of returns the shard of isin among n (0 ≤ result < n); n < 1 gives 0.
func Of(isin feed.ISIN, n int) int {
	if n <= 1 {
		return 0
	}
	return Jump(Hash(isin), n)
}

// Hash is the 64-bit hash of the ISIN's 12 bytes: SipHash-2-4 with a zero key, as
// ClickHouse's sipHash64.
func Hash(isin feed.ISIN) uint64 { return SipHash64(isin[:]) }

// SQL returns the ClickHouse expression of Of for the column (or expression) col and n
// shards: jumpConsistentHash(sipHash64(col), n). It runs on ClickHouse 18.16 and current
// releases; col must be the ISIN as FixedString(12) (or a String of its 12 bytes).
func SQL(col string, n int) string {
	return fmt.Sprintf("jumpConsistentHash(sipHash64(%s), %d)", col, n)
}

// Jump is the jump consistent hash of key into n buckets (n ≥ 1).
func Jump(key uint64, n int) int {
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// SipHash64 is SipHash-2-4 of b with the key (0, 0).
func SipHash64(b []byte) uint64 {
	v0 := uint64(0x736f6d6570736575)
	v1 := uint64(0x646f72616e646f6d)
	v2 := uint64(0x6c7967656e657261)
	v3 := uint64(0x7465646279746573)
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(b)
	for len(b) >= 8 {
		m := binary.LittleEndian.Uint64(b)
		v3 ^= m
		round()
		round()
		v0 ^= m
		b = b[8:]
	}
	var last [8]byte
	copy(last[:], b)
	last[7] = byte(n)
	m := binary.LittleEndian.Uint64(last[:])
	v3 ^= m
	round()
	round()
	v0 ^= m
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
