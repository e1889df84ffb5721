package feed

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscapeControl(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "",
		"Alpha AG":                     "Alpha AG",
		`Beta "Inc" & <Co> \ ü 😀`:      `Beta "Inc" & <Co> \\ ü 😀`,
		"\x1b[2Jclear":                 `\x1b[2Jclear`,
		"\x1b]0;pwned\x07title":        `\x1b]0;pwned\atitle`,
		"nul\x00byte":                  `nul\x00byte`,
		"line\nbreak\r\ttab":           `line\nbreak\r\ttab`,
		"del\x7f":                      `del\x7f`,
		"c1 csi \u009b2J":              `c1 csi \u009b2J`,
		"bad \xff\xfe utf8":            `bad \xff\xfe utf8`,
		"rtl \u202eevil\u202c":         `rtl \u202eevil\u202c`,
		"isolate \u2066x\u2069 \u200f": `isolate \u2066x\u2069 \u200f`,
	} {
		if got := EscapeControl(in); got != want {
			t.Errorf("EscapeControl(%q) = %q, want %q", in, got, want)
		}
	}
	clean := "elementum eos accumsan"
	if n := testing.AllocsPerRun(100, func() { _ = EscapeControl(clean) }); n != 0 {
		t.Errorf("%v allocations for a clean string", n)
	}
}

func TestCleanDescription(t *testing.T) {
	for in, want := range map[string]string{
		"plain":            "plain",
		"a\x00b":           "a\ufffdb",
		"\x1b[2J":          "\ufffd[2J",
		"tab\tnl\n":        "tab\ufffdnl\ufffd",
		"c1\u0085\u009b":   "c1\ufffd\ufffd",
		"del\x7f":          "del\ufffd",
		"bad\xff":          "bad\ufffd",
		"ok ü \u202e bidi": "ok ü \u202e bidi", // not a control character: left to EscapeControl
	} {
		if got := CleanDescription([]byte(in)); got != want {
			t.Errorf("CleanDescription(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDecodeControlCharacters: NUL, escape sequences and other control characters in a
// description, raw or JSON-escaped, on either decoding path, come out replaced by U+FFFD.
func TestDecodeControlCharacters(t *testing.T) {
	for _, frame := range []string{
		`{"type":"ADD","data":{"isin":"LS342I184454","description":"a\u0000b\u001b[2J\u009b"}}`,
		"{\"type\":\"ADD\",\"data\":{\"isin\":\"LS342I184454\",\"description\":\"a\x00b\x1b[2J\u009b\"}}",
		"{\"type\":\"ADD\", \"data\":{\"isin\":\"LS342I184454\",\"description\":\"a\x00b\x1b[2J\u009b\"}}",
	} {
		var d Decoder
		var m Message
		if err := d.Decode([]byte(frame), &m); err != nil {
			t.Fatalf("Decode(%q): %v", frame, err)
		}
		if m.Description != "a\ufffdb\ufffd[2J\ufffd" {
			t.Errorf("Decode(%q): description %q", frame, m.Description)
		}
	}
	// The fast path takes DEL and C1 (no escapes, no C0): the same rule applies.
	var m Message
	if !decodeFrameFast([]byte("{\"type\":\"ADD\",\"data\":{\"isin\":\"LS342I184454\",\"description\":\"x\x7f\u0085\"}}"), &m) ||
		m.Description != "x\ufffd\ufffd" {
		t.Errorf("fast path: %q", m.Description)
	}
}

func FuzzEscapeControl(f *testing.F) {
	for _, s := range []string{"", "abc", "\x1b[2J", "\xff", "\u202e", "\u009b", "a\x00b", "ü😀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := EscapeControl(s)
		if !utf8.ValidString(out) {
			t.Fatalf("EscapeControl(%q) = %q: invalid UTF-8", s, out)
		}
		for _, r := range out {
			if isControl(r) || isLayoutControl(r) {
				t.Fatalf("EscapeControl(%q) = %q contains %U", s, out, r)
			}
		}
		// Clean text stays as it is, unless it holds what EscapeText escapes although a
		// stored description may keep it: bidi controls and the line and paragraph
		// separators U+2028, U+2029 (testdata/fuzz/FuzzEscapeControl/ed6bcbd4eb0921f4).
		if !strings.ContainsAny(s, "\\") && isClean([]byte(s)) && !strings.ContainsFunc(s, isLayoutControl) && out != s {
			t.Fatalf("clean %q changed to %q", s, out)
		}
		if c := CleanDescription([]byte(s)); !isClean([]byte(c)) {
			t.Fatalf("CleanDescription(%q) = %q is not clean", s, c)
		}
	})
}
