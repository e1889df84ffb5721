package feed

import (
	"time"
	"unicode/utf8"
)

// AppendJSON appends m in the partner's wire form (SPEC §2), without a timestamp:
//
//	{"type":"QUOTE","data":{"isin":"LS342I184454","price":1365.25}}
func AppendJSON(b []byte, m *Message) []byte {
	b = append(b, `{"type":"`...)
	return appendBody(b, m)
}

// AppendRecordingLine appends m as one recorded line (SPEC §3), with its arrival time and a
// trailing newline:
//
//	{"ts":"2026-11-26T13:00:01.5Z","type":"QUOTE","data":{"isin":"DJ40J281M584","price":11}}
func AppendRecordingLine(b []byte, m *Message) []byte {
	b = append(b, `{"ts":"`...)
	b = time.Unix(0, m.TS).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":"`...)
	b = appendBody(b, m)
	return append(b, '\n')
}

func appendBody(b []byte, m *Message) []byte {
	b = append(b, m.Kind.String()...)
	b = append(b, `","data":{"isin":"`...)
	b = append(b, m.ISIN[:]...)
	if m.Kind == KindQuote {
		b = append(b, `","price":`...)
		b = m.Price.AppendText(b)
	} else {
		b = append(b, `","description":`...)
		b = AppendJSONString(b, m.Description)
	}
	return append(b, "}}"...)
}

// AppendJSONString appends s as a JSON string literal, escaping what JSON requires.
// Invalid UTF-8 is replaced by U+FFFD.
func AppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
