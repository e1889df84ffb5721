package chtest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/quotesdev/quotes/internal/zktest"
)

// ClusterName is the name of the clusters StartCluster makes (their <remote_servers> entry).
const ClusterName = "quotes"

// Cluster is a private replicated, sharded ClickHouse cluster: a ZooKeeper server and
// shards × replicas clickhouse-server processes on loopback, each with a generated config
// naming the cluster in <remote_servers> (internal_replication on), its {shard} (1-based)
// and {replica} macros, ZooKeeper, and an interserver HTTP port of its own for replica
// fetches.
type Cluster struct {
	// Name is the cluster's name in remote_servers.
	Name string
	// ZooKeeper coordinates the replicas.
	ZooKeeper *zktest.Server
	// Nodes[k][r] is replica r of shard k (both 0-based).
	Nodes [][]*Server
	// Dir holds zookeeper/ and one directory per node.
	Dir string
}

// ClusterOptions configure StartClusterProcess.
type ClusterOptions struct {
	Shards, Replicas int
	// Detached leaves the processes running when the starting process exits.
	Detached bool
}

// StartCluster starts a cluster of shards × replicas for t and stops it when t ends. Like
// Start, it skips when ClickHouse or ZooKeeper is missing or does not come up, and fails
// instead when CI is set.
func StartCluster(t testing.TB, shards, replicas int) *Cluster {
	t.Helper()
	c, err := StartClusterProcess(t.TempDir(), ClusterOptions{Shards: shards, Replicas: replicas})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chtest: ClickHouse cluster integration test cannot run in CI: %v (scripts/deps.sh installs clickhouse-server and zookeeper)", err)
		}
		t.Skipf("chtest: skipping, no ClickHouse cluster: %v (run scripts/deps.sh to install clickhouse-server and zookeeper)", err)
		return nil
	}
	t.Cleanup(c.Stop)
	return c
}

// StartClusterProcess starts a cluster under dir (which the caller creates and removes)
// and returns once every server answers. The caller stops it.
func StartClusterProcess(dir string, o ClusterOptions) (*Cluster, error) {
	if o.Shards < 1 || o.Replicas < 1 {
		return nil, fmt.Errorf("cluster of %d shards × %d replicas", o.Shards, o.Replicas)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	zkDir := filepath.Join(dir, "zookeeper")
	if err := os.MkdirAll(zkDir, 0o755); err != nil {
		return nil, fmt.Errorf("create cluster directory: %w", err)
	}
	zk, err := zktest.StartProcess(zkDir, zktest.Options{Detached: o.Detached})
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: ClusterName, ZooKeeper: zk, Dir: dir}
	// Every node's ports first: each config lists the whole cluster.
	type node struct{ tcp, http, inter int }
	nodes := make([][]node, o.Shards)
	ports, err := freePorts(3 * o.Shards * o.Replicas)
	if err != nil {
		zk.Stop()
		return nil, fmt.Errorf("find free ports: %w", err)
	}
	for k := range nodes {
		for r := 0; r < o.Replicas; r++ {
			i := 3 * (k*o.Replicas + r)
			nodes[k] = append(nodes[k], node{ports[i], ports[i+1], ports[i+2]})
		}
	}
	var remote strings.Builder
	fmt.Fprintf(&remote, "    <remote_servers>\n        <%s>\n", c.Name)
	for k := range nodes {
		remote.WriteString("            <shard>\n                <internal_replication>true</internal_replication>\n")
		for _, n := range nodes[k] {
			fmt.Fprintf(&remote, "                <replica><host>127.0.0.1</host><port>%d</port></replica>\n", n.tcp)
		}
		remote.WriteString("            </shard>\n")
	}
	fmt.Fprintf(&remote, "        </%s>\n    </remote_servers>\n", c.Name)
	for k := range nodes {
		var row []*Server
		for r, n := range nodes[k] {
			ndir := filepath.Join(dir, fmt.Sprintf("s%dr%d", k+1, r+1))
			extra := remote.String() + fmt.Sprintf(`    <zookeeper>
        <node><host>127.0.0.1</host><port>%d</port></node>
        <session_timeout_ms>10000</session_timeout_ms>
    </zookeeper>
    <macros>
        <shard>%d</shard>
        <replica>s%dr%d</replica>
    </macros>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>%d</interserver_http_port>
`, zk.Port, k+1, k+1, r+1, n.inter)
			if err := writeConfig(ndir, n.tcp, n.http, extra); err != nil {
				c.Stop()
				return nil, err
			}
			s := &Server{
				Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(n.tcp)),
				HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(n.http)),
				Dir:      ndir,
				bin:      bin,
				detached: o.Detached,
			}
			s.DSN = "clickhouse://" + s.Addr + "/default"
			s.HTTPDSN = "http://" + s.HTTPAddr + "/default"
			if err := s.launch(); err != nil {
				c.Stop()
				return nil, err
			}
			row = append(row, s)
		}
		c.Nodes = append(c.Nodes, row)
	}
	return c, nil
}

// ShardDSN returns the DSN of database db on shard k's replicas (k 0-based), the first
// replica first: clickhouse://HOST:PORT,HOST:PORT/db. clickhouse-go connects to the first
// that answers.
func (c *Cluster) ShardDSN(k int, db string) string {
	addrs := make([]string, len(c.Nodes[k]))
	for r, s := range c.Nodes[k] {
		addrs[r] = s.Addr
	}
	return "clickhouse://" + strings.Join(addrs, ",") + "/" + db
}

// AllDSN returns the DSN of database db on every node, shard by shard (reads through
// Distributed tables may ask any of them).
func (c *Cluster) AllDSN(db string) string {
	var addrs []string
	for _, row := range c.Nodes {
		for _, s := range row {
			addrs = append(addrs, s.Addr)
		}
	}
	return "clickhouse://" + strings.Join(addrs, ",") + "/" + db
}

// ShardPIDs returns the process ids of shard k's servers, in ShardDSN's order.
func (c *Cluster) ShardPIDs(k int) []int {
	out := make([]int, len(c.Nodes[k]))
	for r, s := range c.Nodes[k] {
		out[r] = s.PID()
	}
	return out
}

// Stop stops every server, then ZooKeeper.
func (c *Cluster) Stop() {
	for _, row := range c.Nodes {
		for _, s := range row {
			s.Stop()
		}
	}
	if c.ZooKeeper != nil {
		c.ZooKeeper.Stop()
	}
}
