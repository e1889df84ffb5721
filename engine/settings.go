package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/quotesdev/quotes/hot"
)

// settingsFile is where a data directory records its Settings.
const settingsFile = "settings.json"

// storedSettings is the file's layout: durations as Go duration strings, for people.
type storedSettings struct {
	Grace        string `json:"grace"`
	HotThreshold string `json:"hotThreshold"`
	HotWindow    string `json:"hotWindow"`
}

func (s Settings) stored() storedSettings {
	return storedSettings{Grace: s.Grace.String(), HotThreshold: s.HotThreshold.String(), HotWindow: s.HotWindow.String()}
}

func (ss storedSettings) settings() (Settings, error) {
	var s Settings
	var err error
	if s.Grace, err = time.ParseDuration(ss.Grace); err != nil {
		return s, fmt.Errorf("grace %q: %w", ss.Grace, err)
	}
	if s.HotThreshold, err = hot.ParseThreshold(ss.HotThreshold); err != nil {
		return s, fmt.Errorf("hotThreshold %q: %w", ss.HotThreshold, err)
	}
	if s.HotWindow, err = time.ParseDuration(ss.HotWindow); err != nil {
		return s, fmt.Errorf("hotWindow %q: %w", ss.HotWindow, err)
	}
	return s, nil
}

// ReadSettings returns the settings recorded in dir; ok is false when none are.
func ReadSettings(dir string) (s Settings, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, settingsFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("read settings: %w", err)
	}
	var ss storedSettings
	if err := json.Unmarshal(b, &ss); err != nil {
		return s, false, fmt.Errorf("read settings %s: %w", filepath.Join(dir, settingsFile), err)
	}
	if s, err = ss.settings(); err != nil {
		return s, false, fmt.Errorf("read settings %s: %w", filepath.Join(dir, settingsFile), err)
	}
	return s, true, nil
}

// writeSettings records s in dir atomically (temporary file, fsync, rename).
func writeSettings(dir string, s Settings) error {
	b, err := json.MarshalIndent(s.stored(), "", "  ")
	if err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, settingsFile), append(b, '\n'), 0o644)
}

// diff returns the first setting (by flag name) in which s and o differ.
func (s Settings) diff(o Settings) (name, a, b string, differ bool) {
	switch {
	case s.Grace != o.Grace:
		return "grace", s.Grace.String(), o.Grace.String(), true
	case s.HotThreshold != o.HotThreshold:
		return "hot-threshold", s.HotThreshold.String(), o.HotThreshold.String(), true
	case s.HotWindow != o.HotWindow:
		return "hot-window", s.HotWindow.String(), o.HotWindow.String(), true
	}
	return "", "", "", false
}

// settle decides the settings of an Open of dir: the recorded ones for a read-only
// command, else the requested ones, checked against (or recorded as) the directory's.
func settle(dir string, requested Settings, useStored, reset bool) (Settings, error) {
	stored, ok, err := ReadSettings(dir)
	if err != nil {
		return requested, err
	}
	if useStored {
		if ok {
			return stored, nil
		}
		return requested, nil
	}
	if ok && !reset {
		if name, have, want, differ := stored.diff(requested); differ {
			return requested, &SettingsError{Dir: dir, Setting: name, Stored: have, Requested: want}
		}
		return requested, nil
	}
	if ok && stored == requested {
		return requested, nil
	}
	return requested, writeSettings(dir, requested)
}

// writeFileAtomic writes b to path through a temporary file, fsync and rename.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
