package feed

import (
	"strconv"
	"unicode/utf8"
)

// EscapeControl makes s safe to print on a terminal (table output) or in a CSV cell (SPEC
// §14: partner strings never reach a terminal unescaped). It replaces
//   - every byte that is not part of valid UTF-8 with \xNN,
//   - every control character (C0, DEL, C1: ESC, NUL, CR, LF, tab, the CSI U+009B, …) with
//     \xNN,
//   - the Unicode bidirectional formatting characters (U+061C, U+200E, U+200F,
//     U+202A–U+202E, U+2066–U+2069), which reorder how a line is displayed, with \uNNNN,
//
// and leaves everything else, backslashes included, as it is. A string with nothing to
// escape is returned as is, without allocating. Descriptions decoded by this package are
// already free of control characters (see CleanDescription); EscapeControl is the output
// side's guard for any string, whatever its source.
func EscapeControl(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r, size) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	const hex = "0123456789abcdef"
	out := make([]byte, 0, len(s)+16)
	out = append(out, s[:i]...)
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			c := s[i]
			out = append(out, '\\', 'x', hex[c>>4], hex[c&0xf])
		case isControl(r):
			out = append(out, '\\', 'x', hex[r>>4], hex[r&0xf])
		case isBidi(r):
			out = append(out, `\u`...)
			h := strconv.FormatInt(int64(r), 16)
			for k := len(h); k < 4; k++ {
				out = append(out, '0')
			}
			out = append(out, h...)
		default:
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	return string(out)
}

func needsEscape(r rune, size int) bool {
	return (r == utf8.RuneError && size == 1) || isControl(r) || isBidi(r)
}

// isBidi reports whether r is a bidirectional formatting character.
func isBidi(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}
