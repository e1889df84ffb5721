package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

// A summary exactly as cmd/quotes/replay.go prints it.
const summaryOut = `messages                   3054161  (3001069 quotes, 53092 instrument events, 0 ticks)
quotes aggregated          3001069  (0 late corrections, 0 released from grace hold)
quotes dropped             0        (inactive_expired 0, inactive_at_end 0)
deletes of inactive ISINs  0        
candles closed             51519    
hot events                 7        
active instruments         50000    
rejected lines             0        
elapsed 6.113s (499637 messages/s)
`

func TestParseReplaySummary(t *testing.T) {
	s, err := parseReplaySummary(summaryOut)
	if err != nil {
		t.Fatal(err)
	}
	want := replaySummary{Messages: 3054161, Quotes: 3001069, Aggregated: 3001069, Candles: 51519, HotEvents: 7, Elapsed: 6113 * time.Millisecond}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	if _, err := parseReplaySummary("quotes: open WAL: boom\n"); err == nil {
		t.Fatal("no error for output without a summary")
	}
}

const metricsOut = `# HELP quotes_ingest_durable_latency_seconds Time from a message's arrival stamp.
# TYPE quotes_ingest_durable_latency_seconds histogram
quotes_ingest_durable_latency_seconds_bucket{le="0.001"} 10
quotes_ingest_durable_latency_seconds_bucket{le="0.002"} 60
quotes_ingest_durable_latency_seconds_bucket{le="0.004"} 90
quotes_ingest_durable_latency_seconds_bucket{le="+Inf"} 100
quotes_ingest_durable_latency_seconds_sum 0.2
quotes_ingest_durable_latency_seconds_count 100
quotes_dropped_total{reason="inactive expired"} 3
quotes_quote_records_total 1.2345e+06
`

func TestParseMetrics(t *testing.T) {
	m := parseMetrics(metricsOut)
	if got := m["quotes_quote_records_total"]; got != 1234500 {
		t.Errorf("quotes_quote_records_total = %v", got)
	}
	if got := m[`quotes_dropped_total{reason="inactive expired"}`]; got != 3 {
		t.Errorf("labelled series with a space = %v", got)
	}
	bs := m.histogram("quotes_ingest_durable_latency_seconds")
	if len(bs) != 4 || bs[0].LE != 0.001 || !math.IsInf(bs[3].LE, 1) || bs[3].Count != 100 {
		t.Fatalf("buckets %+v", bs)
	}
}

func TestQuantile(t *testing.T) {
	bs := parseMetrics(metricsOut).histogram("quotes_ingest_durable_latency_seconds")
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
	// rank 50 of 100: bucket (0.001, 0.002] holds ranks 10..60: 0.001 + 0.001×40/50.
	if v, above, ok := quantile(0.5, bs); !ok || above || !near(v, 0.0018) {
		t.Errorf("p50 = %v above=%v ok=%v, want 0.0018", v, above, ok)
	}
	// rank 5 in the first bucket: lower bound 0.
	if v, _, _ := quantile(0.05, bs); !near(v, 0.0005) {
		t.Errorf("p5 = %v, want 0.0005", v)
	}
	// rank 99 in +Inf: the largest finite bound, marked above.
	if v, above, ok := quantile(0.99, bs); !ok || !above || v != 0.004 {
		t.Errorf("p99 = %v above=%v ok=%v, want >0.004", v, above, ok)
	}
	// The difference of two scrapes.
	before := []bucket{{0.001, 10}, {0.002, 10}, {0.004, 10}, {math.Inf(1), 10}}
	d := subBuckets(bs, before)
	if d[0].Count != 0 || d[3].Count != 90 {
		t.Errorf("subBuckets = %+v", d)
	}
	if v, _, _ := quantile(0.5, d); !near(v, 0.001+0.001*45.0/50) {
		t.Errorf("p50 of the difference = %v", v)
	}
	if _, _, ok := quantile(0.5, nil); ok {
		t.Error("quantile of no buckets is ok")
	}
	if _, _, ok := quantile(0.5, subBuckets(bs, bs)); ok {
		t.Error("quantile of no observations is ok")
	}
}

func TestExactQuantile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if got := exactQuantile(0.5, lat); got != 50*time.Millisecond {
		t.Errorf("p50 = %v", got)
	}
	if got := exactQuantile(0.99, lat); got != 99*time.Millisecond {
		t.Errorf("p99 = %v", got)
	}
	if got := exactQuantile(0.99, nil); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}

func TestTableRender(t *testing.T) {
	tb := table{Columns: []string{"spec", "heavy workload"}}
	tb.section("replay")
	tb.set("throughput", 0, "500,000 q/s")
	tb.section("live")
	tb.set("level 1", 0, "kept up")
	tb.set("level 2", 0, "fell behind")
	// The second column: existing sections and rows are reused; a row only it has goes
	// at the end of its section, not of the table.
	tb.section("replay")
	tb.set("throughput", 1, "1 q/s")
	tb.set("RSS", 1, "10 MiB")
	tb.section("live")
	tb.set("level 1", 1, "kept up")
	var sb strings.Builder
	if err := tb.render(&sb); err != nil {
		t.Fatal(err)
	}
	want := `metric        spec         heavy workload
------        ----         --------------
replay
  throughput  500,000 q/s  1 q/s
  RSS         —            10 MiB
live
  level 1     kept up      kept up
  level 2     fell behind  —
`
	if sb.String() != want {
		t.Errorf("render:\n%s\nwant:\n%s", sb.String(), want)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{num(1234567.4), "1,234,567"},
		{num(999), "999"},
		{num(-1000), "-1,000"},
		{rate(3_000_000, 6*time.Second), "500,000 q/s"},
		{ms(1500 * time.Microsecond), "1.5 ms"},
		{ms(250 * time.Microsecond), "0.25 ms"},
		{ratio(2, 1), "2.00×"},
		{ratio(1, 0), "n/a"},
		{shortDur(10 * time.Minute), "10m"},
		{shortDur(30 * time.Second), "30s"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if q, m := parseGenerateDone(`time=x level=INFO msg="generate: done" messages=3054161 adds=51546 deletes=1546 quotes=3001069 reused_isins=329 elapsed=2.1s`); q != 3001069 || m != 3054161 {
		t.Errorf("parseGenerateDone = %d, %d", q, m)
	}
	if d := parseGenerateElapsed(`msg="generate: done" quotes=1 elapsed=2.1s`); d != 2100*time.Millisecond {
		t.Errorf("parseGenerateElapsed = %v", d)
	}
}
