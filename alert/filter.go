package alert

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
)

// Filter selects the hot events a sink delivers. The zero Filter selects every event.
type Filter struct {
	// MinChange delivers only events whose move exceeds this percentage (exactly, like the
	// hot threshold: |price − reference| × 100 > MinChange × reference). The zero value, or
	// the hot threshold itself, selects every event.
	MinChange hot.Threshold
	// ISINs, if not empty, is the allow-list: events of other ISINs are not delivered.
	ISINs map[feed.ISIN]struct{}
}

// NewFilter returns a filter for minChange (zero: every event) and an allow-list (empty:
// every ISIN).
func NewFilter(minChange hot.Threshold, isins []feed.ISIN) Filter {
	f := Filter{MinChange: minChange}
	if len(isins) > 0 {
		f.ISINs = make(map[feed.ISIN]struct{}, len(isins))
		for _, i := range isins {
			f.ISINs[i] = struct{}{}
		}
	}
	return f
}

// Match reports whether the filter selects e.
func (f Filter) Match(e *hot.Event) bool {
	if len(f.ISINs) > 0 {
		if _, ok := f.ISINs[e.ISIN]; !ok {
			return false
		}
	}
	return f.MinChange.Exceeds(e.Price, e.ReferencePrice)
}

// ErrISINList is wrapped by the errors of ParseISINList and ReadISINFile.
var ErrISINList = errors.New("invalid ISIN list")

// ParseISINList reads an ISIN allow-list: one ISIN per line; blank lines and everything
// from a '#' to the end of its line are ignored. A malformed ISIN is an error naming its
// line, and so is a list without any ISIN (it would deliver nothing).
func ParseISINList(r io.Reader) ([]feed.ISIN, error) {
	var out []feed.ISIN
	seen := map[feed.ISIN]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		isin, ok := feed.ParseISIN(line)
		if !ok {
			return nil, fmt.Errorf("%w: line %d: %q is not an ISIN (12 characters A-Z, 0-9)", ErrISINList, n, line)
		}
		if !seen[isin] {
			seen[isin] = true
			out = append(out, isin)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: read: %w", ErrISINList, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no ISIN in it (an empty allow-list would deliver nothing)", ErrISINList)
	}
	return out, nil
}

// ReadISINFile reads the ISIN allow-list file path (see ParseISINList).
func ReadISINFile(path string) ([]feed.ISIN, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("alert: open ISIN list: %w", err)
	}
	defer f.Close()
	isins, err := ParseISINList(f)
	if err != nil {
		return nil, fmt.Errorf("alert: %s: %w", path, err)
	}
	return isins, nil
}
