// Package gobin finds a program that `go install` put somewhere, for the test servers that
// start such programs (versitygw, nats-server): in PATH, $GOBIN, each $GOPATH/bin, or
// ~/go/bin (where `go install` puts it by default, also when PATH does not include it).
package gobin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Find returns the path of the program name.
func Find(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		for _, d := range filepath.SplitList(gp) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH, $GOBIN, $GOPATH/bin or ~/go/bin", name)
}
