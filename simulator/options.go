package simulator

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DefaultStart returns the virtual start time DefaultOptions uses, 2026-01-01T00:00:00Z: the
// first timestamp of every recording that does not choose its own.
func DefaultStart() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// SpeedMax is the Speed that runs the feed as fast as possible, without pacing.
const SpeedMax = 0.0

// Limits of the options, checked by Validate.
const (
	// MaxInstruments is the largest number of active instruments the model accepts.
	MaxInstruments = 10_000_000
	// MinQuoteInterval is the smallest mean quote interval; timestamps have millisecond
	// resolution.
	MinQuoteInterval = 10 * time.Millisecond
	// MaxChurn is the largest churn rate (add+delete events per second).
	MaxChurn = 1_000_000.0
	// MaxSpeed is the largest pacing factor (a real-time run at 1e6x).
	MaxSpeed = 1_000_000.0
)

// Options configure the feed model. Start from DefaultOptions and change what you need;
// Validate reports the first bad field.
type Options struct {
	// Instruments is the number of active instruments, kept constant under churn.
	Instruments int
	// QuoteInterval is the mean time between two quotes of one instrument; each interval is
	// drawn uniformly from [0.5, 1.5] × QuoteInterval, so quotes are spread evenly.
	QuoteInterval time.Duration
	// Churn is the rate of churn events per second: each deletes a random active instrument
	// and adds a new one (20 % of the adds reuse a recently deleted ISIN). 0 disables churn.
	// DefaultChurn gives a rate that scales with Instruments.
	Churn float64
	// Seed drives the deterministic random source: the same Options give the same feed.
	Seed uint64
	// Duration is the virtual length of the feed after Start; 0 means forever (not allowed
	// for a recording at SpeedMax).
	Duration time.Duration
	// Start is the virtual time of the first message (the initial ADDs): the timestamps of
	// a recording start here.
	Start time.Time
	// Speed paces the feed against the clock: 1 is real time, 10 is ten times faster,
	// SpeedMax (0) is as fast as possible.
	Speed float64
	// Skip starts the output this far into the feed: the messages before Start+Skip are
	// generated (so the model's state, and a server's active set, are those of that
	// moment) but neither sent nor recorded, and pacing starts at Start+Skip. A simulator
	// restarted with the same Options and Skip = how long the previous one ran continues
	// its feed instead of starting it over.
	Skip time.Duration
}

// DefaultChurn returns the default churn rate for n instruments: n/2000 events per second,
// e.g. 0.5/s for 1,000 instruments and 25/s for 50,000.
func DefaultChurn(n int) float64 { return float64(n) / 2000 }

// DefaultOptions returns the defaults: 1,000 instruments quoting every 2 s on average,
// DefaultChurn(1000) = 0.5 churn events/s, seed 1, forever, starting at DefaultStart, at
// real-time speed.
func DefaultOptions() Options {
	return Options{
		Instruments:   1000,
		QuoteInterval: 2 * time.Second,
		Churn:         DefaultChurn(1000),
		Seed:          1,
		Start:         DefaultStart(),
		Speed:         1,
	}
}

// Validate returns an error naming the first field that is out of range.
func (o *Options) Validate() error {
	switch {
	case o.Instruments < 1 || o.Instruments > MaxInstruments:
		return fmt.Errorf("simulator: Instruments %d: want 1..%d", o.Instruments, MaxInstruments)
	case o.QuoteInterval < MinQuoteInterval:
		return fmt.Errorf("simulator: QuoteInterval %v: want at least %v", o.QuoteInterval, MinQuoteInterval)
	case math.IsNaN(o.Churn) || o.Churn < 0 || o.Churn > MaxChurn:
		return fmt.Errorf("simulator: Churn %v: want 0..%v events per second", o.Churn, MaxChurn)
	case o.Duration < 0:
		return fmt.Errorf("simulator: Duration %v: want 0 (forever) or more", o.Duration)
	case o.Skip < 0 || o.Duration > 0 && o.Skip >= o.Duration:
		return fmt.Errorf("simulator: Skip %v: want 0 or more, and less than Duration", o.Skip)
	case o.Start.IsZero():
		return errors.New("simulator: Start is not set (see DefaultOptions)")
	case o.Start.Year() < 1970 || o.Start.Year() > 2200:
		return fmt.Errorf("simulator: Start %v: want a year in 1970..2200", o.Start)
	case math.IsNaN(o.Speed) || o.Speed < 0 || o.Speed > MaxSpeed:
		return fmt.Errorf("simulator: Speed %v: want SpeedMax (0) or a factor in (0, %v]", o.Speed, MaxSpeed)
	}
	return nil
}

// ParseSpeed parses a speed as given on the command line: "max" (SpeedMax), or a positive
// factor with an optional "x" suffix: "1x", "10x", "0.5x", "2".
func ParseSpeed(s string) (float64, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	if t == "max" {
		return SpeedMax, nil
	}
	t = strings.TrimSuffix(t, "x")
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f > MaxSpeed {
		return 0, fmt.Errorf("speed %q: want max or a positive factor like 1x, 10x, 0.5x", s)
	}
	return f, nil
}

// FormatSpeed prints a speed the way ParseSpeed reads it: "max" or "10x".
func FormatSpeed(speed float64) string {
	if speed == SpeedMax {
		return "max"
	}
	return strconv.FormatFloat(speed, 'g', -1, 64) + "x"
}
