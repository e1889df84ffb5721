package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// table is the result: one column per workload, one row per metric.
type table struct {
	Columns []string // workload names
	Rows    []row
	current string // the section new rows go into
}

type row struct {
	Metric string
	Cells  []string // one per column; "" prints as "—"
	// Section, if set, starts a group: the row is a heading without cells.
	Section bool
}

// set sets the cell of metric (adding the row at the end if it is new) in column col.
func (t *table) set(metric string, col int, value string) {
	for i := range t.Rows {
		if t.Rows[i].Metric == metric && !t.Rows[i].Section {
			t.Rows[i].Cells[col] = value
			return
		}
	}
	cells := make([]string, len(t.Columns))
	cells[col] = value
	// A new row goes at the end of the current section.
	at := len(t.Rows)
	for i := range t.Rows {
		if t.Rows[i].Section && t.Rows[i].Metric == t.current {
			at = i + 1
			for at < len(t.Rows) && !t.Rows[at].Section {
				at++
			}
			break
		}
	}
	t.Rows = slices.Insert(t.Rows, at, row{Metric: metric, Cells: cells})
}

// section makes name the current section, adding its heading row if it is new.
func (t *table) section(name string) {
	t.current = name
	for _, r := range t.Rows {
		if r.Section && r.Metric == name {
			return
		}
	}
	t.Rows = append(t.Rows, row{Metric: name, Section: true})
}

// render writes the table aligned with tabwriter: the metric column left, value columns
// left-aligned too (cells are short phrases, not bare numbers).
func (t *table) render(w io.Writer) error {
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "metric\t%s\t\n", strings.Join(t.Columns, "\t"))
	dashes := make([]string, len(t.Columns)+1)
	dashes[0] = strings.Repeat("-", 6)
	for i, c := range t.Columns {
		dashes[i+1] = strings.Repeat("-", len([]rune(c)))
	}
	fmt.Fprintf(tw, "%s\t\n", strings.Join(dashes, "\t"))
	for _, r := range t.Rows {
		if r.Section {
			fmt.Fprintf(tw, "%s\t%s\n", r.Metric, strings.Repeat("\t", len(t.Columns)))
			continue
		}
		cells := make([]string, len(r.Cells))
		for i, c := range r.Cells {
			if c == "" {
				c = "—"
			}
			cells[i] = c
		}
		fmt.Fprintf(tw, "  %s\t%s\t\n", r.Metric, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// No trailing blanks (the padding of the last cell).
	lines := strings.Split(buf.String(), "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n"))
	return err
}

// num formats n with thousands separators: 1234567 → "1,234,567".
func num(n float64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprintf("%.0f", n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// rate formats a throughput.
func rate(n float64, d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return num(n/d.Seconds()) + " q/s"
}

// ms formats a duration in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 1:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// secs formats a duration in seconds.
func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// mib formats bytes as MiB.
func mib(b int64) string { return fmt.Sprintf("%s MiB", num(float64(b)/(1<<20))) }

// ratio formats ours/theirs as "2.3×".
func ratio(ours, theirs float64) string {
	if theirs <= 0 || ours <= 0 {
		return "n/a"
	}
	if r := ours / theirs; r < 10 {
		return fmt.Sprintf("%.2f×", r)
	} else {
		return fmt.Sprintf("%.0f×", r)
	}
}
