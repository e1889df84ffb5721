package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// report is the output: the faults by kind and the checks.
type report struct {
	cfg     config
	faults  []*injected
	tallies []*tally
	notes   []string
	errs    []error
	err     error
	logs    string
}

func (r *report) ok() bool {
	if r.err != nil || len(r.errs) > 0 || len(r.tallies) == 0 {
		return false
	}
	for _, t := range r.tallies {
		if !t.ok() {
			return false
		}
	}
	return true
}

func (r *report) totals() (lost, doubled, differing int) {
	for _, t := range r.tallies {
		if t.informational {
			continue
		}
		lost += t.lost
		doubled += t.doubled
		differing += t.differing
	}
	return
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	slices.Sort(ds)
	return ds[int(p*float64(len(ds)-1)+0.5)]
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

func (r *report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nquotes chaos: seed %d, faults for %v, %d instruments quoting every %v (churn %g/s)\n",
		r.cfg.seed, r.cfg.duration, r.cfg.instruments, r.cfg.quoteInterval, r.cfg.churn)
	fmt.Fprintf(&b, "\n%-32s %5s  %-15s  %-17s  %-17s  %s\n", "fault", "n", "down p50/max", "→ /readyz p50/max", "→ backlog 0 p50/max", "detail")
	for k := kind(0); k < numKinds; k++ {
		var down, ready, caught []time.Duration
		subs := map[string]int{}
		n := 0
		for _, f := range r.faults {
			if f.kind != k {
				continue
			}
			n++
			down = append(down, f.down)
			if f.ready >= 0 {
				ready = append(ready, f.ready)
			}
			if f.caughtUp >= 0 {
				caught = append(caught, f.caughtUp)
			}
			if f.sub != "" {
				subs[f.sub]++
			}
		}
		var detail []string
		for s, c := range subs {
			detail = append(detail, fmt.Sprintf("%s %d", s, c))
		}
		slices.Sort(detail)
		pm := func(ds []time.Duration) string {
			if len(ds) == 0 {
				return "-"
			}
			return fmtDur(percentile(ds, 0.5)) + " / " + fmtDur(slices.Max(ds))
		}
		fmt.Fprintf(&b, "%-32s %5d  %-15s  %-17s  %-17s  %s\n", kindNames[k], n, pm(down), pm(ready), pm(caught), strings.Join(detail, ", "))
	}
	b.WriteString("  (recovery is measured from the heal — restart, SIGCONT, space back — and includes overlapping\n" +
		"   faults: /readyz is 503 while the partner is disconnected)\n")

	fmt.Fprintf(&b, "\n%-46s %10s  %6s %8s %10s\n", "check (truth: the run's WAL replayed afresh)", "compared", "lost", "doubled", "differing")
	for _, t := range r.tallies {
		if t.informational {
			fmt.Fprintf(&b, "%-46s %10d  (informational)\n", t.name, t.compared)
		} else {
			fmt.Fprintf(&b, "%-46s %10d  %6d %8d %10d\n", t.name, t.compared, t.lost, t.doubled, t.differing)
		}
		for _, n := range t.notes {
			fmt.Fprintf(&b, "    %s\n", n)
		}
		for _, e := range t.examples {
			fmt.Fprintf(&b, "    e.g. %s\n", e)
		}
	}
	for _, n := range r.notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, e := range r.errs {
		fmt.Fprintf(&b, "error: %s\n", firstLines(e.Error(), 6))
	}
	if r.err != nil {
		fmt.Fprintf(&b, "error: %s\n", firstLines(r.err.Error(), 12))
	}
	if r.logs != "" {
		fmt.Fprintf(&b, "logs: %s\n", r.logs)
	}
	lost, doubled, differing := r.totals()
	verdict := "PASS"
	if !r.ok() {
		verdict = "FAIL"
	}
	var missing []string
	for k := kind(0); k < numKinds; k++ {
		n := 0
		for _, f := range r.faults {
			if f.kind == k {
				n++
			}
		}
		if k.required() && n == 0 {
			missing = append(missing, kindNames[k])
		}
	}
	fmt.Fprintf(&b, "\n%s: lost %d, doubled %d, differing %d — %d faults; seed %d (CHAOS_SEED=%d CHAOS_DURATION=%v make chaos)\n",
		verdict, lost, doubled, differing, len(r.faults), r.cfg.seed, r.cfg.seed, r.cfg.duration)
	if len(missing) > 0 {
		fmt.Fprintf(&b, "(no fault of: %s — run longer)\n", strings.Join(missing, ", "))
	}
	return b.String()
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n       ")
}
