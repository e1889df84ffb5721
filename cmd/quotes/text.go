package main

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// escapeText makes a partner-supplied string safe for a terminal: control characters
// (C0, DEL, C1 — ESC of escape sequences, NUL, …) and invalid UTF-8 are written as Go
// escapes (\x1b, \u009b), a backslash as \\; printable text, spaces and non-ASCII
// letters stay as they are. A string longer than max runes (max > 0) is cut, ending in "…".
func escapeText(s string, max int) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || r == '\\' || unicode.IsControl(r) {
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
		case unicode.IsControl(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b' or '\u009b'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		runes++
		i += n
	}
	return b.String()
}
