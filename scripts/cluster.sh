#!/usr/bin/env bash
# cluster.sh up DIR | down DIR — a local replicated, sharded ClickHouse cluster for trying
# `quotes --shard` (SPEC §11): ZooKeeper + 2 shards × 2 replicas of clickhouse-server on
# free loopback ports, data and logs under DIR, the cluster schema applied to database
# "quotes". `up` prints shell export lines (also in DIR/cluster.env):
#
#   eval "$(scripts/cluster.sh up /tmp/qc)"
#   quotes replay feed.jsonl --shard 0/2 --data /tmp/s0 --clickhouse "$QUOTES_CH_SHARD0"
#   quotes replay feed.jsonl --shard 1/2 --data /tmp/s1 --clickhouse "$QUOTES_CH_SHARD1"
#   quotes query instruments --clickhouse "$QUOTES_CH_CLUSTER"
#   scripts/cluster.sh down /tmp/qc
#
# `down` stops exactly the processes `up` started (their pids are in DIR/pids) and keeps DIR.
# Needs clickhouse-server and zookeeper (scripts/deps.sh installs both) and Go.
set -euo pipefail

usage() {
	echo "usage: $0 up DIR | down DIR" >&2
	exit 2
}
[ $# -eq 2 ] || usage
dir=$2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$1" in
up)
	mkdir -p "$dir"
	(cd "$root" && go build -o "$dir/chcluster" ./internal/chtest/chcluster)
	"$dir/chcluster" "$dir"
	;;
down)
	[ -f "$dir/pids" ] || {
		echo "cluster.sh: no cluster in $dir (no $dir/pids)" >&2
		exit 1
	}
	mapfile -t pids <"$dir/pids"
	for pid in "${pids[@]}"; do
		[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
	done
	for _ in $(seq 1 50); do
		alive=0
		for pid in "${pids[@]}"; do
			[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
	done
	rm -f "$dir/pids"
	echo "cluster in $dir stopped" >&2
	;;
*)
	usage
	;;
esac
