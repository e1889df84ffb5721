package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/wal"
)

// webRecording is the golden recording of the browser test: 20 instruments quoting every
// 15 s on average for 35 minutes, two hot events (quotes generate --record … --instruments
// 20 --quote-interval 15s --duration 35m --speed max --seed 18 --churn 0).
const webRecording = "testdata/web.jsonl"

// bar is a candle as the page's chart series holds it (lightweight-charts' data()).
type bar struct {
	Time                   int64
	Open, High, Low, Close float64
}

// countBar is a quote count as the page's histogram series holds it.
type countBar struct {
	Time  int64
	Value float64
}

// expectedInstruments derives the list from the recording itself, independently of the
// pipeline: active ISIN → description and latest price (largest ts, then line order).
func expectedInstruments(msgs []feed.Message) map[string][2]string {
	type last struct {
		desc  string
		price feed.Price
		ts    int64
		ok    bool
	}
	m := map[string]*last{}
	for _, msg := range msgs {
		k := msg.ISIN.String()
		switch msg.Kind {
		case feed.KindAdd:
			m[k] = &last{desc: msg.Description}
		case feed.KindDelete:
			delete(m, k)
		case feed.KindQuote:
			if l := m[k]; l != nil && (!l.ok || msg.TS >= l.ts) {
				l.price, l.ts, l.ok = msg.Price, msg.TS, true
			}
		}
	}
	out := map[string][2]string{}
	for k, l := range m {
		p := "—"
		if l.ok {
			p = pagePrice(l.price)
		}
		out[k] = [2]string{l.desc, p}
	}
	return out
}

// pagePrice is fmtPrice of app.js: the exact decimal with at least two decimals.
func pagePrice(p feed.Price) string {
	s := p.String()
	dot := strings.IndexByte(s, '.')
	switch {
	case dot < 0:
		return s + ".00"
	case len(s)-dot == 2:
		return s + "0"
	}
	return s
}

// pageRows reads the rendered list: ISIN, description, price, change per row.
func pageRows(t *testing.T, ctx context.Context) [][]string {
	t.Helper()
	return eval[[][]string](t, ctx, `[...document.querySelectorAll('#rows tr')].map(tr => [...tr.cells].map(td => td.textContent))`)
}

// TestWebPage loads the page over a pipeline that replayed the golden recording and checks
// what a user sees: the list, search, the chart of a selected instrument against the API's
// candles, its live update and a hot alert injected into the pipeline, which opens its
// instrument when clicked. It writes a screenshot as a test artifact.
func TestWebPage(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("browser test, skipped in -short mode (not when CI is set)")
	}
	p := openPipeline(t, wal.SyncNone)
	msgs := replayRecording(t, p, webRecording)
	srv := httptest.NewServer(NewHandler(Options{Backend: PipelineBackend{P: p}, Logger: quietLogger()}))
	t.Cleanup(srv.Close)
	ctx := newBrowser(t, 1400, 900)
	t.Cleanup(func() { // runs before the browser stops
		if t.Failed() {
			path := artifactPath(t, t.Name()+"-failed.png")
			if err := screenshot(ctx, path); err == nil {
				t.Logf("screenshot of the failure: %s", path)
			}
		}
	})

	run(t, ctx,
		chromedp.Navigate(srv.URL+"/?poll=150"),
		waitJS(`window.quotesDebug && quotesDebug.listVersion >= 1 && quotesDebug.hotOpen && quotesDebug.chartVersion >= 1`),
	)

	// The list: every instrument of the recording, sorted by ISIN, with its latest price.
	want := expectedInstruments(msgs)
	rows := pageRows(t, ctx)
	if len(rows) != len(want) || len(want) != 20 {
		t.Fatalf("the list shows %d rows, want %d (the recording's active instruments)", len(rows), len(want))
	}
	var apiList []struct {
		ISIN          string
		ChangePercent *float64
	}
	getInto(t, srv.URL+"/instruments?limit=100", &apiList)
	for i, r := range rows {
		w, ok := want[r[0]]
		if !ok {
			t.Errorf("row %d: ISIN %s is not an active instrument of the recording", i, r[0])
			continue
		}
		if r[1] != w[0] || r[2] != w[1] {
			t.Errorf("row %s: description %q price %s, want %q %s", r[0], r[1], r[2], w[0], w[1])
		}
		if i > 0 && rows[i-1][0] >= r[0] {
			t.Errorf("rows not sorted by ISIN: %s before %s", rows[i-1][0], r[0])
		}
		if a := apiList[i]; a.ISIN != r[0] || a.ChangePercent == nil || r[3] != pageChange(*a.ChangePercent) {
			t.Errorf("row %s: change %q, want the API's %v", r[0], r[3], a.ChangePercent)
		}
	}

	// Search: a word of one description, and part of an ISIN, case-insensitively.
	word := strings.Fields(rows[3][1])[0]
	isinPart := strings.ToLower(rows[7][0][2:7])
	for _, q := range []string{word, isinPart} {
		run(t, ctx,
			clearSearch,
			chromedp.SendKeys(chromedp.CSS("#search"), q),
			waitJS(fmt.Sprintf(`quotesDebug.list.q === %q`, q)),
		)
		var match []string
		for isin, w := range want {
			if strings.Contains(strings.ToLower(isin), strings.ToLower(q)) || strings.Contains(strings.ToLower(w[0]), strings.ToLower(q)) {
				match = append(match, isin)
			}
		}
		slices.Sort(match)
		var got []string
		for _, r := range pageRows(t, ctx) {
			got = append(got, r[0])
		}
		if len(match) == 0 || len(match) == len(want) || !slices.Equal(got, match) {
			t.Errorf("search %q shows %v, want %v", q, got, match)
		}
	}
	run(t, ctx,
		clearSearch,
		chromedp.SendKeys(chromedp.CSS("#search"), " "), // an input event; trimmed to ""
		waitJS(`quotesDebug.list.q === "" && quotesDebug.list.total === 20`),
	)

	// Select an instrument: the chart holds exactly the API's last 30 minutes.
	sel := rows[5][0]
	run(t, ctx,
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#rows tr[data-isin=%q]`, sel))),
		waitJS(fmt.Sprintf(`quotesDebug.chartIsin === %q`, sel)),
	)
	var apiCandles []struct {
		OpenTimestamp                              time.Time
		OpenPrice, HighPrice, LowPrice, ClosePrice float64 // as the page parses them
		Quotes                                     uint64
	}
	getInto(t, srv.URL+"/instruments/"+sel+"/candles?last=30m", &apiCandles)
	bars, counts := chartData(t, ctx)
	if len(apiCandles) != 30 || len(bars) != len(apiCandles) || len(counts) != len(apiCandles) {
		t.Fatalf("chart of %s: %d candles, %d counts; the API has %d (want 30)", sel, len(bars), len(counts), len(apiCandles))
	}
	for i, c := range apiCandles {
		w := bar{c.OpenTimestamp.Unix(), c.OpenPrice, c.HighPrice, c.LowPrice, c.ClosePrice}
		if bars[i] != w || counts[i] != (countBar{w.Time, float64(c.Quotes)}) {
			t.Errorf("candle %d: page %+v count %+v, API %+v quotes %d", i, bars[i], counts[i], w, c.Quotes)
		}
	}

	// The range picker: one hour (all 35 minutes of the recording), and an older range.
	for _, c := range []struct{ js, query string }{
		{`pickRange('1h')`, "last=1h"},
		{`pickRange('custom', '2026-01-01T00:05', '2026-01-01T00:15')`, "from=2026-01-01T00:05:00Z&to=2026-01-01T00:15:00Z"},
	} {
		run(t, ctx,
			chromedp.Evaluate[chromedp.Void](pickRangeJS+`; quotesDebug.mark = quotesDebug.chartVersion; `+c.js),
			waitJS(`quotesDebug.chartVersion > quotesDebug.mark`),
		)
		getInto(t, srv.URL+"/instruments/"+sel+"/candles?"+c.query, &apiCandles)
		bars, _ := chartData(t, ctx)
		if len(bars) != len(apiCandles) || len(bars) == 0 || bars[0].Time != apiCandles[0].OpenTimestamp.Unix() ||
			bars[len(bars)-1].Close != apiCandles[len(apiCandles)-1].ClosePrice {
			t.Errorf("range %s: the chart has %d candles (%+v …), the API %d", c.query, len(bars), bars[:min(1, len(bars))], len(apiCandles))
		}
	}
	if len(apiCandles) != 10 {
		t.Errorf("from 00:05 to 00:15: %d candles, want 10", len(apiCandles))
	}
	run(t, ctx,
		chromedp.Evaluate[chromedp.Void](pickRangeJS+`; quotesDebug.mark = quotesDebug.chartVersion; pickRange('30m')`),
		waitJS(`quotesDebug.chartVersion > quotesDebug.mark`),
	)

	// Inject a quote that doubles the price in the next minute: the open minute moves, the
	// chart follows, and the hot event it triggers appears in the panel.
	var last feed.Message
	for _, m := range msgs {
		if m.Kind == feed.KindQuote && m.ISIN.String() == sel {
			last = m
		}
	}
	end := msgs[len(msgs)-1].TS
	ts := time.Unix(0, end).Truncate(time.Minute).Add(time.Minute + 5*time.Second)
	hotPrice := last.Price * 2
	appendMsgs(t, p, feed.Message{TS: ts.UnixNano(), Kind: feed.KindQuote, ISIN: last.ISIN, Price: hotPrice})
	evs, err := p.HotEvents(0, ts.UnixNano(), 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("injected hot quote: events %v, %v; want one", evs, err)
	}
	ev := evs[0]
	hp, _ := strconv.ParseFloat(hotPrice.String(), 64)
	run(t, ctx,
		waitJS(fmt.Sprintf(`document.querySelector('#alert-list li[data-id="%d"]') !== null`, ev.ID)),
		waitJS(fmt.Sprintf(`(b => b.length > 0 && b[b.length-1].time === %d && b[b.length-1].close === %v)(quotesDebug.candles())`, ts.Truncate(time.Minute).Unix(), hp)),
	)
	alertText := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#alert-list li[data-id="%d"]').textContent`, ev.ID))
	for _, s := range []string{sel, pagePrice(ev.Price), pagePrice(ev.ReferencePrice), pageChange(changeFloat(ev.ChangePercent))} {
		if !strings.Contains(alertText, s) {
			t.Errorf("alert %q does not show %q", alertText, s)
		}
	}
	shown := eval[int](t, ctx, `document.querySelectorAll('#alert-list li').length`)
	if shown != 3 { // the recording's two events (within the hour before the newest price) and this one
		t.Errorf("the panel shows %d alerts, want 3", shown)
	}

	// The alert stream resumes after a lost connection, with Last-Event-ID: an event
	// derived while the page was disconnected arrives once, after the reconnect.
	srv.CloseClientConnections()
	run(t, ctx, waitJS(`quotesDebug.hotErrors > 0`)) // EventSource waits ~3 s to reconnect
	var second feed.Message
	for _, m := range msgs {
		if m.Kind == feed.KindQuote && m.ISIN.String() == rows[2][0] {
			second = m
		}
	}
	second.TS, second.Price = ts.Add(10*time.Second).UnixNano(), second.Price*2
	appendMsgs(t, p, second)
	evs, err = p.HotEvents(ev.ID, 0, 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("second injected hot quote: events %v, %v; want one", evs, err)
	}
	run(t, ctx, waitJS(fmt.Sprintf(`quotesDebug.hotOpen && document.querySelector('#alert-list li[data-id="%d"]') !== null`, evs[0].ID)))
	ids := eval[[]uint64](t, ctx, `[...document.querySelectorAll('#alert-list li')].map(li => Number(li.dataset.id))`)
	if len(ids) != 4 || ids[0] != evs[0].ID || ids[1] != ev.ID {
		t.Errorf("alerts after the reconnect: ids %v, want %d, %d and the recording's two", ids, evs[0].ID, ev.ID)
	}

	// Clicking the alert opens its instrument.
	other := rows[0][0]
	run(t, ctx,
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#rows tr[data-isin=%q]`, other))),
		waitJS(fmt.Sprintf(`quotesDebug.chartIsin === %q`, other)),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#alert-list li[data-id="%d"]`, ev.ID))),
		waitJS(fmt.Sprintf(`quotesDebug.chartIsin === %q && location.hash === "#%s"`, sel, sel)),
	)

	csp := eval[[]string](t, ctx, `quotesDebug.cspViolations`)
	if len(csp) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", csp)
	}

	if err := screenshot(ctx, artifactPath(t, t.Name()+".png")); err != nil {
		t.Fatal(err)
	}
}

// screenshot writes a PNG of the page to path.
func screenshot(ctx context.Context, path string) error {
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

// clearSearch empties the search box (without an input event).
var clearSearch = chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
	_, err := chromedp.Evaluate[chromedp.Void](`document.getElementById('search').value = ''`)(ctx, tg)
	return err
})

// pickRangeJS defines pickRange(value[, from, to]): choose a range as a user does.
const pickRangeJS = `window.pickRange = (v, from, to) => {
	const s = document.getElementById('range-pick');
	s.value = v;
	s.dispatchEvent(new Event('change'));
	if (v === 'custom') {
		document.getElementById('from').value = from;
		document.getElementById('to').value = to;
		document.getElementById('apply').click();
	}
}`

// pageChange is fmtChange of app.js.
func pageChange(c float64) string {
	s := strconv.FormatFloat(c, 'f', 2, 64)
	if c > 0 {
		s = "+" + s
	}
	return s + " %"
}

func changeFloat(p hot.Percent) float64 {
	f, _ := strconv.ParseFloat(p.String(), 64)
	return f
}

// chartData reads the chart's candle and count series.
func chartData(t *testing.T, ctx context.Context) ([]bar, []countBar) {
	t.Helper()
	raw := eval[struct {
		Bars []struct {
			Time                   int64
			Open, High, Low, Close float64
		}
		Counts []countBar
	}](t, ctx, `({bars: quotesDebug.candles(), counts: quotesDebug.counts()})`)
	bars := make([]bar, len(raw.Bars))
	for i, b := range raw.Bars {
		bars[i] = bar(b)
	}
	return bars, raw.Counts
}

// getInto GETs url and decodes its JSON into v.
func getInto(t *testing.T, url string, v any) {
	t.Helper()
	resp := get(t, url)
	b := readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
