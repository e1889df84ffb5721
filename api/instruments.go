package api

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
)

// Paging of GET /instruments (the web page's list; see instrumentsPage).
const (
	// DefaultPageLimit is the page size of a paged GET /instruments without ?limit.
	DefaultPageLimit = 100
	// MaxPageLimit bounds ?limit of GET /instruments.
	MaxPageLimit = 1000
	// MaxSearchLen bounds ?q of GET /instruments, in bytes.
	MaxSearchLen = 100
	// HeaderTotalCount is the response header of a paged GET /instruments that carries the
	// number of instruments matching ?q (all pages).
	HeaderTotalCount = "X-Total-Count"
	// referenceQueries bounds the candles queries of one page that run at once.
	referenceQueries = 8
)

// InstrumentRow is one element of a paged GET /instruments: the Instrument and its change
// over the hot window.
type InstrumentRow struct {
	Instrument
	// ReferencePrice is the price the change is measured against: the price at the start of
	// the minute Options.HotWindow before the current one (the open of that minute's
	// candle; gaps carry the previous close), or, for an instrument quoted for a shorter
	// time, its first quote. Null without a quote.
	ReferencePrice *feed.Price `json:"referencePrice"`
	// ChangePercent is (price − referencePrice) / referencePrice × 100, exact to six
	// decimals like a hot event's. Null without a quote.
	ChangePercent *hot.Percent `json:"changePercent"`
}

// instrumentSort is a validated ?sort= of GET /instruments.
type instrumentSort struct {
	key  string // isin, description or price
	desc bool
}

// pageQuery is a validated paged GET /instruments request.
type pageQuery struct {
	q             string // upper-cased for the ISIN match
	qFold         string // as given, matched case-insensitively against descriptions
	limit, offset int
	sort          instrumentSort
}

// isPaged reports whether a GET /instruments asks for a page (any of limit, offset, q,
// sort); without them it answers the full array of SPEC §6 as before.
func isPaged(q url.Values) bool {
	return q.Has("limit") || q.Has("offset") || q.Has("q") || q.Has("sort")
}

// parsePageQuery validates the paging parameters.
func parsePageQuery(q url.Values) (pageQuery, error) {
	pq := pageQuery{limit: DefaultPageLimit, sort: instrumentSort{key: "isin"}}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxPageLimit {
			return pq, fmt.Errorf("parameter limit %q: want an integer from 1 to %d", q.Get("limit"), MaxPageLimit)
		}
		pq.limit = n
	}
	if q.Has("offset") {
		n, err := strconv.Atoi(q.Get("offset"))
		if err != nil || n < 0 {
			return pq, fmt.Errorf("parameter offset %q: want a non-negative integer", q.Get("offset"))
		}
		pq.offset = n
	}
	if s := strings.TrimSpace(q.Get("q")); s != "" {
		if len(s) > MaxSearchLen {
			return pq, fmt.Errorf("parameter q: longer than %d bytes", MaxSearchLen)
		}
		pq.q, pq.qFold = strings.ToUpper(s), s
	}
	if q.Has("sort") {
		s := q.Get("sort")
		key, desc := strings.CutPrefix(s, "-")
		switch key {
		case "isin", "description", "price":
		default:
			return pq, fmt.Errorf("parameter sort %q: want isin, description or price, with - before it for descending", s)
		}
		pq.sort = instrumentSort{key: key, desc: desc}
	}
	return pq, nil
}

// instrumentsPage serves a paged GET /instruments:
//
//	GET /instruments?q=TEXT&sort=[-]isin|description|price&limit=N&offset=N
//
// q keeps the instruments whose ISIN or description contains TEXT, case-insensitively; sort
// orders them (default isin; instruments without a price sort after those with one, ties
// by ISIN); offset and limit (default DefaultPageLimit, at most MaxPageLimit) select the
// page. The answer is a JSON array of InstrumentRow (an Instrument plus referencePrice and
// changePercent) and the header X-Total-Count, the number of matches over all pages.
func (h *handler) instrumentsPage(w http.ResponseWriter, r *http.Request) {
	pq, err := parsePageQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ins, err := h.opts.Backend.Instruments(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	page, total := selectPage(slices.Clone(ins), pq) // the Backend's slice stays as it was
	rows := make([]InstrumentRow, len(page))
	errs := make([]error, len(page))
	// The reference prices are one candles query per row: a few at a time, for backends
	// where a query is a round trip (ClickHouse, Client).
	sem := make(chan struct{}, referenceQueries)
	var wg sync.WaitGroup
	for i := range page {
		rows[i].Instrument = page[i]
		if page[i].Price == nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ref, ok, err := h.referencePrice(r, page[i].ISIN)
			if ok {
				ch := hot.Change(*page[i].Price, ref)
				rows[i].ReferencePrice, rows[i].ChangePercent = &ref, &ch
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		h.fail(w, r, err)
		return
	}
	b, err := json.Marshal(rows)
	if err != nil {
		h.fail(w, r, fmt.Errorf("encode instruments: %w", err))
		return
	}
	w.Header().Set(HeaderTotalCount, strconv.Itoa(total))
	writeJSON(w, http.StatusOK, append(b, '\n'))
}

// selectPage filters, sorts and pages ins (sorted by ISIN, as Backend returns them) for
// pq; it returns the page and the number of matches. It reorders ins.
func selectPage(ins []Instrument, pq pageQuery) ([]Instrument, int) {
	if pq.q != "" {
		n := 0
		for i := range ins {
			if strings.Contains(ins[i].ISIN, pq.q) || containsFold(ins[i].Description, pq.qFold) {
				ins[n] = ins[i]
				n++
			}
		}
		ins = ins[:n]
	}
	sortInstruments(ins, pq.sort)
	total := len(ins)
	if pq.offset >= total {
		return nil, total
	}
	ins = ins[pq.offset:]
	if len(ins) > pq.limit {
		ins = ins[:pq.limit]
	}
	return ins, total
}

// sortInstruments sorts ins by s; ties (and instruments without a price, which come last in
// either direction) by ISIN, ascending.
func sortInstruments(ins []Instrument, s instrumentSort) {
	sign := 1
	if s.desc {
		sign = -1
	}
	switch s.key {
	case "isin":
		if s.desc {
			slices.Reverse(ins) // Backend answers sorted by ISIN
		}
	case "description":
		type keyed struct {
			key string
			in  Instrument
		}
		ks := make([]keyed, len(ins))
		for i := range ins {
			ks[i] = keyed{strings.ToLower(ins[i].Description), ins[i]}
		}
		slices.SortFunc(ks, func(a, b keyed) int {
			if c := cmp.Compare(a.key, b.key); c != 0 {
				return sign * c
			}
			return cmp.Compare(a.in.ISIN, b.in.ISIN)
		})
		for i := range ks {
			ins[i] = ks[i].in
		}
	case "price":
		slices.SortFunc(ins, func(a, b Instrument) int {
			switch {
			case a.Price == nil && b.Price == nil:
			case a.Price == nil:
				return 1
			case b.Price == nil:
				return -1
			default:
				if c := cmp.Compare(*a.Price, *b.Price); c != 0 {
					return sign * c
				}
			}
			return cmp.Compare(a.ISIN, b.ISIN)
		})
	}
}

// containsFold reports whether s contains sub under Unicode simple case folding, compared
// window by window (a fold that changes the byte length, rare outside ASCII, is missed).
func containsFold(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if strings.EqualFold(s[i:i+n], sub) {
			return true
		}
	}
	return false
}

// referencePrice returns the price the change of isin is measured against (see
// InstrumentRow.ReferencePrice), and false when it has no candle (no quote, or deleted
// since the list was read).
func (h *handler) referencePrice(r *http.Request, isin string) (feed.Price, bool, error) {
	id, ok := feed.ParseISIN(isin)
	if !ok {
		return 0, false, nil
	}
	minutes := int((h.opts.HotWindow + time.Minute - 1) / time.Minute)
	cs, err := h.opts.Backend.Candles(r.Context(), id, pipeline.CandleRange{Last: minutes + 1})
	if errors.Is(err, pipeline.ErrUnknownInstrument) || err == nil && len(cs) == 0 {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reference price of %s: %w", isin, err)
	}
	return cs[0].OpenPrice, true, nil
}
