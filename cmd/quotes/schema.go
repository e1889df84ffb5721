package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/schema"
)

// schemaOptions are the flags of `quotes schema print|apply`.
type schemaOptions struct {
	clickhouse string
	database   string
	cluster    string
	shards     int // print --cluster: the number of shards (apply reads it from the server)
}

// newSchemaCmd builds `quotes schema` with its subcommands print and apply.
func newSchemaCmd(a *app) *cobra.Command {
	o := &schemaOptions{}
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Print or apply the ClickHouse schema",
		Long: `schema prints or applies the ClickHouse DDL of the ClickHouse sink (SPEC §7): the
instruments history, the Null table candles_input the sink inserts into, the materialized
view that turns its rows into argMin/argMax/min/max/sum states, the AggregatingMergeTree
candles that holds them, the view candles_merged for hand-written queries, and the table
quotes_schema recording the schema version.

Every statement is CREATE … IF NOT EXISTS and runs on ClickHouse 18.16 (Debian's) up to
current releases: applying twice changes nothing. The sink (ingest/replay/backfill
--clickhouse) also applies it on first use. A database of an older schema version is
migrated (version 1 → 2: candles re-ordered so late corrections merge; resumable after a
crash; stop the writers of the older binary first).

With --cluster NAME (a cluster of the servers' <remote_servers>, with {shard} and {replica}
macros and ZooKeeper), apply connects to every node the server of --clickhouse lists for
NAME and creates there the database with Replicated*MergeTree tables, plus the database
<database>_all with Distributed tables over them, sharded by the ISIN hash of --shard (see
package shard). Each shard's writers (ingest/replay --shard K/N) use a DSN listing that
shard's replicas and the database; readers (query/serve --clickhouse) use <database>_all.`,
		Example: `  # the DDL for the database named in the DSN (default: "default")
  quotes schema print --clickhouse clickhouse://127.0.0.1:9000/quotes

  # create whatever is missing
  quotes schema apply --clickhouse clickhouse://127.0.0.1:9000/quotes

  # a replicated, sharded cluster (every node of cluster "quotes")
  quotes schema apply --cluster quotes --clickhouse clickhouse://127.0.0.1:9000/quotes
  quotes replay feed.jsonl --shard 0/2 --data ./s0 --clickhouse clickhouse://ch-s1r1:9000,ch-s1r2:9000/quotes
  quotes query instruments --clickhouse clickhouse://ch-s1r1:9000,ch-s2r1:9000/quotes_all`,
		Args: cobra.NoArgs,
	}
	addFlags := func(c *cobra.Command) {
		c.Flags().StringVar(&o.clickhouse, "clickhouse", "", "ClickHouse DSN, native protocol: clickhouse://[user[:password]@]host:9000/database")
		c.Flags().StringVar(&o.database, "database", "", "database name (default: the DSN's, else \"default\")")
		c.Flags().StringVar(&o.cluster, "cluster", "", "a replicated, sharded cluster of this name (remote_servers): replicated local tables on every node and Distributed tables in <database>_all")
	}

	printCmd := &cobra.Command{
		Use:   "print",
		Short: "Write the ClickHouse DDL to stdout",
		Long: `print writes the DDL, one statement per paragraph, each ending in a semicolon, for the
database of --database or --clickhouse (default "default"). No server is contacted.`,
		Example: `  quotes schema print
  quotes schema print --database quotes | clickhouse-client --multiquery`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := o.resolveDatabase()
			if err != nil {
				return err
			}
			if o.cluster != "" && o.shards < 1 {
				return usagef("schema print --cluster needs --shards N (the number of shards)")
			}
			return printSchema(cmd.OutOrStdout(), db, o.cluster, o.shards)
		},
	}
	addFlags(printCmd)
	printCmd.Flags().IntVar(&o.shards, "shards", 0, "with --cluster: the cluster's number of shards (the N of --shard K/N)")

	applyCmd := &cobra.Command{
		Use:   "apply",
		Short: "Create the ClickHouse schema where missing (idempotent)",
		Long: `apply connects to --clickhouse and creates the database, tables and views that are
missing, then records the schema version. It refuses a database whose recorded version is
newer than this binary's.`,
		Example: `  quotes schema apply --clickhouse clickhouse://127.0.0.1:9000/default
  QUOTES_CLICKHOUSE=clickhouse://db1:9000/quotes quotes schema apply`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.apply(cmd.Context(), cmd.OutOrStdout())
		},
	}
	addFlags(applyCmd)

	cmd.AddCommand(printCmd, applyCmd)
	return cmd
}

// resolveDatabase returns --database, else the DSN's database, else "default".
func (o *schemaOptions) resolveDatabase() (string, error) {
	db := schema.DefaultDatabase
	if o.clickhouse != "" {
		_, dsnDB, err := schema.ParseDSN(o.clickhouse)
		if err != nil {
			return "", usagef("--clickhouse: %w", err)
		}
		db = dsnDB
	}
	if o.database != "" {
		db = o.database
	}
	if strings.TrimSpace(db) == "" {
		return "", usagef("--database: empty name")
	}
	return db, nil
}

// printSchema writes the DDL of database to w (of one node of cluster, when set).
func printSchema(w io.Writer, database, cluster string, shards int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "-- quotes ClickHouse schema, version %d, database %s.\n", schema.Version, database)
	b.WriteString("-- Idempotent: every statement is CREATE … IF NOT EXISTS. `quotes schema apply` also\n")
	b.WriteString("-- records the version in quotes_schema.\n\n")
	stmts := schema.Statements(database)
	if cluster != "" {
		fmt.Fprintf(&b, "-- For every node of cluster %s (%d shards); Distributed tables in %s.\n\n", cluster, shards, schema.ClusterDatabase(database))
		stmts = schema.ClusterStatements(database, schema.Cluster{Name: cluster, Shards: shards})
	}
	for _, s := range stmts {
		b.WriteString(s)
		b.WriteString(";\n\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write schema: %w", err)
	}
	return nil
}

// apply connects and applies the schema.
func (o *schemaOptions) apply(ctx context.Context, w io.Writer) error {
	if o.clickhouse == "" {
		return usagef("schema apply: --clickhouse DSN is required (e.g. clickhouse://127.0.0.1:9000/default)")
	}
	db, err := o.resolveDatabase()
	if err != nil {
		return err
	}
	conn, _, err := schema.Open(ctx, o.clickhouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	if o.cluster != "" {
		return o.applyCluster(ctx, w, conn, db)
	}
	before, err := schema.RecordedVersion(ctx, conn, db)
	if err != nil {
		before = 0 // no version table yet
	}
	if err := schema.Apply(ctx, conn, db); err != nil {
		return err
	}
	if before == schema.Version {
		fmt.Fprintf(w, "schema version %d already in place in database %s\n", schema.Version, db)
	} else {
		fmt.Fprintf(w, "schema version %d applied to database %s\n", schema.Version, db)
	}
	return nil
}

// applyCluster applies the cluster layout to every node of o.cluster.
func (o *schemaOptions) applyCluster(ctx context.Context, w io.Writer, conn schema.Conn, db string) error {
	c, nodes, err := schema.ApplyToCluster(ctx, conn, o.clickhouse, db, o.cluster, func(n schema.Node) {
		fmt.Fprintf(w, "schema version %d in place on %s (shard %d, replica %d)\n", schema.Version, n.Addr(), n.Shard, n.Replica)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "cluster %s: %d nodes, %d shards; writers use database %s, readers %s\n", o.cluster, len(nodes), c.Shards, db, schema.ClusterDatabase(db))
	return nil
}
