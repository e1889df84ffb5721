package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Running is what the process holding a data directory writes to <dir>/running.json, so
// that other commands on the same directory find it and ask it over its HTTP API instead
// of failing on the directory lock.
type Running struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
	HTTP    string `json:"http,omitempty"`
}

func (rp Running) httpNote() string {
	if rp.HTTP == "" {
		return ", no HTTP API"
	}
	return ", HTTP API on " + rp.HTTP
}

func runningPath(dir string) string { return filepath.Join(dir, "running.json") }

// Announce records this process as the holder of the engine's directory (command is the
// subcommand, http the API address or ""). The returned func removes the record.
func (e *Engine) Announce(command, http string) (func(), error) {
	b, err := json.Marshal(Running{PID: os.Getpid(), Command: command, HTTP: http})
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	path := runningPath(e.opts.Dir)
	if err := writeFileAtomic(path, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return func() { os.Remove(path) }, nil
}

// ReadRunning returns the process recorded in dir if it is still alive.
func ReadRunning(dir string) (Running, bool) {
	var rp Running
	b, err := os.ReadFile(runningPath(dir))
	if err != nil || json.Unmarshal(b, &rp) != nil || rp.PID <= 0 {
		return rp, false
	}
	if err := syscall.Kill(rp.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return rp, false
	}
	return rp, true
}
