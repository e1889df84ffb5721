package main

import (
	"encoding/json"
	"testing"
)

func TestResultsJSON(t *testing.T) {
	r := results{}
	r.set("spec", keyReplayQPSBatch, 1234567.89012)
	r.max("spec", keyLiveKeptUpQPS, 50000)
	r.max("spec", keyLiveKeptUpQPS, 200000)
	r.max("spec", keyLiveKeptUpQPS, 100000)
	r.set("heavy", keyWALBytesPerQuote, 11.25)
	b, err := r.marshal()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]map[string]float64
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	if v := got["spec"][keyReplayQPSBatch]; v != 1234567.89 {
		t.Errorf("replay_qps_batch = %v, want 1234567.89", v)
	}
	if v := got["spec"][keyLiveKeptUpQPS]; v != 200000 {
		t.Errorf("live_kept_up_qps = %v, want the highest kept-up rate 200000", v)
	}
	if v := got["heavy"][keyWALBytesPerQuote]; v != 11.25 {
		t.Errorf("wal_bytes_per_quote = %v", v)
	}
	if p := jsonPath("bench/results/latest.txt"); p != "bench/results/latest.json" {
		t.Errorf("jsonPath = %s", p)
	}
}
