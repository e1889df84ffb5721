package feed

import "testing"

// TestParseISINBytesMatchesParseISIN: the table-driven parser accepts exactly the ISINs of
// 12 × [0-9A-Z] (isISIN, a test per character) — every byte value at every position of a
// valid ISIN, and wrong lengths —, and ParseISIN and ParseISINBytes agree.
func TestParseISINBytesMatchesParseISIN(t *testing.T) {
	base := []byte("US0378331005")
	for pos := range ISINLen {
		for c := range 256 {
			b := append([]byte(nil), base...)
			b[pos] = byte(c)
			got, gotOK := ParseISINBytes(b)
			fromString, stringOK := ParseISIN(string(b))
			if gotOK != isISIN(b) || gotOK && string(got[:]) != string(b) {
				t.Fatalf("%q: ParseISINBytes = %q, %v", b, got[:], gotOK)
			}
			if stringOK != gotOK || fromString != got {
				t.Fatalf("%q: ParseISIN = %q, %v; ParseISINBytes = %q, %v", b, fromString[:], stringOK, got[:], gotOK)
			}
		}
	}
	for _, s := range []string{"", "US037833100", "US03783310055"} {
		if _, ok := ParseISINBytes([]byte(s)); ok {
			t.Errorf("ParseISINBytes(%q) accepted a wrong length", s)
		}
	}
}

// isISIN is the definition: 12 characters of 0-9 or A-Z.
func isISIN(b []byte) bool {
	if len(b) != ISINLen {
		return false
	}
	for _, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
