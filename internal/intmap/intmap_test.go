package intmap

import (
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// fibInv is the inverse of fib modulo 2^64.
var fibInv = func() uint64 {
	x := uint64(fib) // Newton's iteration: each step doubles the correct low bits
	for range 6 {
		x *= 2 - fib*x
	}
	return x
}()

// keyAt returns the key whose hash (key × fib) is h: its home is the top bits of h at every
// table size, so keyAt(home<<58 | r) puts keys at a chosen home of a 64-slot table (and
// next to each other in larger ones). keyAt(h) is 0 only for h = 0.
func keyAt(h uint64) uint64 { return h * fibInv }

// tail returns a key whose home is in the last 1/64 of the table at every size, so that
// its probe run wraps around to slot 0.
func tail(r uint64) uint64 { return keyAt(63<<58 | r&(1<<58-1)) }

// check verifies the invariants of m against want: the count, every entry reachable from
// its home without crossing an empty slot, All yielding exactly want, and the load bound.
func check[V comparable](t *testing.T, m *Map[V], want map[uint64]V) {
	t.Helper()
	if m.Len() != len(want) {
		t.Fatalf("Len() = %d, want %d", m.Len(), len(want))
	}
	if len(m.slots) > 0 && 5*m.n > 4*len(m.slots) {
		t.Fatalf("load %d/%d above 0.8", m.n, len(m.slots))
	}
	mask := uint64(len(m.slots) - 1)
	n := 0
	for i, s := range m.slots {
		if s.key == 0 {
			var zero V
			if s.val != zero {
				t.Fatalf("empty slot %d holds a value", i)
			}
			continue
		}
		n++
		for j := m.home(s.key); j != uint64(i); j = (j + 1) & mask {
			if m.slots[j].key == 0 {
				t.Fatalf("key %#x in slot %d: empty slot %d on its probe run", s.key, i, j)
			}
		}
	}
	if n != m.n {
		t.Fatalf("%d occupied slots, n = %d", n, m.n)
	}
	got := maps.Collect(m.All())
	if !maps.Equal(got, want) {
		t.Fatalf("All() = %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := m.Get(k); !ok || g != v {
			t.Fatalf("Get(%#x) = %v, %v, want %v, true", k, g, ok, v)
		}
	}
}

func TestMap(t *testing.T) {
	type op struct {
		kind byte // 'p'ut, 'd'elete, 'g'et (expecting val, ok)
		key  uint64
		val  int
		ok   bool
	}
	// Keys with the same home, and runs wrapping from the last slot to the first.
	same := []uint64{keyAt(5 << 58), keyAt(5<<58 | 1), keyAt(5<<58 | 2), keyAt(5<<58 | 3)}
	wrap := []uint64{tail(1), tail(2), tail(3), tail(4)}
	tests := []struct {
		name string
		ops  []op
	}{
		{"empty", []op{{'g', 1, 0, false}, {'d', 1, 0, false}, {'g', 0, 0, false}, {'d', 0, 0, false}}},
		{"put get", []op{{'p', 1, 10, false}, {'g', 1, 10, true}, {'g', 2, 0, false}}},
		{"overwrite", []op{{'p', 7, 1, false}, {'p', 7, 2, false}, {'g', 7, 2, true}}},
		{"delete", []op{{'p', 7, 1, false}, {'d', 7, 0, false}, {'g', 7, 0, false}, {'d', 7, 0, false}}},
		{"get 0 on a filled map", []op{{'p', 1, 1, false}, {'p', 2, 2, false}, {'g', 0, 0, false}, {'d', 0, 0, false}}},
		{"max key", []op{{'p', ^uint64(0), 3, false}, {'g', ^uint64(0), 3, true}, {'d', ^uint64(0), 0, false}}},
		{"collisions, delete first", []op{
			{'p', same[0], 1, false}, {'p', same[1], 2, false}, {'p', same[2], 3, false},
			{'d', same[0], 0, false}, {'g', same[1], 2, true}, {'g', same[2], 3, true}, {'g', same[0], 0, false},
		}},
		{"collisions, delete middle", []op{
			{'p', same[0], 1, false}, {'p', same[1], 2, false}, {'p', same[2], 3, false}, {'p', same[3], 4, false},
			{'d', same[1], 0, false}, {'g', same[3], 4, true}, {'p', same[1], 5, false}, {'g', same[1], 5, true},
		}},
		{"wrap-around run", []op{
			{'p', wrap[0], 1, false}, {'p', wrap[1], 2, false}, {'p', wrap[2], 3, false}, {'p', wrap[3], 4, false},
			{'p', 12345, 9, false},
			{'d', wrap[0], 0, false}, {'g', wrap[3], 4, true}, {'d', wrap[2], 0, false}, {'g', wrap[3], 4, true},
			{'g', wrap[1], 2, true}, {'g', 12345, 9, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Map[int]
			want := map[uint64]int{}
			for i, o := range tt.ops {
				switch o.kind {
				case 'p':
					m.Put(o.key, o.val)
					want[o.key] = o.val
				case 'd':
					m.Delete(o.key)
					delete(want, o.key)
				case 'g':
					if v, ok := m.Get(o.key); v != o.val || ok != o.ok {
						t.Fatalf("op %d: Get(%#x) = %d, %v, want %d, %v", i, o.key, v, ok, o.val, o.ok)
					}
				}
				check(t, &m, want)
			}
		})
	}
}

func TestPutZeroPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Put(0) did not panic")
		}
	}()
	var m Map[int]
	m.Put(0, 1)
}

func TestAllStops(t *testing.T) {
	var m Map[string]
	for k := uint64(1); k <= 10; k++ {
		m.Put(k, "x")
	}
	n := 0
	for range m.All() {
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("iterated %d, want 3", n)
	}
}

// TestDeleteReleasesValues checks that a deleted pointer no longer sits in a slot.
func TestDeleteReleasesValues(t *testing.T) {
	var m Map[*int]
	for k := uint64(1); k <= 100; k++ {
		m.Put(k, new(int))
	}
	for k := uint64(1); k <= 100; k++ {
		m.Delete(k)
	}
	for i, s := range m.slots {
		if s.key != 0 || s.val != nil {
			t.Fatalf("slot %d not cleared", i)
		}
	}
}

// TestMapAgainstGoMap runs random puts, overwrites, gets and deletes against a Go map,
// with key sets small enough to collide a lot, clustered at the end of the table so that
// probe runs wrap around, and large enough to grow the table several times and drain it.
func TestMapAgainstGoMap(t *testing.T) {
	for _, c := range []struct {
		name string
		keys func(rng *rand.Rand, i int) uint64
		n    int
	}{
		{"dense", func(_ *rand.Rand, i int) uint64 { return uint64(i) + 1 }, 500},
		{"random", func(rng *rand.Rand, _ int) uint64 { return rng.Uint64() | 1 }, 3000},
		{"same home", func(_ *rand.Rand, i int) uint64 { return keyAt(17<<58 | uint64(i)) }, 40},
		{"wrap-around", func(rng *rand.Rand, _ int) uint64 { return tail(rng.Uint64()) }, 200},
		{"mixed", func(rng *rand.Rand, i int) uint64 {
			if i%2 == 0 {
				return tail(rng.Uint64())
			}
			return uint64(i)
		}, 1000},
	} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(c.n)))
			keys := make([]uint64, c.n)
			for i := range keys {
				keys[i] = c.keys(rng, i)
			}
			var m Map[int]
			want := map[uint64]int{}
			for round := range 4 {
				// Grow phase: mostly puts; drain phase: mostly deletes.
				for op := range 20 * c.n {
					k := keys[rng.IntN(len(keys))]
					r := rng.IntN(10)
					if round%2 == 1 {
						r = 9 - r
					}
					switch {
					case r < 5:
						m.Put(k, op)
						want[k] = op
					case r < 7:
						v, ok := m.Get(k)
						if w, wok := want[k]; v != w || ok != wok {
							t.Fatalf("round %d op %d: Get(%#x) = %d, %v, want %d, %v", round, op, k, v, ok, w, wok)
						}
					default:
						m.Delete(k)
						delete(want, k)
					}
					if op%97 == 0 {
						check(t, &m, want)
					}
				}
				check(t, &m, want)
			}
			for _, k := range slices.Collect(maps.Keys(want)) {
				m.Delete(k)
				delete(want, k)
			}
			check(t, &m, want)
		})
	}
}

// FuzzMap decodes operations from the input, 3 bytes each: an opcode byte (put, delete,
// get) and a 2-byte key selector that picks a small key, a key clustered at the end of the
// table, or one sharing a home with others; it compares every result with a Go map.
func FuzzMap(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 2, 1, 0, 1, 2, 0, 2})
	f.Add([]byte{0, 0x40, 1, 0, 0x40, 2, 0, 0x40, 3, 1, 0x40, 1, 2, 0x40, 3})
	f.Add([]byte{0, 0x80, 1, 0, 0x80, 2, 0, 0xc0, 1, 1, 0x80, 1, 2, 0x80, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Map[uint16]
		want := map[uint64]uint16{}
		for i := 0; i+3 <= len(data); i += 3 {
			sel := binary.LittleEndian.Uint16(data[i+1:])
			var k uint64
			switch sel >> 14 {
			case 0:
				k = uint64(sel & 0x3fff) // may be 0
			case 1:
				k = tail(uint64(sel&0xff) << 40)
			case 2:
				k = keyAt(3<<58 | uint64(sel&0xff))
			default:
				k = uint64(sel&0xff) << 56
			}
			switch data[i] % 3 {
			case 0:
				if k == 0 {
					continue
				}
				m.Put(k, uint16(i))
				want[k] = uint16(i)
			case 1:
				m.Delete(k)
				delete(want, k)
			default:
				v, ok := m.Get(k)
				if w, wok := want[k]; v != w || ok != wok {
					t.Fatalf("op %d: Get(%#x) = %d, %v, want %d, %v", i/3, k, v, ok, w, wok)
				}
			}
		}
		check(t, &m, want)
	})
}

// BenchmarkMap measures Get (hits, in a random order) and Put (overwrites) at 50,000 keys,
// against a Go map with the same keys.
func BenchmarkMap(b *testing.B) {
	const n = 50_000
	rng := rand.New(rand.NewPCG(3, 4))
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = rng.Uint64() | 1
	}
	order := make([]uint64, 1<<20)
	for i := range order {
		order[i] = keys[rng.IntN(n)]
	}
	var m Map[uint32]
	gm := make(map[uint64]uint32)
	for i, k := range keys {
		m.Put(k, uint32(i))
		gm[k] = uint32(i)
	}
	b.Run("Get", func(b *testing.B) {
		var sink uint32
		for i := range b.N {
			v, _ := m.Get(order[i&(len(order)-1)])
			sink += v
		}
		_ = sink
	})
	b.Run("Put", func(b *testing.B) {
		for i := range b.N {
			m.Put(order[i&(len(order)-1)], uint32(i))
		}
	})
	b.Run("GoMap/Get", func(b *testing.B) {
		var sink uint32
		for i := range b.N {
			sink += gm[order[i&(len(order)-1)]]
		}
		_ = sink
	})
	b.Run("GoMap/Put", func(b *testing.B) {
		for i := range b.N {
			gm[order[i&(len(order)-1)]] = uint32(i)
		}
	})
}

// TestKeyHelpers checks that keyAt and tail place keys where the tests above rely on.
func TestKeyHelpers(t *testing.T) {
	var m Map[int]
	m.Put(1, 1) // 64 slots
	if len(m.slots) != 64 {
		t.Fatalf("%d slots, want 64", len(m.slots))
	}
	for r := range uint64(100) {
		if h := m.home(tail(r * 0x1234567)); h != 63 {
			t.Fatalf("tail(%d) has home %d", r, h)
		}
		if h := m.home(keyAt(17<<58 | r)); h != 17 {
			t.Fatalf("keyAt(17<<58 | %d) has home %d", r, h)
		}
	}
}

// TestTouch: Touch reads home slots only — nothing of the zero Map, the key itself when it
// sits in its home slot — and changes nothing.
func TestTouch(t *testing.T) {
	var m Map[int]
	if got := m.Touch([]uint64{1, 2, 3}); got != 0 {
		t.Fatalf("Touch on the zero Map = %d, want 0", got)
	}
	m.Put(42, 7)
	if got := m.Touch([]uint64{42}); got != 42 {
		t.Fatalf("Touch of the only key = %d, want 42 (its home slot)", got)
	}
	if got := m.Touch([]uint64{42, 42, 42}); got != 3*42 {
		t.Fatalf("Touch of the only key thrice = %d, want %d", got, 3*42)
	}
	if v, ok := m.Get(42); !ok || v != 7 || m.Len() != 1 {
		t.Fatalf("after Touch: Get(42) = %d, %v; Len %d", v, ok, m.Len())
	}
}
