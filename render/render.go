// Package render prints query results for people and scripts: instruments, candles and hot
// events as aligned tables, csv (with a header row) or json (exactly the HTTP API's JSON).
//
// Tables are for people: columns padded with spaces and two spaces apart, numbers and prices
// right-aligned, times in UTC, partner strings escaped (feed.EscapeText). A table printed at
// once is sized to its contents; a streamed one (HotStream) has fixed widths, and a value
// wider than its column shifts only its own row.
package render

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/quotesdev/quotes/api"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
)

const tableTime = "2006-01-02 15:04:05"

// Column is one column of a table.
type Column struct {
	Title string
	Right bool // right-aligned: numbers and prices
	Width int  // minimum width; the fixed width of a streamed table
}

// tableWriter prints rows under a set of columns.
type tableWriter struct {
	w      io.Writer
	cols   []Column
	widths []int
	buf    []byte
}

// newTable returns a table whose columns are as wide as their titles and minimum widths.
func newTable(w io.Writer, cols []Column) *tableWriter {
	t := &tableWriter{w: w, cols: cols, widths: make([]int, len(cols))}
	for i, c := range cols {
		t.widths[i] = max(c.Width, utf8.RuneCountInString(c.Title))
	}
	return t
}

// fit widens the columns to hold rows.
func (t *tableWriter) fit(rows [][]string) {
	for _, r := range rows {
		for i, cell := range r {
			t.widths[i] = max(t.widths[i], utf8.RuneCountInString(cell))
		}
	}
}

func (t *tableWriter) header() error {
	titles := make([]string, len(t.cols))
	for i, c := range t.cols {
		titles[i] = c.Title
	}
	return t.row(titles)
}

// row prints one row; the last column is not padded on the right.
func (t *tableWriter) row(cells []string) error {
	b := t.buf[:0]
	for i, cell := range cells {
		if i > 0 {
			b = append(b, "  "...)
		}
		pad := max(0, t.widths[i]-utf8.RuneCountInString(cell))
		if t.cols[i].Right {
			b = appendSpaces(b, pad)
			b = append(b, cell...)
		} else {
			b = append(b, cell...)
			if i < len(cells)-1 {
				b = appendSpaces(b, pad)
			}
		}
	}
	b = append(b, '\n')
	t.buf = b
	_, err := t.w.Write(b)
	return err
}

func appendSpaces(b []byte, n int) []byte {
	for range n {
		b = append(b, ' ')
	}
	return b
}

// writeTable prints a whole table, sized to its rows, and an optional footer line.
func writeTable(w io.Writer, cols []Column, rows [][]string, footer string) error {
	t := newTable(w, cols)
	t.fit(rows)
	if err := t.header(); err != nil {
		return err
	}
	for _, r := range rows {
		if err := t.row(r); err != nil {
			return err
		}
	}
	if footer != "" {
		if _, err := io.WriteString(w, footer+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

// writeCSV writes a header and rows.
func writeCSV(w io.Writer, header []string, rows [][]string) error {
	cw := csv.NewWriter(w)
	cw.Write(header)
	for _, r := range rows {
		cw.Write(r)
	}
	cw.Flush()
	return cw.Error()
}

// Instruments prints the instrument list in format (table, csv or json).
func Instruments(w io.Writer, format string, ins []api.Instrument) error {
	switch format {
	case "json":
		return writeJSON(w, ins)
	case "csv":
		rows := make([][]string, len(ins))
		for i, in := range ins {
			price, ts := "", ""
			if in.Price != nil {
				price, ts = in.Price.String(), in.PriceTS.Format(time.RFC3339Nano)
			}
			rows[i] = []string{in.ISIN, feed.EscapeText(in.Description, 0), price, ts}
		}
		return writeCSV(w, []string{"isin", "description", "price", "priceTs"}, rows)
	}
	rows := make([][]string, len(ins))
	for i, in := range ins {
		price, ts := "-", "-"
		if in.Price != nil {
			price, ts = in.Price.String(), in.PriceTS.Format(tableTime+".000")
		}
		rows[i] = []string{in.ISIN, price, ts, feed.EscapeText(in.Description, 0)}
	}
	return writeTable(w, []Column{{Title: "ISIN"}, {Title: "PRICE", Right: true}, {Title: "PRICE TIME (UTC)"}, {Title: "DESCRIPTION"}},
		rows, fmt.Sprintf("(%d instruments)", len(ins)))
}

// Candles prints candles in format (table, csv or json).
func Candles(w io.Writer, format string, cs []api.Candle) error {
	switch format {
	case "json":
		return writeJSON(w, cs)
	case "csv":
		rows := make([][]string, len(cs))
		for i, c := range cs {
			rows[i] = []string{c.OpenTimestamp.Format(time.RFC3339), c.CloseTimestamp.Format(time.RFC3339),
				c.OpenPrice.String(), c.HighPrice.String(), c.LowPrice.String(), c.ClosePrice.String(),
				strconv.FormatUint(c.Quotes, 10)}
		}
		return writeCSV(w, []string{"openTimestamp", "closeTimestamp", "openPrice", "highPrice", "lowPrice", "closePrice", "quotes"}, rows)
	}
	rows := make([][]string, len(cs))
	for i, c := range cs {
		rows[i] = []string{c.OpenTimestamp.Format("2006-01-02 15:04"), c.OpenPrice.String(), c.HighPrice.String(),
			c.LowPrice.String(), c.ClosePrice.String(), strconv.FormatUint(c.Quotes, 10)}
	}
	return writeTable(w, []Column{{Title: "MINUTE (UTC)"}, {Title: "OPEN", Right: true}, {Title: "HIGH", Right: true},
		{Title: "LOW", Right: true}, {Title: "CLOSE", Right: true}, {Title: "QUOTES", Right: true}}, rows, "")
}

// HotColumns are the columns of the hot event table; fixed sets the widths of a followed
// table (ids of up to 8 digits, prices of up to 12 characters), whose rows are printed
// before the next ones are known.
func HotColumns(fixed bool) []Column {
	cols := []Column{{Title: "ID", Right: true, Width: 8}, {Title: "TIME (UTC)", Width: 23}, {Title: "ISIN", Width: 12},
		{Title: "PRICE", Right: true, Width: 12}, {Title: "REFERENCE", Right: true, Width: 12},
		{Title: "REFERENCE TIME (UTC)", Width: 23}, {Title: "CHANGE %", Right: true, Width: 10}}
	if !fixed {
		for i := range cols {
			cols[i].Width = 0
		}
	}
	return cols
}

var hotCSVHeader = []string{"id", "ts", "isin", "price", "referencePrice", "referenceTs", "changePercent"}

func hotTableRow(e *hot.Event) []string {
	return []string{strconv.FormatUint(e.ID, 10), time.Unix(0, e.TS).UTC().Format(tableTime + ".000"), e.ISIN.String(),
		e.Price.String(), e.ReferencePrice.String(), time.Unix(0, e.ReferenceTS).UTC().Format(tableTime + ".000"),
		e.ChangePercent.String()}
}

func hotCSVRow(e *hot.Event) []string {
	return []string{strconv.FormatUint(e.ID, 10), time.Unix(0, e.TS).UTC().Format(time.RFC3339Nano), e.ISIN.String(),
		e.Price.String(), e.ReferencePrice.String(), time.Unix(0, e.ReferenceTS).UTC().Format(time.RFC3339Nano),
		e.ChangePercent.String()}
}

// Hot prints events at once: a JSON array (the API's), a sized table, or csv.
func Hot(w io.Writer, format string, events []hot.Event) error {
	switch format {
	case "json":
		out := make([]json.RawMessage, len(events))
		for i := range events {
			out[i] = events[i].AppendJSON(nil)
		}
		return writeJSON(w, out)
	case "csv":
		rows := make([][]string, len(events))
		for i := range events {
			rows[i] = hotCSVRow(&events[i])
		}
		return writeCSV(w, hotCSVHeader, rows)
	}
	rows := make([][]string, len(events))
	for i := range events {
		rows[i] = hotTableRow(&events[i])
	}
	return writeTable(w, HotColumns(false), rows, "")
}

// HotStream prints followed events as they come: a fixed-width table, csv, or one
// JSON object per line.
type HotStream struct {
	w      io.Writer
	format string
	table  *tableWriter
	csv    *csv.Writer
}

// NewHotStream prints the header, if the format has one.
func NewHotStream(w io.Writer, format string) (*HotStream, error) {
	p := &HotStream{w: w, format: format}
	switch format {
	case "table":
		p.table = newTable(w, HotColumns(true))
		return p, p.table.header()
	case "csv":
		p.csv = csv.NewWriter(w)
		p.csv.Write(hotCSVHeader)
		p.csv.Flush()
		return p, p.csv.Error()
	}
	return p, nil
}

// Print prints one event.
func (p *HotStream) Print(e *hot.Event) error {
	switch p.format {
	case "table":
		return p.table.row(hotTableRow(e))
	case "csv":
		p.csv.Write(hotCSVRow(e))
		p.csv.Flush()
		return p.csv.Error()
	}
	_, err := p.w.Write(append(e.AppendJSON(nil), '\n'))
	return err
}
