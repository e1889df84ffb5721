package diskguard

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of a Watcher:
//
//	quotes_disk_free_bytes       free space (available to unprivileged users) at the last poll
//	quotes_disk_total_bytes      size of the file system
//	quotes_disk_min_free_bytes   the free space the threshold asks for
//	quotes_disk_low              1 while free space is below it (input paused)
//	quotes_disk_low_total        transitions to low
//	quotes_disk_stat_errors_total failed measurements
type metrics struct {
	lowTotal, statErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, w *Watcher) (*metrics, error) {
	m := &metrics{
		lowTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "quotes_disk_low_total", Help: "Times free disk space fell below the minimum (input paused).",
		}),
		statErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "quotes_disk_stat_errors_total", Help: "Failed measurements of free disk space.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	gauge := func(name, help string, f func(State) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(w.State()) })
	}
	for _, c := range []prometheus.Collector{
		m.lowTotal, m.statErrors,
		gauge("quotes_disk_free_bytes", "Free disk space of the data directory's file system (available to unprivileged users), at the last poll.",
			func(s State) float64 { return float64(s.Free) }),
		gauge("quotes_disk_total_bytes", "Size of the data directory's file system.",
			func(s State) float64 { return float64(s.Total) }),
		gauge("quotes_disk_min_free_bytes", "Free disk space the minimum (--min-free-disk) asks for.",
			func(s State) float64 { return float64(s.Need) }),
		gauge("quotes_disk_low", "1 while free disk space is below the minimum (input paused).",
			func(s State) float64 {
				if s.Low {
					return 1
				}
				return 0
			}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("diskguard: register metrics: %w", err)
		}
	}
	return m, nil
}
