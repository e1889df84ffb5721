package api

import (
	"strconv"
	"unicode/utf8"
)

// maxQuoted is the most bytes of a request's input that an error message repeats.
const maxQuoted = 64

// quoteInput quotes s for an error message (SPEC §14: error bodies quote at most a short
// prefix of the offending input): strconv.Quote of at most its first maxQuoted bytes (cut at
// a rune boundary), followed by "…(N bytes)" when it was longer. The quoting escapes control
// characters, so the message is safe to print anywhere.
func quoteInput(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > maxQuoted-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// clipInput is quoteInput for input usually shown bare (a method, a path): short printable
// ASCII stays as it is, anything else is quoted and clipped.
func clipInput(s string) string {
	if len(s) > maxQuoted {
		return quoteInput(s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return quoteInput(s)
		}
	}
	return s
}
