package feed

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// rejectedCounts gathers quotes_feed_rejected_total from reg, by reason.
func rejectedCounts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "quotes_feed_rejected_total" {
			continue
		}
		if mf.GetType().String() != "COUNTER" {
			t.Fatalf("type %v", mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "reason" {
				t.Fatalf("labels %v", m.GetLabel())
			}
			counts[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return counts
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	counts := rejectedCounts(t, reg)
	if len(counts) != len(Reasons) {
		t.Fatalf("%d series before any reject: %v; want one per reason (%d)", len(counts), counts, len(Reasons))
	}
	for _, r := range Reasons {
		if v, ok := counts[string(r)]; !ok || v != 0 {
			t.Fatalf("reason %s: %v, %v; want a 0 series", r, v, ok)
		}
	}
	m.Reject(ReasonBadPrice)
	m.Reject(ReasonBadPrice)
	m.Reject(ReasonOversized)
	if !m.RejectError(fmt.Errorf("frame 3: %w", &DecodeError{Reason: ReasonBadISIN})) {
		t.Fatal("RejectError of a wrapped *DecodeError = false")
	}
	if m.RejectError(fmt.Errorf("not a decode error")) {
		t.Fatal("RejectError of another error = true")
	}
	counts = rejectedCounts(t, reg)
	if counts["bad_price"] != 2 || counts["oversized"] != 1 || counts["bad_isin"] != 1 || counts["malformed_json"] != 0 {
		t.Fatalf("counts %v", counts)
	}

	// A second NewMetrics on the same registry shares the counter instead of panicking.
	m2 := NewMetrics(reg)
	m2.Reject(ReasonBadPrice)
	if got := rejectedCounts(t, reg)["bad_price"]; got != 3 {
		t.Fatalf("bad_price after a shared registration = %v; want 3", got)
	}
}

func TestMetricsNil(t *testing.T) {
	var m *Metrics
	m.Reject(ReasonBadPrice) // must not panic
	m.RejectError(&DecodeError{Reason: ReasonBadPrice})
	NewMetrics(nil).Reject(ReasonBadPrice) // unregistered, still usable
}
