package engine

import (
	"errors"
	"fmt"
)

// ErrLocked means another process holds the data directory (Badger's directory lock).
// The error wrapping it names the process when it announced itself (see Running).
var ErrLocked = errors.New("data directory locked")

// ErrClosed is returned by appends and runs that start after Close began.
var ErrClosed = errors.New("engine closed")

// ErrNoDataDir means a command that reads a data directory found none.
var ErrNoDataDir = errors.New("no data directory")

// OptionError is an invalid option (a usage error in the CLI): Option names it as its flag.
type OptionError struct {
	Option string
	Err    error
}

func (e *OptionError) Error() string { return fmt.Sprintf("--%s %v", e.Option, e.Err) }
func (e *OptionError) Unwrap() error { return e.Err }

// SettingsError means Options.Settings differ from those recorded in the data directory.
type SettingsError struct {
	Dir string
	// Setting is the flag name of the first difference; Stored and Requested its values.
	Setting, Stored, Requested string
}

func (e *SettingsError) Error() string {
	return fmt.Sprintf("--%s %s differs from the %s recorded in %s (derived results depend on it): "+
		"run with --%s %s, or pass --reset-settings to record the new value (history keeps the old one until a backfill recomputes it)",
		e.Setting, e.Requested, e.Stored, e.Dir, e.Setting, e.Stored)
}
