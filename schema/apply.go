package schema

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
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

// Apply creates whatever of the schema is missing in database, migrates a version 1
// database to this version, and records Version. It is idempotent and crash-safe: every
// step can be interrupted and Apply run again (see migrate). It fails, changing nothing,
// when the database records a newer version than this binary knows.
//
// A database laid out by ApplyCluster (replicated or Distributed tables) is only checked:
// its schema is changed with ApplyCluster.
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
	engine, err := tableEngine(ctx, conn, database, "candles")
	if err != nil {
		return err
	}
	if strings.HasPrefix(engine, "Replicated") || engine == "Distributed" {
		if recorded != Version {
			return fmt.Errorf("clickhouse database %s is a cluster's (%s) with schema version %d, want %d: run `quotes schema apply --cluster NAME`", database, engine, recorded, Version)
		}
		return nil
	}
	if err := migrate(ctx, conn, database); err != nil {
		return err
	}
	for _, s := range stmts[2:] {
		if err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("apply schema to %s: %s: %w", database, firstLine(s), err)
		}
	}
	if recorded != Version {
		if err := recordVersion(ctx, conn, database); err != nil {
			return err
		}
	}
	// The version 1 table a migration kept until the new one was in place.
	if err := conn.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.candles_v1", QuoteIdent(database))); err != nil {
		return fmt.Errorf("apply schema to %s: drop the migrated candles_v1: %w", database, err)
	}
	return nil
}

// recordVersion records Version in database's quotes_schema.
func recordVersion(ctx context.Context, conn driver.Conn, database string) error {
	// INSERT … SELECT: over the native protocol 18.16 ignores inline VALUES data and waits
	// for data blocks instead.
	q := fmt.Sprintf("INSERT INTO %s.quotes_schema (version, applied_at) SELECT toUInt32(%d), now()", QuoteIdent(database), Version)
	if err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("apply schema to %s: record version %d: %w", database, Version, err)
	}
	return nil
}

// tableEngine returns the engine of database.table ("" when it does not exist).
func tableEngine(ctx context.Context, conn driver.Conn, database, table string) (string, error) {
	q := fmt.Sprintf("SELECT engine FROM system.tables WHERE database = %s AND name = %s", quoteString(database), quoteString(table))
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return "", fmt.Errorf("read the engine of %s.%s: %w", database, table, err)
	}
	defer rows.Close()
	var engine string
	if rows.Next() {
		if err := rows.Scan(&engine); err != nil {
			return "", fmt.Errorf("read the engine of %s.%s: %w", database, table, err)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("read the engine of %s.%s: %w", database, table, err)
	}
	return engine, nil
}

// hasColumn reports whether database.table has the column.
func hasColumn(ctx context.Context, conn driver.Conn, database, table, column string) (bool, error) {
	var n uint64
	q := fmt.Sprintf("SELECT count() FROM system.columns WHERE database = %s AND table = %s AND name = %s",
		quoteString(database), quoteString(table), quoteString(column))
	if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
		return false, fmt.Errorf("read the columns of %s.%s: %w", database, table, err)
	}
	return n > 0, nil
}

// migrate brings a version 1 layout (candles ordered by …, flush_id, chunk) to this
// version's. Every step is idempotent and the state is read from the tables themselves,
// so a crash anywhere is repaired by running it again:
//
//  1. drop candles_mv and candles_input (they hold no data; an older binary still running
//     now fails to insert, and its outbox keeps the data until it is upgraded);
//  2. while candles has the flush_id column: (re)create candles_migrating, copy every row
//     into it (the markers re-keyed by flush id and chunk), then rename candles to
//     candles_v1 and candles_migrating to candles;
//  3. when a crash fell between the two renames, candles is missing and
//     candles_migrating complete: rename it.
//
// Apply then creates the new candles_input and views, records the version and drops
// candles_v1.
func migrate(ctx context.Context, conn driver.Conn, database string) error {
	db := QuoteIdent(database)
	exec := func(what, q string) error {
		if err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("migrate %s to schema version %d: %s: %w", database, Version, what, err)
		}
		return nil
	}
	candles, err := tableEngine(ctx, conn, database, "candles")
	if err != nil {
		return err
	}
	migrating, err := tableEngine(ctx, conn, database, "candles_migrating")
	if err != nil {
		return err
	}
	if candles == "" {
		if migrating != "" {
			// step 3: the copy is complete (the renames come after it)
			return exec("finish the rename", fmt.Sprintf("RENAME TABLE %s.candles_migrating TO %s.candles", db, db))
		}
		return nil // a fresh database
	}
	old, err := hasColumn(ctx, conn, database, "candles", "flush_id")
	if err != nil || !old {
		return err
	}
	if err := exec("drop candles_mv", fmt.Sprintf("DROP TABLE IF EXISTS %s.candles_mv", db)); err != nil {
		return err
	}
	if err := exec("drop candles_input", fmt.Sprintf("DROP TABLE IF EXISTS %s.candles_input", db)); err != nil {
		return err
	}
	if err := exec("drop an unfinished copy", fmt.Sprintf("DROP TABLE IF EXISTS %s.candles_migrating", db)); err != nil {
		return err
	}
	create := strings.NewReplacer("{db}", db, "{table}", "candles_migrating", "{candles_engine}", "AggregatingMergeTree()").Replace(candlesTable)
	if err := exec("create candles_migrating", create); err != nil {
		return err
	}
	copyRows := fmt.Sprintf(`INSERT INTO %[1]s.candles_migrating (isin, incarnation, minute, open, open_at, close, close_at, high, low, quotes)
SELECT isin,
    if(isin = %[2]s, flush_id, incarnation),
    if(isin = %[2]s, minute + chunk, minute),
    open, open_at, close, close_at, high, low, quotes
FROM %[1]s.candles`, db, MarkerISINSQL)
	if err := exec("copy candles", copyRows); err != nil {
		return err
	}
	return exec("swap the tables", fmt.Sprintf("RENAME TABLE %[1]s.candles TO %[1]s.candles_v1, %[1]s.candles_migrating TO %[1]s.candles", db))
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

// Node is one server of a cluster as system.clusters lists it.
type Node struct {
	Shard, Replica int    // 1-based, as in system.clusters
	Host           string // host_address (else host_name)
	Port           int    // native protocol port
}

// Addr returns host:port.
func (n Node) Addr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.Port)) }

// ClusterNodes returns the nodes of the cluster name as the server of conn knows it
// (system.clusters, from its <remote_servers>), ordered by shard and replica.
func ClusterNodes(ctx context.Context, conn driver.Conn, name string) ([]Node, error) {
	q := fmt.Sprintf(`SELECT toUInt32(shard_num), toUInt32(replica_num), host_name, host_address, toUInt32(port)
FROM system.clusters WHERE cluster = %s ORDER BY shard_num, replica_num`, quoteString(name))
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read cluster %s from system.clusters: %w", name, err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		var (
			sh, rep, port uint32
			host, addr    string
		)
		if err := rows.Scan(&sh, &rep, &host, &addr, &port); err != nil {
			return nil, fmt.Errorf("read cluster %s from system.clusters: %w", name, err)
		}
		if addr == "" {
			addr = host
		}
		out = append(out, Node{Shard: int(sh), Replica: int(rep), Host: addr, Port: int(port)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cluster %s from system.clusters: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster %s: no such cluster in the server's remote_servers (system.clusters)", name)
	}
	return out, nil
}

// Shards returns the number of shards among nodes.
func Shards(nodes []Node) int {
	n := 0
	for _, nd := range nodes {
		n = max(n, nd.Shard)
	}
	return n
}

// ApplyCluster applies the cluster layout (ClusterStatements) to one node, conn: the
// replicated local tables in database and the Distributed tables in
// ClusterDatabase(database), then records Version in both. Run it on every node of the
// cluster (cmd/quotes does, from ClusterNodes); it is idempotent. It fails, changing
// nothing, on a newer recorded version, and on a database that holds a single-server
// (non-replicated) schema.
func ApplyCluster(ctx context.Context, conn driver.Conn, database string, c Cluster) error {
	if database == "" || c.Name == "" || c.Shards < 1 {
		return fmt.Errorf("apply cluster schema: database %q, cluster %q, %d shards", database, c.Name, c.Shards)
	}
	stmts := ClusterStatements(database, c)
	dist := ClusterDatabase(database)
	for _, s := range stmts[:2] {
		if err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("apply cluster schema to %s: %s: %w", database, firstLine(s), err)
		}
	}
	recorded, err := RecordedVersion(ctx, conn, database)
	if err != nil {
		return err
	}
	if recorded > Version {
		return fmt.Errorf("apply cluster schema to %s: the database has schema version %d, newer than this binary's %d", database, recorded, Version)
	}
	engine, err := tableEngine(ctx, conn, database, "candles")
	if err != nil {
		return err
	}
	if engine != "" && !strings.HasPrefix(engine, "Replicated") {
		return fmt.Errorf("apply cluster schema to %s: its candles table is a single server's (%s), not replicated: use another database", database, engine)
	}
	for _, s := range stmts[2:] {
		if err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("apply cluster schema to %s: %s: %w", database, firstLine(s), err)
		}
	}
	for _, d := range []string{database, dist} {
		v, err := RecordedVersion(ctx, conn, d)
		if err != nil {
			return err
		}
		if v != Version {
			if err := recordVersion(ctx, conn, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// ApplyToCluster applies the cluster layout of database to every node of cluster name, as
// conn (opened from dsn) lists them in system.clusters: each node is reached with dsn's
// options at its own address. done, if set, is told of each node once it is done.
func ApplyToCluster(ctx context.Context, conn driver.Conn, dsn, database, name string, done func(Node)) (Cluster, []Node, error) {
	nodes, err := ClusterNodes(ctx, conn, name)
	if err != nil {
		return Cluster{}, nil, err
	}
	opts, _, err := ParseDSN(dsn)
	if err != nil {
		return Cluster{}, nil, err
	}
	c := Cluster{Name: name, Shards: Shards(nodes)}
	for _, n := range nodes {
		nopts := *opts
		nopts.Addr = []string{n.Addr()}
		nc, err := clickhouse.Open(&nopts)
		if err != nil {
			return c, nodes, fmt.Errorf("cluster %s node %s: %w", name, n.Addr(), err)
		}
		err = ApplyCluster(ctx, nc, database, c)
		nc.Close()
		if err != nil {
			return c, nodes, fmt.Errorf("cluster %s node %s (shard %d replica %d): %w", name, n.Addr(), n.Shard, n.Replica, err)
		}
		if done != nil {
			done(n)
		}
	}
	return c, nodes, nil
}

// Conn is a ClickHouse connection (clickhouse-go's driver.Conn), so that callers need not
// import the driver.
type Conn = driver.Conn
