package main

import (
	"bufio"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// replaySummary is what bench reads from the summary `quotes replay` prints.
type replaySummary struct {
	Messages, Quotes, Aggregated, Candles, HotEvents uint64
	Elapsed                                          time.Duration
}

var (
	reMessages   = regexp.MustCompile(`^messages\s+(\d+)\s+\((\d+) quotes`)
	reAggregated = regexp.MustCompile(`^quotes aggregated\s+(\d+)`)
	reCandles    = regexp.MustCompile(`^candles closed\s+(\d+)`)
	reHot        = regexp.MustCompile(`^hot events\s+(\d+)`)
	reElapsed    = regexp.MustCompile(`^elapsed (\S+) \(`)
)

// parseReplaySummary parses the summary of `quotes replay` (cmd/quotes/replay.go
// printSummary). The messages and elapsed lines are required.
func parseReplaySummary(out string) (replaySummary, error) {
	var s replaySummary
	var haveMsgs, haveElapsed bool
	u := func(v string) uint64 { n, _ := strconv.ParseUint(v, 10, 64); return n }
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := reMessages.FindStringSubmatch(line); m != nil {
			s.Messages, s.Quotes, haveMsgs = u(m[1]), u(m[2]), true
		} else if m := reAggregated.FindStringSubmatch(line); m != nil {
			s.Aggregated = u(m[1])
		} else if m := reCandles.FindStringSubmatch(line); m != nil {
			s.Candles = u(m[1])
		} else if m := reHot.FindStringSubmatch(line); m != nil {
			s.HotEvents = u(m[1])
		} else if m := reElapsed.FindStringSubmatch(line); m != nil {
			d, err := time.ParseDuration(m[1])
			if err != nil {
				return s, fmt.Errorf("replay summary: elapsed %q: %w", m[1], err)
			}
			s.Elapsed, haveElapsed = d, true
		}
	}
	if !haveMsgs || !haveElapsed {
		return s, fmt.Errorf("replay summary: no messages/elapsed line in %q", out)
	}
	return s, nil
}

// metrics is one scrape of a Prometheus text exposition: series (name plus its labels as
// printed, e.g. `x_bucket{le="0.5"}`) → value.
type metrics map[string]float64

// parseMetrics parses the Prometheus text format, ignoring comments and timestamps.
func parseMetrics(text string) metrics {
	m := metrics{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The series ends at the first space after the closing brace (label values may
		// contain spaces).
		end := strings.IndexByte(line, ' ')
		if i := strings.IndexByte(line, '{'); i >= 0 && i < end {
			j := strings.LastIndexByte(line, '}')
			if j < 0 {
				continue
			}
			end = j + 1
		}
		if end <= 0 || end >= len(line) {
			continue
		}
		fields := strings.Fields(line[end:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		m[line[:end]] = v
	}
	return m
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	LE    float64 // upper bound, +Inf for the last
	Count float64 // observations ≤ LE
}

// histogram returns the cumulative buckets of the histogram name, sorted by bound.
func (m metrics) histogram(name string) []bucket {
	prefix := name + `_bucket{`
	var bs []bucket
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		i := strings.Index(k, `le="`)
		if i < 0 {
			continue
		}
		rest := k[i+4:]
		j := strings.IndexByte(rest, '"')
		if j < 0 {
			continue
		}
		le, err := strconv.ParseFloat(rest[:j], 64) // accepts "+Inf"
		if err != nil {
			continue
		}
		bs = append(bs, bucket{LE: le, Count: v})
	}
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.LE < b.LE:
			return -1
		case a.LE > b.LE:
			return 1
		}
		return 0
	})
	return bs
}

// subBuckets returns after − before, bucket by bucket (the observations between two
// scrapes); before may be empty.
func subBuckets(after, before []bucket) []bucket {
	out := slices.Clone(after)
	for i := range out {
		for _, b := range before {
			if b.LE == out[i].LE {
				out[i].Count -= b.Count
			}
		}
	}
	return out
}

// quantile estimates the q-quantile (0 < q < 1) from cumulative buckets the way
// Prometheus' histogram_quantile does: find the bucket the rank falls into and interpolate
// linearly between its lower and upper bound (the first bucket's lower bound is 0). It
// returns the total count too. A rank in the +Inf bucket returns the largest finite bound
// with above=true (the quantile is larger than that). No observations: ok=false.
func quantile(q float64, bs []bucket) (v float64, above, ok bool) {
	if len(bs) == 0 {
		return 0, false, false
	}
	total := bs[len(bs)-1].Count
	if !math.IsInf(bs[len(bs)-1].LE, 1) || total <= 0 {
		return 0, false, false
	}
	rank := q * total
	prevLE, prevCount := 0.0, 0.0
	for i, b := range bs {
		if b.Count >= rank && b.Count > prevCount {
			if math.IsInf(b.LE, 1) {
				if i == 0 {
					return 0, true, true
				}
				return prevLE, true, true
			}
			return prevLE + (b.LE-prevLE)*(rank-prevCount)/(b.Count-prevCount), false, true
		}
		prevLE, prevCount = b.LE, b.Count
	}
	return prevLE, true, true
}

// exactQuantile returns the q-quantile of sorted samples (nearest rank).
func exactQuantile(q float64, sorted []time.Duration) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
