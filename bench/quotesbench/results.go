package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// The keys of bench/results/latest.json (issue 15): one object per workload, numbers only.
// A key is absent when its figure was not measured (e.g. no ClickHouse, or a phase failed).
const (
	keyReplayQPSBatch        = "replay_qps_batch"
	keyReplayQPSAlways       = "replay_qps_always"
	keyReplayQPSNone         = "replay_qps_none"
	keyReplayPeakRSSMiB      = "replay_peak_rss_mib"
	keyCHFileQPS             = "ch_file_qps"
	keyCHInsertQPS           = "ch_insert_qps"
	keyRestartAfterKillS     = "restart_after_kill_s"
	keyQueryP50MsIdle        = "query_p50_ms_idle"
	keyQueryP99MsIdle        = "query_p99_ms_idle"
	keyQueryP99MsUnderIngest = "query_p99_ms_under_ingest"
	keyLiveKeptUpQPS         = "live_kept_up_qps"
	keyLivePeakRSSMiB        = "live_peak_rss_mib"
	keyLiveRestartS          = "live_restart_s"
	keyLiveSteadyAnonRSSMiB  = "live_steady_anon_rss_mib"
	keyWALBytesPerQuote      = "wal_bytes_per_quote" // the log's files, not the checkpoint
	keyCheckpointMiB         = "checkpoint_mib"      // the checkpoint file, a fixed size
)

// results collects the machine-readable figures beside the table.
type results map[string]map[string]float64

// set records a figure of workload w.
func (r results) set(w, key string, v float64) {
	if r[w] == nil {
		r[w] = map[string]float64{}
	}
	r[w][key] = v
}

// max records v unless a larger figure is already there.
func (r results) max(w, key string, v float64) {
	if old, ok := r[w][key]; !ok || v > old {
		r.set(w, key, v)
	}
}

// marshal is the JSON document: workloads in name order, keys sorted (encoding/json sorts
// map keys), figures rounded to 3 decimals.
func (r results) marshal() ([]byte, error) {
	out := map[string]map[string]float64{}
	for w, m := range r {
		out[w] = map[string]float64{}
		for k, v := range m {
			out[w][k] = float64(int64(v*1000+0.5)) / 1000
		}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal results: %w", err)
	}
	return append(b, '\n'), nil
}

// jsonPath is where the results go beside the text report: latest.txt → latest.json.
func jsonPath(txt string) string {
	return strings.TrimSuffix(txt, filepath.Ext(txt)) + ".json"
}

func mibF(b int64) float64         { return float64(b) / (1 << 20) }
func msF(d time.Duration) float64  { return float64(d) / float64(time.Millisecond) }
func secF(d time.Duration) float64 { return d.Seconds() }
