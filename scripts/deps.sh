#!/usr/bin/env bash
# Installs what the integration tests need when it is missing: ClickHouse (Debian's
# clickhouse-server and clickhouse-client, 18.16 on bookworm), ZooKeeper (Debian's, for the
# replicated cluster tests), the Versity S3 gateway
# (versitygw, into $(go env GOPATH)/bin), the NATS server (nats-server, likewise), the
# archive tests' independent Parquet reader (hyparquet, with the machine's Node.js and npm,
# into export/testdata/node/node_modules) and Chromium for the web page's browser tests (api,
# through chromedp). One function per dependency,
# each idempotent: it does nothing when its dependency is already installed. Runs as root on
# Debian (make test, CI); elsewhere through sudo. The tests start private servers of their own
# (internal/chtest), so no system service is started or left running.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" != 0 ]; then
	SUDO="sudo -n"
fi

apt_updated=0

# apt_install PKG… installs packages quietly, running apt-get update once per run.
apt_install() {
	if [ "$apt_updated" = 0 ]; then
		$SUDO apt-get update -qq >/dev/null
		apt_updated=1
	fi
	$SUDO env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# no_service_start runs a command with a policy-rc.d that keeps package scripts from
# starting services (exit 101 = action forbidden), removing it again afterwards.
no_service_start() {
	local policy=/usr/sbin/policy-rc.d created=0 rc=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
		$SUDO chmod 755 "$policy"
		created=1
	fi
	"$@" || rc=$?
	if [ "$created" = 1 ]; then
		$SUDO rm -f "$policy"
	fi
	return "$rc"
}

# deps_clickhouse installs clickhouse-server and clickhouse-client (the multi-call
# /usr/bin/clickhouse binary). A system service that started anyway is stopped and disabled.
deps_clickhouse() {
	if { command -v clickhouse-server || [ -x /usr/sbin/clickhouse-server ] || command -v clickhouse; } >/dev/null 2>&1; then
		return 0
	fi
	echo "deps.sh: installing clickhouse-server clickhouse-client" >&2
	no_service_start apt_install clickhouse-server clickhouse-client
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now clickhouse-server >/dev/null 2>&1 || true
	elif [ -x /etc/init.d/clickhouse-server ]; then
		$SUDO /etc/init.d/clickhouse-server stop >/dev/null 2>&1 || true
	fi
}

# deps_zookeeper installs Debian's ZooKeeper (the server jar; Java comes with it) for the
# replicated ClickHouse cluster tests (internal/zktest, internal/chtest.StartCluster) and
# scripts/cluster.sh. Its system service is not started: the tests start private servers.
deps_zookeeper() {
	if [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1; then
		return 0
	fi
	echo "deps.sh: installing zookeeper" >&2
	no_service_start apt_install zookeeper
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now zookeeper >/dev/null 2>&1 || true
	fi
}

# deps_versitygw installs the Versity S3 gateway that internal/s3test starts, with the Go
# toolchain, into $(go env GOPATH)/bin (where s3test looks when it is not in PATH).
deps_versitygw() {
	local gobin
	gobin="$(go env GOBIN)"
	[ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
	if command -v versitygw >/dev/null 2>&1 || [ -x "$gobin/versitygw" ]; then
		return 0
	fi
	echo "deps.sh: installing versitygw v1.8.0 into $gobin" >&2
	(cd / && GOFLAGS=-mod=mod go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)
}

# deps_nats_server installs the NATS server that internal/natstest starts (with JetStream),
# with the Go toolchain, into $(go env GOPATH)/bin (where natstest looks when it is not in
# PATH).
deps_nats_server() {
	local gobin
	gobin="$(go env GOBIN)"
	[ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
	if command -v nats-server >/dev/null 2>&1 || [ -x "$gobin/nats-server" ]; then
		return 0
	fi
	echo "deps.sh: installing nats-server v2.15.2 into $gobin" >&2
	(cd / && GOFLAGS=-mod=mod go install github.com/nats-io/nats-server/v2@v2.15.2)
}

# deps_hyparquet installs the npm packages of export/testdata/node (hyparquet and its
# decompressors, pinned by package-lock.json), and Node.js with npm if they are missing.
deps_hyparquet() {
	local dir
	dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/export/testdata/node"
	if [ -d "$dir/node_modules/hyparquet" ] && [ -d "$dir/node_modules/hyparquet-compressors" ]; then
		return 0
	fi
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		echo "deps.sh: installing nodejs npm" >&2
		apt_install nodejs npm
	fi
	echo "deps.sh: npm ci in $dir" >&2
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# deps_chromium installs Debian's Chromium, which the api package's browser tests drive
# (headless, through chromedp; they find it on PATH or at $QUOTES_CHROMIUM).
deps_chromium() {
	if [ -n "${QUOTES_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 ||
		command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; then
		return 0
	fi
	echo "deps.sh: installing chromium" >&2
	apt_install chromium fonts-dejavu-core
}

deps_clickhouse
deps_zookeeper
deps_versitygw
deps_nats_server
deps_hyparquet
deps_chromium
