package schema

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ParseDSN parses a ClickHouse DSN (clickhouse://[user[:password]@]host:port/database?…, the
// native protocol) into clickhouse-go options that select no database, and returns the
// DSN's database ("default" when it names none) separately: queries name the database
// explicitly, and Apply can create it.
//
// Only the native protocol works with every version: clickhouse-go's HTTP transport sends
// the setting client_protocol_version, which 18.16 rejects ("Unknown setting").
func ParseDSN(dsn string) (*clickhouse.Options, string, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("clickhouse DSN %q: %w", dsn, err)
	}
	if opts.Protocol != clickhouse.Native {
		return nil, "", fmt.Errorf("clickhouse DSN %q: only the native protocol is supported (clickhouse://host:9000/database)", dsn)
	}
	database := opts.Auth.Database
	if database == "" {
		database = DefaultDatabase
	}
	opts.Auth.Database = ""
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	return opts, database, nil
}

// Open connects to the server of dsn (see ParseDSN), checks that it answers, and returns
// the connection and the DSN's database.
func Open(ctx context.Context, dsn string) (driver.Conn, string, error) {
	opts, database, err := ParseDSN(dsn)
	if err != nil {
		return nil, "", err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, "", fmt.Errorf("open clickhouse %s: %w", strings.Join(opts.Addr, ","), err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("connect to clickhouse %s: %w", strings.Join(opts.Addr, ","), err)
	}
	return conn, database, nil
}

// Apply creates whatever of the schema is missing in database and records Version. It is
// idempotent. It fails, changing nothing, when the database records a newer version than
// this binary knows.
func Apply(ctx context.Context, conn driver.Conn, database string) error {
	if database == "" {
		return errors.New("apply schema: empty database name")
	}
	stmts := Statements(database)
	// The database and the version table first, to check the recorded version before
	// anything else changes.
	for _, s := range stmts[:2] {
		if err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("apply schema to %s: %s: %w", database, firstLine(s), err)
		}
	}
	recorded, err := RecordedVersion(ctx, conn, database)
	if err != nil {
		return err
	}
	if recorded > Version {
		return fmt.Errorf("apply schema to %s: the database has schema version %d, newer than this binary's %d", database, recorded, Version)
	}
	for _, s := range stmts[2:] {
		if err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("apply schema to %s: %s: %w", database, firstLine(s), err)
		}
	}
	if recorded == Version {
		return nil
	}
	// INSERT … SELECT: over the native protocol 18.16 ignores inline VALUES data and waits
	// for data blocks instead.
	q := fmt.Sprintf("INSERT INTO %s.quotes_schema (version, applied_at) SELECT toUInt32(%d), now()", QuoteIdent(database), Version)
	if err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("apply schema to %s: record version %d: %w", database, Version, err)
	}
	return nil
}

// RecordedVersion returns the largest schema version recorded in database (0 when none).
func RecordedVersion(ctx context.Context, conn driver.Conn, database string) (uint32, error) {
	var v uint32
	q := fmt.Sprintf("SELECT toUInt32(max(version)) FROM %s.quotes_schema", QuoteIdent(database))
	if err := conn.QueryRow(ctx, q).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version of %s: %w", database, err)
	}
	return v, nil
}

// Check returns an error unless database records exactly Version: the sink's start-up test
// that `quotes schema apply` ran.
func Check(ctx context.Context, conn driver.Conn, database string) error {
	v, err := RecordedVersion(ctx, conn, database)
	if err != nil {
		return fmt.Errorf("%w (run `quotes schema apply`)", err)
	}
	if v != Version {
		return fmt.Errorf("clickhouse database %s has schema version %d, want %d (run `quotes schema apply`)", database, v, Version)
	}
	return nil
}

// firstLine returns the first line of a statement, for error messages.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
