package main

import (
	"errors"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/quotesdev/quotes/alert"
	"github.com/quotesdev/quotes/engine"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/hot"
	"github.com/quotesdev/quotes/pipeline"
	"github.com/quotesdev/quotes/shard"
	"github.com/quotesdev/quotes/wal"
)

// dataOptions are the flags that open a data directory. Which of them a command binds
// depends on what it does: every command binds --data; those that derive (ingest, replay,
// backfill) bind the settings; those that append (ingest, replay) the WAL flags.
type dataOptions struct {
	dir           string
	sync          string
	settings      engine.Settings
	resetSettings bool
	checkpoint    time.Duration
	ckptRecords   int
	walRetention  time.Duration
	candleRetain  time.Duration
	shard         string
	flags         *pflag.FlagSet // where the settings are bound (nil: not bound)
}

func (o *dataOptions) bindDir(f *pflag.FlagSet) {
	f.StringVar(&o.dir, "data", "./data", "data directory (WAL and embedded store)")
}

// bindSettings binds the flags that change what is derived; they are recorded in the data
// directory on first use and must be the same for every later run on it.
func (o *dataOptions) bindSettings(f *pflag.FlagSet) {
	o.flags = f
	o.settings = engine.DefaultSettings()
	f.DurationVar(&o.settings.Grace, "grace", o.settings.Grace, "how long a quote for an inactive ISIN waits for its ADD; minutes also stay open this long (recorded in --data)")
	f.Var(&o.settings.HotThreshold, "hot-threshold", "hot when the move against the reference price exceeds this many percent (recorded in --data)")
	f.DurationVar(&o.settings.HotWindow, "hot-window", o.settings.HotWindow, "the reference price is the latest one at or before this long ago (recorded in --data)")
	f.BoolVar(&o.resetSettings, "reset-settings", false, "record --grace/--hot-threshold/--hot-window over different recorded ones (history keeps the old ones until a backfill)")
}

// bindWAL binds the flags of commands that append to the WAL.
func (o *dataOptions) bindWAL(f *pflag.FlagSet) {
	f.StringVar(&o.sync, "sync", "batch", "WAL durability: always (fsync before each ack), batch (group fsync every few ms), none (OS page cache)")
	f.DurationVar(&o.checkpoint, "checkpoint-every", 5*time.Minute, "event time between state checkpoints (shorter: faster restart, more writes)")
	f.IntVar(&o.ckptRecords, "checkpoint-records", pipeline.DefaultCheckpointRecords, "also checkpoint once this many WAL records were applied since the last checkpoint: bounds the restart time at any feed rate (negative: event time only)")
	f.DurationVar(&o.walRetention, "wal-retention", 24*time.Hour, "keep WAL records this long (event time) for backfill --source wal and replay DATA_DIR, besides what sinks need")
	f.DurationVar(&o.candleRetain, "candle-retention", engine.DefaultCandleRetention, "keep closed candles in the embedded store this long (event time before the newest message); older ones are dropped once delivered to the sinks (negative: forever)")
}

// bindShard binds --shard (ingest, replay).
func (o *dataOptions) bindShard(f *pflag.FlagSet) {
	f.StringVar(&o.shard, "shard", "", "keep only the ISINs of shard K of N (K/N, e.g. 0/2): the others' quotes and instrument events are dropped before the WAL (package shard documents the hash; recorded in --data)")
}

// engineOptions maps the flags to engine options.
func (o *dataOptions) engineOptions(logger *slog.Logger, reg prometheus.Registerer) (engine.Options, error) {
	opts := engine.DefaultOptions(o.dir)
	if o.sync != "" {
		mode, err := wal.ParseSyncMode(o.sync)
		if err != nil {
			return opts, usagef("--sync %q: want always, batch or none", o.sync)
		}
		opts.Sync = mode
	}
	if o.flags == nil {
		opts.UseStoredSettings = true // the command binds no settings: use the recorded ones
	} else {
		// A setting not given on the command line (or environment) is the recorded one;
		// one given is checked against it by the engine.
		s := o.settings
		stored, ok, err := engine.ReadSettings(o.dir)
		if err != nil {
			return opts, err
		}
		if ok {
			if !o.flags.Changed("grace") {
				s.Grace = stored.Grace
			}
			if !o.flags.Changed("hot-threshold") {
				s.HotThreshold = stored.HotThreshold
			}
			if !o.flags.Changed("hot-window") {
				s.HotWindow = stored.HotWindow
			}
		}
		opts.Settings = s
	}
	opts.ResetSettings = o.resetSettings
	if o.shard != "" {
		sp, err := shard.Parse(o.shard)
		if err != nil {
			return opts, usagef("--shard: %v", err)
		}
		opts.Shard = sp
	}
	if o.checkpoint > 0 {
		opts.CheckpointEvery = o.checkpoint
	}
	if o.ckptRecords != 0 {
		opts.CheckpointRecords = o.ckptRecords
	}
	if o.walRetention != 0 {
		opts.WALRetention = o.walRetention
	}
	if o.candleRetain != 0 {
		opts.CandleRetention = o.candleRetain
	}
	opts.Logger = logger
	opts.Registerer = reg
	return opts, nil
}

// sinkOptions are the flags of the sinks besides the embedded store (ingest, replay).
type sinkOptions struct {
	clickhouse  string
	sinkTimeout time.Duration
	flushItems  int
	maxBackoff  time.Duration
	stale       time.Duration
	archive     archiveOptions
	alerts      alertOptions
}

// alertOptions are the flags of the alert sinks (ingest, replay).
type alertOptions struct {
	nats      string
	webhooks  []string
	secret    string
	minChange hot.Threshold
	isinFile  string
}

func (o *alertOptions) bind(f *pflag.FlagSet) {
	f.StringVar(&o.nats, "alerts-nats", "", "publish hot events to NATS JetStream, nats://HOST:PORT/SUBJECT (Nats-Msg-Id = event id: exactly once)")
	o.bindWebhook(f)
	f.Var(&o.minChange, "alerts-min-change", "deliver only alerts that moved at least this many percent (default: every hot event)")
	f.StringVar(&o.isinFile, "alerts-isins", "", "deliver only alerts of the ISINs in this file (one per line, # comments)")
}

func (o *alertOptions) bindWebhook(f *pflag.FlagSet) {
	f.StringArrayVar(&o.webhooks, "alerts-webhook", nil, "POST each hot event to this URL, signed (repeatable; at least once, Idempotency-Key = event id)")
	f.StringVar(&o.secret, "alerts-webhook-secret", "", "HMAC-SHA256 key of the X-Quotes-Signature header (required with --alerts-webhook; prefer QUOTES_ALERTS_WEBHOOK_SECRET)")
}

// options validates the flags and returns the engine's alert options.
func (o *alertOptions) options() (engine.AlertOptions, error) {
	a := engine.AlertOptions{NATS: o.nats, Webhooks: o.webhooks, Secret: []byte(o.secret), MinChange: o.minChange}
	if o.nats != "" {
		if _, _, err := alert.ParseNATSURL(o.nats); err != nil {
			return a, usagef("--alerts-nats %q: %v", o.nats, err)
		}
	}
	for _, u := range o.webhooks {
		if pu, err := url.Parse(u); err != nil || pu.Scheme != "http" && pu.Scheme != "https" || pu.Host == "" {
			return a, usagef("--alerts-webhook %q: want an http:// or https:// URL", u)
		}
	}
	if len(o.webhooks) > 0 && o.secret == "" {
		return a, usagef("--alerts-webhook needs --alerts-webhook-secret (or QUOTES_ALERTS_WEBHOOK_SECRET) to sign the requests")
	}
	if o.isinFile != "" {
		isins, err := alert.ReadISINFile(o.isinFile)
		if err != nil {
			return a, usagef("--alerts-isins: %v", err)
		}
		a.ISINs = isins
	}
	return a, nil
}

func (o *sinkOptions) bind(f *pflag.FlagSet, timeoutDefault time.Duration, timeoutHelp string) {
	f.StringVar(&o.clickhouse, "clickhouse", "", "also deliver candles and instrument events to ClickHouse, exactly once (clickhouse://host:9000/database)")
	f.DurationVar(&o.sinkTimeout, "sink-timeout", timeoutDefault, timeoutHelp)
	f.IntVar(&o.flushItems, "sink-flush-items", export.DefaultFlushItems, "items per flush to a sink")
	f.MarkHidden("sink-flush-items")
	f.DurationVar(&o.maxBackoff, "sink-max-backoff", export.DefaultMaxBackoff, "longest wait between retries of a failing sink")
	f.MarkHidden("sink-max-backoff")
	f.DurationVar(&o.stale, "sink-stale", engine.DefaultSinkStale, "a registered sink (see `quotes sinks list`) that no run has configured for this long is stale: reported, and the outbox is no longer kept for it (negative: never)")
	f.StringVar(&o.archive.target, "archive", "", "also write hourly Parquet files of the raw feed and the candles to a directory or s3://bucket/prefix (credentials and region from the standard AWS environment)")
	o.archive.bindS3(f)
	o.alerts.bind(f)
}

// apply sets the sink options of opts (usage errors for bad alert flags).
func (o *sinkOptions) apply(opts *engine.Options) error {
	var err error
	if opts.Alerts, err = o.alerts.options(); err != nil {
		return err
	}
	opts.ClickHouse = o.clickhouse
	opts.SinkTimeout = o.sinkTimeout
	opts.SinkFlushItems = o.flushItems
	opts.SinkMaxBackoff = o.maxBackoff
	opts.SinkStale = o.stale
	opts.Archive = o.archive.target
	opts.S3 = o.archive.s3Options()
	return nil
}

// archiveOptions are the S3 flags of commands that read or write an archive.
type archiveOptions struct {
	target     string // --archive DIR | s3://bucket/prefix
	s3Endpoint string // --s3-endpoint URL
}

func (o *archiveOptions) bindS3(f *pflag.FlagSet) {
	f.StringVar(&o.s3Endpoint, "s3-endpoint", "", "S3-compatible endpoint URL for s3:// archives (e.g. http://127.0.0.1:7070; path-style addressing); default AWS")
}

// s3Options returns the S3 client options from the flags and the standard AWS
// environment: credentials through the AWS chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, ~/.aws/credentials with AWS_PROFILE, instance roles), the region from
// AWS_REGION or AWS_DEFAULT_REGION. cmd is the only place that reads the environment.
func (o *archiveOptions) s3Options() export.S3Options {
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	return export.S3Options{Endpoint: o.s3Endpoint, Region: region, Credentials: export.AWSCredentials(), TempDir: os.TempDir()}
}

// engineError maps the engine's option and settings errors to usage errors (exit 2).
func engineError(err error) error {
	var oe *engine.OptionError
	var se *engine.SettingsError
	if errors.As(err, &oe) || errors.As(err, &se) {
		return &usageError{err}
	}
	return err
}

func dirExists(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && st.IsDir()
}
