package main

import "github.com/quotesdev/quotes/feed"

// escapeText is feed.EscapeText: partner strings never reach a terminal unescaped (SPEC
// §14; the rule is documented there).
func escapeText(s string, max int) string { return feed.EscapeText(s, max) }
