package encoding

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"
)

// putAll writes one of every kind of value.
func putAll(e *Encbuf) {
	e.PutByte(0xab)
	e.PutBE32(0x01020304)
	e.PutBE64(0x0102030405060708)
	e.PutBE64int64(-2)
	e.PutUvarint(300)
	e.PutVarint(-1)
	e.PutVarint(math.MinInt64)
	e.PutUvarint(math.MaxUint64)
	e.PutUvarintBytes([]byte("abc"))
	e.PutUvarintString("")
	e.PutUvarintString("héllo")
	e.PutBytes([]byte{9, 8})
	e.PutString("xy")
}

// wantAll is putAll's encoding, spelled out: big-endian fixed widths, encoding/binary
// varints.
var wantAll = []byte{
	0xab,
	1, 2, 3, 4,
	1, 2, 3, 4, 5, 6, 7, 8,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
	0xac, 0x02, // 300
	0x01,                                                       // zig-zag -1
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // zig-zag MinInt64
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // MaxUint64
	3, 'a', 'b', 'c',
	0,
	6, 'h', 0xc3, 0xa9, 'l', 'l', 'o',
	9, 8,
	'x', 'y',
}

// getAll reads what putAll wrote and reports mismatches.
func getAll(t *testing.T, d *Decbuf) {
	t.Helper()
	got := []any{d.Byte(), d.BE32(), d.BE64(), d.BE64int64(), d.Uvarint(), d.Varint(), d.Varint(),
		d.Uvarint(), string(d.UvarintBytes()), d.UvarintString(), d.UvarintString(), d.Bytes(2), string(d.Bytes(2))}
	want := []any{byte(0xab), uint32(0x01020304), uint64(0x0102030405060708), int64(-2), uint64(300), int64(-1),
		int64(math.MinInt64), uint64(math.MaxUint64), "abc", "", "héllo", []byte{9, 8}, "xy"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("decoded %v\nwant    %v", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	var e Encbuf
	putAll(&e)
	if !bytes.Equal(e.Get(), wantAll) {
		t.Fatalf("encoded %x\nwant    %x", e.Get(), wantAll)
	}
	if e.Len() != len(wantAll) {
		t.Errorf("Len %d", e.Len())
	}
	d := NewDecbuf(e.Get())
	getAll(t, &d)
	if err := d.Done(); err != nil {
		t.Fatal(err)
	}
	if d.Len() != 0 || d.Offset() != len(wantAll) {
		t.Errorf("Len %d Offset %d after reading everything", d.Len(), d.Offset())
	}

	// Reset keeps the buffer; an Encbuf over an existing slice appends to it.
	e.Reset()
	if e.Len() != 0 || cap(e.B) == 0 {
		t.Errorf("Reset: len %d cap %d", e.Len(), cap(e.B))
	}
	e = Encbuf{B: []byte("prefix")}
	e.PutByte('!')
	if string(e.Get()) != "prefix!" {
		t.Errorf("append to existing buffer: %q", e.Get())
	}
}

// TestTruncated: every prefix of a valid encoding fails at the read that runs out, with an
// error matching ErrCorrupt that names the offset; the failure sticks.
func TestTruncated(t *testing.T) {
	for n := range len(wantAll) {
		d := NewDecbuf(wantAll[:n])
		d.Byte()
		d.BE32()
		d.BE64()
		d.BE64int64()
		d.Uvarint()
		d.Varint()
		d.Varint()
		d.Uvarint()
		d.UvarintBytes()
		d.UvarintString()
		d.UvarintString()
		d.Bytes(2)
		d.Bytes(2)
		err := d.Err()
		if err == nil {
			t.Fatalf("%d of %d bytes decoded without error", n, len(wantAll))
		}
		var de *DecodeError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &de) {
			t.Fatalf("%d bytes: error %v (%T) does not match ErrCorrupt / DecodeError", n, err, err)
		}
		if de.Offset > n {
			t.Fatalf("%d bytes: failure offset %d beyond the input", n, de.Offset)
		}
		if d.Byte() != 0 || d.BE64() != 0 || d.Uvarint() != 0 || d.UvarintBytes() != nil || d.Len() != 0 {
			t.Fatalf("%d bytes: reads after a failure return values", n)
		}
		if d.Err() != err || d.Done() != err {
			t.Fatalf("%d bytes: the first failure did not stick", n)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	overflow := bytes.Repeat([]byte{0xff}, 10)
	overflow = append(overflow, 0x7f)
	for _, c := range []struct {
		name string
		in   []byte
		read func(d *Decbuf)
		msg  string
	}{
		{"uvarint overflow", overflow, func(d *Decbuf) { d.Uvarint() }, "uvarint overflows 64 bits at offset 0"},
		{"varint overflow", overflow, func(d *Decbuf) { d.Varint() }, "varint overflows 64 bits at offset 0"},
		{"uvarint past end", []byte{0x80}, func(d *Decbuf) { d.Uvarint() }, "uvarint runs past the end at offset 0"},
		{"be64 short", []byte{1, 2, 3}, func(d *Decbuf) { d.BE64() }, "8-byte value needs more than the 3 bytes left at offset 0"},
		{"be32 after byte", []byte{1, 2, 3}, func(d *Decbuf) { d.Byte(); d.BE32() }, "4-byte value needs more than the 2 bytes left at offset 1"},
		{"length too large", []byte{5, 'a'}, func(d *Decbuf) { d.UvarintBytes() }, "length 5 exceeds the 1 bytes left at offset 1"},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, func(d *Decbuf) { d.UvarintString() }, "length 18446744073709551615 exceeds the 0 bytes left at offset 10"},
		{"count", []byte{3, 1, 2, 3, 4, 5}, func(d *Decbuf) { d.Count(2) }, "count 3 too large for the 5 bytes left at offset 1"},
		{"negative field", []byte{1}, func(d *Decbuf) { d.Bytes(-1) }, "-1-byte value needs more than the 1 bytes left at offset 0"},
		{"trailing", []byte{1, 2}, func(d *Decbuf) { d.Byte(); d.Done() }, "1 trailing bytes at offset 1"},
		{"failf", []byte{7, 2}, func(d *Decbuf) { d.Failf("bad version %d", d.Byte()) }, "bad version 7 at offset 1"},
	} {
		d := NewDecbuf(c.in)
		c.read(&d)
		if err := d.Err(); err == nil || err.Error() != c.msg || !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error %v, want %q matching ErrCorrupt", c.name, err, c.msg)
		}
	}

	// Count accepts what fits; minSize below 1 counts as 1.
	d := NewDecbuf([]byte{2, 1, 2})
	if n := d.Count(0); n != 2 || d.Err() != nil {
		t.Errorf("Count: %d, %v", n, d.Err())
	}
	// Failf wraps with %w; a second failure does not replace the first.
	d = NewDecbuf(nil)
	d.Failf("reading: %w", io.ErrUnexpectedEOF)
	d.Failf("second")
	if !errors.Is(d.Err(), io.ErrUnexpectedEOF) || !errors.Is(d.Err(), ErrCorrupt) {
		t.Errorf("Failf: %v", d.Err())
	}
}

// TestCorruptSentinel: a package sentinel matches itself and ErrCorrupt, and nothing else.
func TestCorruptSentinel(t *testing.T) {
	errPkg := NewCorruptSentinel("pkg: corrupt value")
	other := NewCorruptSentinel("other: corrupt value")
	err := fmt.Errorf("pkg: read x: %w", errPkg)
	if !errors.Is(err, errPkg) || !errors.Is(err, ErrCorrupt) {
		t.Errorf("%v does not match its sentinel and ErrCorrupt", err)
	}
	if errors.Is(err, other) || errors.Is(err, io.EOF) {
		t.Errorf("%v matches another sentinel", err)
	}
	if errPkg.Error() != "pkg: corrupt value" {
		t.Errorf("sentinel text %q", errPkg.Error())
	}
	// The usual wrapping: package sentinel and the DecodeError.
	d := NewDecbuf(nil)
	d.Byte()
	err = fmt.Errorf("pkg: %w: %w", errPkg, d.Err())
	var de *DecodeError
	if !errors.Is(err, errPkg) || !errors.Is(err, ErrCorrupt) || !errors.As(err, &de) {
		t.Errorf("%v lost a match", err)
	}
	if errors.Is(io.EOF, ErrCorrupt) {
		t.Error("unrelated error matches ErrCorrupt")
	}
}

// TestAliasing: byte slices from a Decbuf alias its input but cannot be appended into the
// rest of it.
func TestAliasing(t *testing.T) {
	in := []byte{2, 'a', 'b', 'c', 'd'}
	d := NewDecbuf(in)
	b := d.UvarintBytes()
	_ = append(b, 'X')
	if in[3] != 'c' {
		t.Error("appending to a returned slice overwrote the input")
	}
	in[1] = 'z'
	if b[0] != 'z' {
		t.Error("returned slice does not alias the input")
	}
	if string(d.Get()) != "cd" {
		t.Errorf("Get: %q", d.Get())
	}
}

func FuzzDecbuf(f *testing.F) {
	f.Add(wantAll)
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := NewDecbuf(in)
		for i := 0; d.Err() == nil && i < 100; i++ {
			switch i % 7 {
			case 0:
				d.Uvarint()
			case 1:
				d.Varint()
			case 2:
				d.UvarintBytes()
			case 3:
				d.BE32()
			case 4:
				d.Count(3)
			case 5:
				d.Byte()
			case 6:
				d.BE64()
			}
		}
		if d.Err() != nil && !errors.Is(d.Err(), ErrCorrupt) {
			t.Fatalf("error %v does not match ErrCorrupt", d.Err())
		}
		if d.Len() > len(in) || d.Offset() < 0 {
			t.Fatalf("Len %d Offset %d", d.Len(), d.Offset())
		}
	})
}

func BenchmarkDecbuf(b *testing.B) {
	var e Encbuf
	for i := range 1000 {
		e.PutVarint(int64(i * 1_000_003))
		e.PutBytes([]byte("US0378331005"))
		e.PutUvarint(uint64(i))
	}
	b.SetBytes(int64(e.Len()))
	for b.Loop() {
		d := NewDecbuf(e.Get())
		for d.Len() > 0 {
			d.Varint()
			d.Bytes(12)
			d.Uvarint()
		}
		if d.Err() != nil {
			b.Fatal(d.Err())
		}
	}
}
