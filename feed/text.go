package feed

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// EscapeText makes a partner-supplied string safe for a terminal, in table and csv output
// and in messages (SPEC §5, §14). The rule, as Go's %q escapes without the quotes:
//
//   - a backslash is written \\, so that an escape in the output is never ambiguous;
//   - control characters — C0 (NUL, BEL, ESC that starts terminal escape and OSC
//     sequences, tab, newline, …), DEL and C1 (U+0080–U+009F) — are written \a \b \t \n
//     \v \f \r, \xHH or \u00HH (as strconv.QuoteRuneToASCII does);
//   - the characters that change how the rest of a line is displayed — the bidirectional
//     formatting characters U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069 and the
//     line and paragraph separators U+2028, U+2029 — are written \uHHHH;
//   - a byte that is not part of valid UTF-8 is written \xHH;
//   - everything else (printable text, spaces, accents, other scripts, U+FFFD) stays as it is.
//
// A string longer than max runes (max > 0) is cut, ending in "…". Descriptions are already
// cleaned of control characters when they are decoded (CleanDescription); this is the
// output side's guard, for any string from any source.
func EscapeText(s string, max int) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || r == '\\' || unicode.IsControl(r) || isLayoutControl(r) {
			clean = false
			break
		}
		i += n
	}
	if clean && (max <= 0 || utf8.RuneCountInString(s) <= max) {
		return s
	}
	var b strings.Builder
	runes := 0
	for i := 0; i < len(s); {
		if max > 0 && runes == max {
			b.WriteString("…")
			break
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i]), 16))
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsControl(r), isLayoutControl(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\u009b' or '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		runes++
		i += n
	}
	return b.String()
}

// EscapeControl is EscapeText without a length limit.
func EscapeControl(s string) string { return EscapeText(s, 0) }

// isLayoutControl reports whether r is a bidirectional formatting character or a line or
// paragraph separator: invisible, but it reorders or breaks what a terminal shows after it.
func isLayoutControl(r rune) bool {
	return isBidi(r) || r == 0x2028 || r == 0x2029
}

// isBidi reports whether r is a bidirectional formatting character.
func isBidi(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}
