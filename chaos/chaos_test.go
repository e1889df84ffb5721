package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	m := parseMetrics([]byte(`# HELP quotes_sink_backlog_items x
# TYPE quotes_sink_backlog_items gauge
quotes_sink_backlog_items{sink="clickhouse"} 3
quotes_sink_backlog_items{sink="other",x="a b}"} 4
quotes_disk_low 1
quotes_checkpoint_duration_seconds_count 7
`))
	for name, want := range map[string]float64{"quotes_sink_backlog_items": 7, "quotes_disk_low": 1, "quotes_checkpoint_duration_seconds_count": 7} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
}

func TestNextMinuteClose(t *testing.T) {
	at := nextMinuteClose(time.Date(2026, 1, 1, 10, 0, 30, 0, time.UTC))
	if want := time.Date(2026, 1, 1, 10, 1, 5, int(time.Millisecond), time.UTC); !at.Equal(want) {
		t.Errorf("after 10:00:30: %v, want %v", at.UTC(), want)
	}
	at = nextMinuteClose(time.Date(2026, 1, 1, 10, 0, 2, 0, time.UTC))
	if want := time.Date(2026, 1, 1, 10, 0, 5, int(time.Millisecond), time.UTC); !at.Equal(want) {
		t.Errorf("after 10:00:02: %v, want %v", at.UTC(), want)
	}
}

func candlesJSON(t *testing.T, s string) []apiCandle {
	t.Helper()
	var cs []apiCandle
	if err := json.Unmarshal([]byte(s), &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestCompareCandles: the check must be able to fail — fewer quotes is lost, more is
// doubled, a different price is differing, a missing or extra minute is lost or doubled.
func TestCompareCandles(t *testing.T) {
	want := candlesJSON(t, `[
{"openTimestamp":"A","closeTimestamp":"B","openPrice":1,"highPrice":2,"lowPrice":1,"closePrice":2,"quotes":4},
{"openTimestamp":"B","closeTimestamp":"C","openPrice":2,"highPrice":2,"lowPrice":2,"closePrice":2,"quotes":1},
{"openTimestamp":"C","closeTimestamp":"D","openPrice":2,"highPrice":3,"lowPrice":2,"closePrice":3,"quotes":2},
{"openTimestamp":"D","closeTimestamp":"E","openPrice":3,"highPrice":3,"lowPrice":3,"closePrice":3,"quotes":0}]`)
	got := candlesJSON(t, `[
{"openTimestamp":"A","closeTimestamp":"B","openPrice":1,"highPrice":2,"lowPrice":1,"closePrice":2,"quotes":8},
{"openTimestamp":"B","closeTimestamp":"C","openPrice":2,"highPrice":2,"lowPrice":2,"closePrice":2.5,"quotes":1},
{"openTimestamp":"D","closeTimestamp":"E","openPrice":3,"highPrice":3,"lowPrice":3,"closePrice":3,"quotes":0},
{"openTimestamp":"E","closeTimestamp":"F","openPrice":3,"highPrice":3,"lowPrice":3,"closePrice":3,"quotes":0}]`)
	var tl tally
	compareCandles(&tl, "X", got, want)
	if tl.compared != 4 || tl.lost != 1 || tl.doubled != 2 || tl.differing != 1 || tl.ok() {
		t.Errorf("compared %d lost %d doubled %d differing %d ok %v, want 4 1 2 1 false", tl.compared, tl.lost, tl.doubled, tl.differing, tl.ok())
	}
	var same tally
	compareCandles(&same, "X", want, want)
	if !same.ok() || same.compared != 4 {
		t.Errorf("identical candles: %+v", same)
	}
}

func TestReportVerdict(t *testing.T) {
	r := &report{cfg: config{seed: 5, duration: time.Minute}, tallies: []*tally{{name: "a", compared: 3}, {name: "info", compared: 9, informational: true}}}
	if !r.ok() || !strings.Contains(r.String(), "PASS: lost 0, doubled 0, differing 0") {
		t.Errorf("all good but:\n%s", r)
	}
	r.tallies = append(r.tallies, &tally{name: "b", compared: 1, doubled: 1})
	if r.ok() || !strings.Contains(r.String(), "FAIL: lost 0, doubled 1, differing 0") {
		t.Errorf("a doubled item but:\n%s", r)
	}
	if !strings.Contains(r.String(), "CHAOS_SEED=5") {
		t.Error("the seed is not printed")
	}
}

func TestWaitingStacks(t *testing.T) {
	g7 := "goroutine 7 [sync.RWMutex.RLock]:\nsync.(*RWMutex).RLock(...)\npipeline.(*Pipeline).Stats()"
	dump := "SIGQUIT: quit\nPC=0x1 m=0 sigcode=0\n\n" +
		"goroutine 1 [select]:\nmain.run()\n\tmain.go:1\n\n" +
		g7 + "\n\n" +
		"goroutine 9 [chan receive]:\napi.(*pipelineCollector).Collect(0x1)\n\n" +
		"goroutine 12 [IO wait]:\ninternal/poll.(*FD).Read()\n"
	got := waitingStacks(dump, 1000)
	for _, want := range []string{"goroutine 7 ", "goroutine 9 "} {
		if !strings.Contains(got, want) {
			t.Errorf("waitingStacks lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"goroutine 1 ", "goroutine 12 ", "SIGQUIT"} {
		if strings.Contains(got, not) {
			t.Errorf("waitingStacks has %q:\n%s", not, got)
		}
	}
	// Room for the first waiting stack only: it, then the note.
	if short := waitingStacks(dump, len(g7)+2); !strings.HasPrefix(short, g7) || !strings.Contains(short, "more in ingest's log") || strings.Contains(short, "goroutine 9 ") {
		t.Errorf("waitingStacks(%d) = %q, want the first stack only and a note", len(g7)+2, short)
	}
}
