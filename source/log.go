package source

import (
	"context"
	"log/slog"
	"sync"

	"github.com/benbjohnson/clock"
	"golang.org/x/time/rate"
)

// limitedLog is a rate-limited logger: up to logBurst lines at once, then logRate per second;
// the number of lines suppressed in between is attached to the next line that is logged.
type limitedLog struct {
	logger *slog.Logger
	clk    clock.Clock

	mu         sync.Mutex
	lim        *rate.Limiter
	suppressed int
}

const (
	logRate  = 1 // lines per second
	logBurst = 10
)

func newLimitedLog(l *slog.Logger, clk clock.Clock) *limitedLog {
	return &limitedLog{logger: l, clk: clk, lim: rate.NewLimiter(logRate, logBurst)}
}

func (l *limitedLog) log(level slog.Level, msg string, args ...any) {
	if !l.logger.Enabled(context.Background(), level) {
		return
	}
	l.mu.Lock()
	if !l.lim.AllowN(l.clk.Now(), 1) {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.logger.Log(context.Background(), level, msg, args...)
}
