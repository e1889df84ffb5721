// Command chcluster starts a local replicated, sharded ClickHouse cluster for trying
// `--shard` by hand: ZooKeeper and 2 shards × 2 replicas of clickhouse-server on free
// loopback ports, under DIR, left running (scripts/cluster.sh up DIR runs it). It applies
// the cluster schema to database "quotes" and prints shell export lines:
//
//	QUOTES_CH_SHARD0, QUOTES_CH_SHARD1   DSNs of each shard's two replicas (writers)
//	QUOTES_CH_CLUSTER                    a DSN of every node's Distributed tables (readers)
//	QUOTES_CH_CLUSTER_NAME               the cluster's name
//	QUOTES_CH_SHARD0_PIDS, …_SHARD1_PIDS the servers' pids, in the DSN's order
//	QUOTES_ZK_PID                        ZooKeeper's pid
//
// It writes them to DIR/cluster.env too, and every pid to DIR/pids (scripts/cluster.sh down
// DIR stops them).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/schema"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: chcluster DIR")
		os.Exit(2)
	}
	if err := up(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "chcluster:", err)
		os.Exit(1)
	}
}

const database = "quotes"

func up(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "pids")); err == nil {
		return fmt.Errorf("%s already holds a cluster (scripts/cluster.sh down %s first)", dir, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	c, err := chtest.StartClusterProcess(dir, chtest.ClusterOptions{Shards: 2, Replicas: 2, Detached: true})
	if err != nil {
		return err
	}
	var pids []string
	pids = append(pids, fmt.Sprint(c.ZooKeeper.PID()))
	for k := range c.Nodes {
		for _, p := range c.ShardPIDs(k) {
			pids = append(pids, fmt.Sprint(p))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "pids"), []byte(strings.Join(pids, "\n")+"\n"), 0o644); err != nil {
		c.Stop()
		return fmt.Errorf("write pids: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shards := schema.Cluster{Name: c.Name, Shards: len(c.Nodes)}
	for _, row := range c.Nodes {
		for _, s := range row {
			conn, _, err := schema.Open(ctx, s.DSN)
			if err != nil {
				c.Stop()
				return err
			}
			err = schema.ApplyCluster(ctx, conn, database, shards)
			conn.Close()
			if err != nil {
				c.Stop()
				return fmt.Errorf("apply the cluster schema on %s: %w", s.Addr, err)
			}
		}
	}
	var b strings.Builder
	for k := range c.Nodes {
		fmt.Fprintf(&b, "export QUOTES_CH_SHARD%d='%s'\n", k, c.ShardDSN(k, database))
	}
	fmt.Fprintf(&b, "export QUOTES_CH_CLUSTER='%s'\n", c.AllDSN(schema.ClusterDatabase(database)))
	fmt.Fprintf(&b, "export QUOTES_CH_CLUSTER_NAME='%s'\n", c.Name)
	for k := range c.Nodes {
		ps := make([]string, 0, 2)
		for _, p := range c.ShardPIDs(k) {
			ps = append(ps, fmt.Sprint(p))
		}
		fmt.Fprintf(&b, "export QUOTES_CH_SHARD%d_PIDS='%s'\n", k, strings.Join(ps, " "))
	}
	fmt.Fprintf(&b, "export QUOTES_ZK_PID='%d'\n", c.ZooKeeper.PID())
	if err := os.WriteFile(filepath.Join(dir, "cluster.env"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write cluster.env: %w", err)
	}
	fmt.Print(b.String())
	return nil
}
