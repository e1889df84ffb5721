package engine

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

func tokenPath(dir string) string { return filepath.Join(dir, "running.token") }

// announce records this process as the holder of dir, with a fresh token for its API.
// The returned func removes both files.
func announce(dir string, rp Running, token string) (string, func(), error) {
	rp.PID = os.Getpid()
	b, err := json.Marshal(rp)
	if err != nil {
		return "", nil, fmt.Errorf("announce: %w", err)
	}
	if token == "" {
		token = NewToken()
	}
	if err := writeFileAtomic(tokenPath(dir), []byte(token+"\n"), 0o600); err != nil {
		return "", nil, err
	}
	if err := writeFileAtomic(runningPath(dir), append(b, '\n'), 0o644); err != nil {
		os.Remove(tokenPath(dir))
		return "", nil, err
	}
	return token, func() { os.Remove(runningPath(dir)); os.Remove(tokenPath(dir)) }, nil
}

// NewToken returns a fresh random token (32 bytes, hex).
func NewToken() string {
	var raw [32]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	return hex.EncodeToString(raw[:])
}

// Token returns the token of the engine's API for other commands on its directory ("" when
// Options.Announce was not set).
func (e *Engine) Token() string { return e.token }

// ReadToken returns the token of the process holding dir (see Options.Announce).
func ReadToken(dir string) (string, error) {
	b, err := os.ReadFile(tokenPath(dir))
	if err != nil {
		return "", fmt.Errorf("read the token of the process holding %s: %w", dir, err)
	}
	return strings.TrimSpace(string(b)), nil
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
