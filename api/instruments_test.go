package api

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
)

// pageRow is an InstrumentRow as a client decodes it, with the numbers as their JSON text.
type pageRow struct {
	ISIN           string          `json:"isin"`
	Description    string          `json:"description"`
	Price          json.RawMessage `json:"price"`
	ReferencePrice json.RawMessage `json:"referencePrice"`
	ChangePercent  json.RawMessage `json:"changePercent"`
}

func getPage(t *testing.T, url string) ([]pageRow, string) {
	t.Helper()
	resp := get(t, url)
	b := readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	var rows []pageRow
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
	return rows, resp.Header.Get(HeaderTotalCount)
}

func isins(rows []pageRow) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.ISIN)
	}
	return out
}

func TestInstrumentsPaged(t *testing.T) {
	srv, _ := newScenarioServer(t)
	cases := []struct {
		query string
		want  []string
		total string
	}{
		{"limit=10", []string{isinA, isinB}, "2"},
		{"limit=1", []string{isinA}, "2"},
		{"limit=1&offset=1", []string{isinB}, "2"},
		{"offset=2", []string{}, "2"},
		{"offset=99", []string{}, "2"},
		{"q=alpha0", []string{isinA}, "1"},              // ISIN, case-insensitively
		{"q=%22inc%22+%26+%3Cco", []string{isinB}, "1"}, // description, case-insensitively: `"Inc" & <Co`
		{"q=+ag+", []string{isinA}, "1"},                // trimmed
		{"q=delta", []string{}, "0"},                    // deleted
		{"q=", []string{isinA, isinB}, "2"},
		{"sort=-isin", []string{isinB, isinA}, "2"},
		{"sort=description", []string{isinA, isinB}, "2"},
		{"sort=-description", []string{isinB, isinA}, "2"},
		{"sort=price", []string{isinA, isinB}, "2"},  // without a price: last
		{"sort=-price", []string{isinA, isinB}, "2"}, // also descending
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			rows, total := getPage(t, srv.URL+"/instruments?"+c.query)
			if got := isins(rows); !slices.Equal(got, c.want) || total != c.total {
				t.Errorf("got %v total %s, want %v total %s", got, total, c.want, c.total)
			}
		})
	}

	// The change over the hot window: the scenario's current minute is 13:07, so the
	// reference is the open of minute 13:02 (100.125, the quote at 13:02:10), the price
	// the latest quote (116).
	rows, _ := getPage(t, srv.URL+"/instruments?limit=2")
	a, b := rows[0], rows[1]
	want := hot.Change(116_000000, 100_125000).String()
	if string(a.Price) != "116" || string(a.ReferencePrice) != "100.125" || string(a.ChangePercent) != want {
		t.Errorf("%s: price %s reference %s change %s, want 116 100.125 %s", a.ISIN, a.Price, a.ReferencePrice, a.ChangePercent, want)
	}
	if string(b.Price) != "null" || string(b.ReferencePrice) != "null" || string(b.ChangePercent) != "null" {
		t.Errorf("%s without quotes: price %s reference %s change %s, want null", b.ISIN, b.Price, b.ReferencePrice, b.ChangePercent)
	}
	if a.Description != "Alpha AG" || b.Description != `Beta "Inc" & <Co>` {
		t.Errorf("descriptions %q %q", a.Description, b.Description)
	}
}

func TestInstrumentsPagedErrors(t *testing.T) {
	srv, _ := newScenarioServer(t)
	for query, msg := range map[string]string{
		"limit=0":                           "parameter limit",
		"limit=1001":                        "parameter limit",
		"limit=ten":                         "parameter limit",
		"offset=-1":                         "parameter offset",
		"offset=x":                          "parameter offset",
		"sort=change":                       "parameter sort",
		"sort=":                             "parameter sort",
		"q=" + strings.Repeat("x", 101):     "parameter q",
		"limit=5&sort=isin&q=a&offset=nope": "parameter offset",
	} {
		resp := get(t, srv.URL+"/instruments?"+query)
		b := readBody(t, resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `{"error":"`+msg) {
			t.Errorf("%s: %d %s, want 400 naming %s", query, resp.StatusCode, b, msg)
		}
	}
}

func TestSelectPage(t *testing.T) {
	price := func(p feed.Price) *feed.Price { return &p }
	all := []Instrument{ // sorted by ISIN, as a Backend answers
		{ISIN: "AA0000000001", Description: "zeta", Price: price(5)},
		{ISIN: "AA0000000002", Description: "Beta", Price: nil},
		{ISIN: "AA0000000003", Description: "alpha", Price: price(7)},
		{ISIN: "AA0000000004", Description: "beta", Price: price(5)},
		{ISIN: "AA0000000005", Description: "Ärger", Price: price(1)},
	}
	cases := []struct {
		sort, q string
		want    string // last digits of the ISINs
	}{
		{"isin", "", "12345"},
		{"-isin", "", "54321"},
		{"description", "", "32415"},  // alpha, Beta, beta (ties by ISIN), zeta, Ärger (by bytes)
		{"-description", "", "51243"}, // ties still by ISIN
		{"price", "", "51432"},        // 1, 5 (ISIN 1), 5 (ISIN 4), 7, null
		{"-price", "", "31452"},       // 7, 5, 5, 1, null
		{"isin", "BETA", "24"},
		{"isin", "ärger", "5"},
		{"isin", "0000000003", "3"},
		{"price", "a", "51432"}, // every ISIN starts with AA
	}
	for _, c := range cases {
		ins := slices.Clone(all)
		key, desc := strings.CutPrefix(c.sort, "-")
		pq := pageQuery{limit: 100, sort: instrumentSort{key: key, desc: desc}}
		if c.q != "" {
			pq.q, pq.qFold = strings.ToUpper(c.q), c.q
		}
		page, total := selectPage(ins, pq)
		var got strings.Builder
		for _, in := range page {
			got.WriteByte(in.ISIN[11])
		}
		if got.String() != c.want || total != len(c.want) {
			t.Errorf("sort %s q %q: %s (total %d), want %s", c.sort, c.q, got.String(), total, c.want)
		}
	}
}

func TestWebAssets(t *testing.T) {
	srv, _ := newScenarioServer(t)
	resp := get(t, srv.URL+"/")
	page := string(readBody(t, resp))
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") ||
		!strings.Contains(page, "<title>quotes</title>") {
		t.Fatalf("GET /: %d %q CSP %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"), page)
	}
	// Everything the page references is served, with a content type and an ETag.
	refs := regexp.MustCompile(`(?:src|href)="(/web/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) != 3 {
		t.Fatalf("index.html references %v, want the stylesheet, the chart library and app.js", refs)
	}
	for _, m := range refs {
		resp := get(t, srv.URL+m[1])
		body := readBody(t, resp)
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || len(body) == 0 || etag == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d, %d bytes, ETag %q", m[1], resp.StatusCode, len(body), etag)
		}
		ct := resp.Header.Get("Content-Type")
		if strings.HasSuffix(m[1], ".js") && !strings.Contains(ct, "javascript") || strings.HasSuffix(m[1], ".css") && !strings.HasPrefix(ct, "text/css") {
			t.Errorf("GET %s: Content-Type %q", m[1], ct)
		}
		resp = get(t, srv.URL+m[1], "If-None-Match", etag)
		readBody(t, resp)
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", m[1], resp.StatusCode)
		}
	}
	for path, status := range map[string]int{
		"/web/vendor/LICENSE-lightweight-charts": 200,
		"/web/vendor/LICENSE-fancy-canvas":       200,
		"/web/nope.js":                           404,
		"/web/":                                  404,
		"/index.html":                            404,
	} {
		resp := get(t, srv.URL+path)
		readBody(t, resp)
		if resp.StatusCode != status {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, status)
		}
	}
	resp = do(t, http.MethodPost, srv.URL+"/")
	if b := readBody(t, resp); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d %s", resp.StatusCode, b)
	}
}
