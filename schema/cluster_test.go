package schema_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quotesdev/quotes/aggregate"
	"github.com/quotesdev/quotes/export"
	"github.com/quotesdev/quotes/feed"
	"github.com/quotesdev/quotes/internal/chtest"
	"github.com/quotesdev/quotes/schema"
	"github.com/quotesdev/quotes/shard"
)

// applyCluster applies the cluster schema of db to every node, as `schema apply --cluster`.
func applyCluster(t *testing.T, c *chtest.Cluster, db string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, _ := connect(t, c.Nodes[0][0].DSN)
	nodes, err := schema.ClusterNodes(ctx, first, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 4 || schema.Shards(nodes) != 2 {
		t.Fatalf("nodes %+v", nodes)
	}
	for _, n := range nodes {
		conn, _ := connect(t, "clickhouse://"+n.Addr()+"/default")
		if err := schema.ApplyCluster(ctx, conn, db, schema.Cluster{Name: c.Name, Shards: schema.Shards(nodes)}); err != nil {
			t.Fatalf("node %s: %v", n.Addr(), err)
		}
	}
}

// TestCluster: on a 2 × 2 cluster, the cluster schema applies twice without a change; a
// shard writer (the export sink on the shard's DSN) lands its rows on both replicas; and the
// Distributed tables answer the same merged candles and instruments as the shards together.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and four ClickHouse servers")
	}
	c := chtest.StartCluster(t, 2, 2)
	const db = "q"
	applyCluster(t, c, db)
	var ddl []map[string]string
	for _, row := range c.Nodes {
		for _, s := range row {
			conn, _ := connect(t, s.DSN)
			ddl = append(ddl, tables(t, conn, db), tables(t, conn, schema.ClusterDatabase(db)))
		}
	}
	applyCluster(t, c, db)
	i := 0
	for _, row := range c.Nodes {
		for _, s := range row {
			conn, _ := connect(t, s.DSN)
			if a, b := fmt.Sprint(tables(t, conn, db), tables(t, conn, schema.ClusterDatabase(db))), fmt.Sprint(ddl[i], ddl[i+1]); a != b {
				t.Fatalf("second apply changed %s:\n%s\n%s", s.Addr, a, b)
			}
			if !strings.Contains(ddl[i]["candles"], "ReplicatedAggregatingMergeTree") || !strings.Contains(ddl[i+1]["candles"], "Distributed") {
				t.Fatalf("%s: candles %s / %s", s.Addr, ddl[i]["candles"], ddl[i+1]["candles"])
			}
			i += 2
		}
	}

	// candles of 6 ISINs, each written by its shard's writer
	ctx := context.Background()
	var all []aggregate.Candle
	var events [2][]export.InstrumentEvent
	perShard := [2][]aggregate.Candle{}
	for j, s := range []string{"US0378331005", "DE0007164600", "GB0002634946", "FR0000120271", "JP3633400001", "CH0012032048"} {
		isin, _ := feed.ParseISIN(s)
		k := shard.Of(isin, 2)
		for m := 0; m < 3; m++ {
			c := aggregate.Candle{Key: aggregate.Key{ISIN: isin, Incarnation: uint64(10 + j), Minute: 1767225600e9 + int64(m)*aggregate.MinuteNanos},
				Open: feed.Price(100 + j), High: feed.Price(110 + j), Low: feed.Price(90 + j), Close: feed.Price(105 + j), Quotes: 3,
				OpenTS: 1767225600e9 + int64(m)*aggregate.MinuteNanos + 1, CloseTS: 1767225600e9 + int64(m)*aggregate.MinuteNanos + 2, OpenSeq: 1, CloseSeq: 2}
			perShard[k] = append(perShard[k], c)
			all = append(all, c)
		}
		events[k] = append(events[k], export.InstrumentEvent{Seq: uint64(10 + j), TS: 1767225600e9, Kind: feed.KindAdd, ISIN: isin, Incarnation: uint64(10 + j), Description: "d" + s})
	}
	for k := 0; k < 2; k++ {
		w, err := export.NewClickHouseSink(ctx, export.ClickHouseOptions{DSN: c.ShardDSN(k, db)})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteInstruments(ctx, events[k]); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(ctx, 100, perShard[k]); err != nil {
			t.Fatalf("shard %d write: %v", k, err)
		}
		if err := w.Write(ctx, 100, perShard[k]); err != nil { // a retry: skipped
			t.Fatal(err)
		}
		if st := w.Stats(); st.Chunks != 1 || st.ChunksSkipped != 1 {
			t.Fatalf("shard %d stats %+v", k, st)
		}
		w.Close()
		// both replicas hold it (replication through ZooKeeper)
		for r, s := range c.Nodes[k] {
			conn, _ := connect(t, s.DSN)
			deadline := time.Now().Add(30 * time.Second)
			for {
				var n uint64
				if err := conn.QueryRow(ctx, "SELECT count() FROM q.candles WHERE isin != "+schema.MarkerISINSQL).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n == uint64(len(perShard[k])) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("shard %d replica %d holds %d candle rows, want %d", k, r, n, len(perShard[k]))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	// the Distributed tables answer for all of them
	rd, err := export.NewClickHouseSink(ctx, export.ClickHouseOptions{DSN: c.AllDSN(schema.ClusterDatabase(db))})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got := map[aggregate.Key]aggregate.Candle{}
	if err := rd.MergedCandles(ctx, 0, 1<<62, func(c aggregate.Candle) error { got[c.Key] = c; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Fatalf("Distributed: %d candles, want %d", len(got), len(all))
	}
	for _, w := range all {
		if got[w.Key] != w {
			t.Fatalf("Distributed: %+v, want %+v", got[w.Key], w)
		}
	}
	ins, err := rd.Instruments(ctx)
	if err != nil || len(ins) != 6 {
		t.Fatalf("Distributed instruments: %v, %v", ins, err)
	}
	us, _ := feed.ParseISIN("US0378331005")
	cs, err := rd.Candles(ctx, us, 0, 1<<62)
	if err != nil || len(cs) != 3 {
		t.Fatalf("Distributed candles of one ISIN: %v, %v", cs, err)
	}
	if _, ok, err := rd.LatestMinute(ctx); err != nil || !ok {
		t.Fatalf("latest minute: %v %v", ok, err)
	}
	if lp, err := rd.LatestPrices(ctx); err != nil || len(lp) != 6 {
		t.Fatalf("latest prices: %v %v", lp, err)
	}
}
