package engine

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/diskguard"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/shard"
	"github.com/quotesdev/quotes/wal"
)

// Options configure an Engine. DefaultOptions gives the defaults; Dir is required.
type Options struct {
	// Dir is the data directory: the WAL and the embedded store live under it.
	Dir string
	// Sync is the WAL's durability mode.
	Sync wal.SyncMode
	// Settings change what is derived from the WAL; they are recorded in Dir on first use
	// and a later Open with different ones fails with *SettingsError (see Settings).
	Settings Settings
	// UseStoredSettings takes the settings recorded in Dir instead of Settings (commands
	// that only read: query, serve).
	UseStoredSettings bool
	// ResetSettings records Settings over different recorded ones instead of failing.
	ResetSettings bool
	// CheckpointEvery is the event time between state checkpoints.
	CheckpointEvery time.Duration
	// CheckpointRecords also takes a checkpoint once this many WAL records were applied
	// since the last one (0: pipeline.DefaultCheckpointRecords; negative: event time only).
	CheckpointRecords int
	// WALRetention keeps WAL records this long (event time) for backfill and replay of the
	// data directory, besides what the sinks need.
	WALRetention time.Duration

	// Shard, if set, keeps only the ISINs that package shard assigns to Shard.K of
	// Shard.N: the others' messages are dropped before the WAL (see shard.go). It is
	// recorded in Dir on first use.
	Shard shard.Spec

	// ClickHouse is the DSN of the ClickHouse sink (clickhouse://host:9000/db); empty: none.
	ClickHouse string
	// Archive is the Parquet archive target, a directory or s3://bucket/prefix; empty: none.
	Archive string
	// S3 configures the S3 client for s3:// archives and sources (TempDir is set by Open).
	S3 export.S3Options
	// Alerts configures the hot-event alert sinks (package alert).
	Alerts AlertOptions
	// SinkTimeout bounds how long Close keeps delivering to the sinks; the rest is
	// delivered on the next Open.
	SinkTimeout time.Duration
	// SinkFlushItems is the number of outbox items per ClickHouse flush.
	SinkFlushItems int
	// SinkMaxBackoff is the longest wait between retries of a failing sink.
	SinkMaxBackoff time.Duration
	// SinkStale is how long a registered sink (an outbox consumer, e.g. ClickHouse) may go
	// without any process running it before it is stale: reported on /metrics
	// (quotes_sink_stale) and in the log every hour, and no longer kept by outbox
	// retention: its undelivered items are dropped and recorded as lost, for a backfill
	// (see Engine.Sinks). Default 24h; negative: never stale.
	SinkStale time.Duration
	// CandleRetention is how long (event time before the watermark) closed candles stay in
	// the embedded store; older ones are dropped once the outbox consumers have them.
	// Default 30 days; negative: kept forever.
	CandleRetention time.Duration

	// ReadOnly opens the directory to serve it: no sinks run and nothing is appended.
	ReadOnly bool

	// Announce, if set, is written to <Dir>/running.json (with this process's pid) as soon
	// as the directory is locked — before recovery — with a fresh token in
	// <Dir>/running.token (mode 0600) that authenticates other commands on the same
	// directory to this process's API; both are removed by Close.
	Announce *Running
	// Token is the token written with Announce (NewToken); empty: a fresh one.
	Token string
	// RecoveryProgress, if set, is called during Open's recovery with the WAL records
	// re-applied so far and the number to re-apply.
	RecoveryProgress func(replayed, total uint64)

	// MinFreeDisk is the free space the data directory's file system must keep: Open
	// fails below it, and while it is low input pauses (appends wait, the live source is
	// paused) until space returns. Zero disables the check.
	MinFreeDisk diskguard.Threshold
	// DiskCheckEvery is how often free space is measured (default 1s); DiskStat, if set,
	// replaces statfs (tests).
	DiskCheckEvery time.Duration
	DiskStat       diskguard.StatFunc

	// Clock drives the tick loop, pacing and the sinks' retries; default the wall clock.
	Clock clock.Clock
	// Logger receives the engine's log lines; default slog.Default().
	Logger *slog.Logger
	// Registerer, if set, receives the engine's metrics (pipeline, sinks, ingest latency).
	Registerer prometheus.Registerer
}

// AlertOptions configure the alert sinks: each is a durable outbox consumer, like
// ClickHouse, that delivers the hot events (SPEC §12).
type AlertOptions struct {
	// NATS is nats://HOST:PORT/SUBJECT: JetStream, Nats-Msg-Id = event id (exactly once
	// within the stream's duplicate window). Empty: none.
	NATS string
	// Webhooks are URLs that receive a signed POST per event (at least once, with a stable
	// Idempotency-Key); Secret signs them (required with webhooks).
	Webhooks []string
	Secret   []byte
	// MinChange delivers only events whose move is at least this (zero: all); ISINs, if
	// not empty, only events of these instruments.
	MinChange hot.Threshold
	ISINs     []feed.ISIN
}

// Settings are the options that change derived results. They must be the same for every
// run over one data directory (and every backfill of it), so Open records them.
type Settings struct {
	// Grace is how long a quote waits for its instrument's ADD, and minutes stay open.
	Grace time.Duration `json:"grace"`
	// HotThreshold is the move, in percent, that makes a quote hot.
	HotThreshold hot.Threshold `json:"hotThreshold"`
	// HotWindow is how far back the reference price is.
	HotWindow time.Duration `json:"hotWindow"`
}

// DefaultSettings returns the defaults of SPEC §4: 5 s grace, 10 % over 5 minutes.
func DefaultSettings() Settings {
	return Settings{Grace: aggregate.DefaultGrace, HotThreshold: hot.DefaultThreshold(), HotWindow: 5 * time.Minute}
}

// Defaults of Options.SinkStale and Options.CandleRetention.
const (
	DefaultSinkStale       = 24 * time.Hour
	DefaultCandleRetention = 30 * 24 * time.Hour
)

// DefaultOptions returns the defaults for dir.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:             dir,
		Sync:            wal.SyncBatch,
		Settings:        DefaultSettings(),
		CheckpointEvery: 5 * time.Minute,
		WALRetention:    24 * time.Hour,
		SinkTimeout:     10 * time.Second,
		SinkFlushItems:  export.DefaultFlushItems,
		SinkMaxBackoff:  export.DefaultMaxBackoff,
		MinFreeDisk:     diskguard.DefaultThreshold,
		SinkStale:       DefaultSinkStale,
		CandleRetention: DefaultCandleRetention,
	}
}

// validate checks the options; its errors are *OptionError.
func (o *Options) validate() error {
	switch {
	case o.Dir == "":
		return &OptionError{Option: "data", Err: fmt.Errorf("must not be empty")}
	case o.Settings.Grace < 0:
		return &OptionError{Option: "grace", Err: fmt.Errorf("%s: must not be negative", o.Settings.Grace)}
	case o.Settings.HotWindow <= 0:
		return &OptionError{Option: "hot-window", Err: fmt.Errorf("%s: must be positive", o.Settings.HotWindow)}
	case o.Settings.HotThreshold.IsZero():
		return &OptionError{Option: "hot-threshold", Err: fmt.Errorf("must be positive")}
	case o.WALRetention < 0:
		return &OptionError{Option: "wal-retention", Err: fmt.Errorf("%s: must not be negative", o.WALRetention)}
	case o.SinkTimeout < 0:
		return &OptionError{Option: "sink-timeout", Err: fmt.Errorf("%s: must not be negative", o.SinkTimeout)}
	case o.SinkFlushItems <= 0:
		return &OptionError{Option: "sink-flush-items", Err: fmt.Errorf("%d: must be positive", o.SinkFlushItems)}
	}
	return nil
}

func (o *Options) defaults() {
	d := DefaultOptions(o.Dir)
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = d.CheckpointEvery
	}
	if o.SinkMaxBackoff <= 0 {
		o.SinkMaxBackoff = d.SinkMaxBackoff
	}
	if o.SinkStale == 0 {
		o.SinkStale = d.SinkStale
	}
	if o.CandleRetention == 0 {
		o.CandleRetention = d.CandleRetention
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}
