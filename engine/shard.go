package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/shard"
)

// Sharding (SPEC §11): with Options.Shard set, Ingest and Replay drop the messages of ISINs
// that another shard owns — quotes, ADDs and DELETEs — before they reach the WAL, so the
// WAL, the store and every sink hold this shard's instruments only. The assignment is
// package shard's. The data directory records its shard in shard.json on first use; a later
// Open with another shard (or none) fails, since that would mix two assignments in one WAL.

// shardFile records the data directory's shard.
const shardFile = "shard.json"

type storedShard struct {
	Shard string `json:"shard"`
}

// ReadShard returns the shard recorded in dir (the zero Spec when none is).
func ReadShard(dir string) (shard.Spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, shardFile))
	if errors.Is(err, os.ErrNotExist) {
		return shard.Spec{}, nil
	}
	if err != nil {
		return shard.Spec{}, fmt.Errorf("read shard of %s: %w", dir, err)
	}
	var st storedShard
	if err := json.Unmarshal(b, &st); err != nil {
		return shard.Spec{}, fmt.Errorf("read %s: %w", filepath.Join(dir, shardFile), err)
	}
	sp, err := shard.Parse(st.Shard)
	if err != nil {
		return shard.Spec{}, fmt.Errorf("read %s: %w", filepath.Join(dir, shardFile), err)
	}
	return sp, nil
}

// settleShard checks Options.Shard against the shard recorded in the directory, and records
// it on first use. A read-only engine takes the recorded one.
func (o *Options) settleShard() error {
	if err := o.Shard.Validate(); err != nil {
		return &OptionError{Option: "shard", Err: err}
	}
	stored, err := ReadShard(o.Dir)
	if err != nil {
		return err
	}
	if o.ReadOnly {
		o.Shard = stored
		return nil
	}
	if stored == o.Shard {
		return nil
	}
	if !stored.IsZero() {
		want := "--shard " + stored.String()
		return &OptionError{Option: "shard", Err: fmt.Errorf("the data directory %s holds shard %s; pass %s (got %q)", o.Dir, stored, want, o.Shard.String())}
	}
	b, err := json.Marshal(storedShard{Shard: o.Shard.String()})
	if err != nil {
		return fmt.Errorf("record shard: %w", err)
	}
	return writeFileAtomic(filepath.Join(o.Dir, shardFile), append(b, '\n'), 0o644)
}

// Shard returns the engine's shard (the zero Spec when it keeps every ISIN).
func (e *Engine) Shard() shard.Spec { return e.opts.Shard }

// keepShard drops, in place, the messages of ISINs another shard owns, counting them.
func (e *Engine) keepShard(msgs []feed.Message) []feed.Message {
	if e.opts.Shard.IsZero() {
		return msgs
	}
	out, n := e.opts.Shard.Filter(msgs)
	e.foreign.Add(uint64(n))
	return out
}

// ForeignDropped returns the number of messages dropped because another shard owns their
// ISIN.
func (e *Engine) ForeignDropped() uint64 { return e.foreign.Load() }
