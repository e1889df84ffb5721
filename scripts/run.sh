#!/usr/bin/env bash
# make run: a partner simulator and an ingest on embedded storage, on loopback, until Ctrl-C.
# Usage: scripts/run.sh BIN RUNDIR
set -euo pipefail
bin=${1:-bin/quotes}
dir=${2:-.run}
feed_addr=${QUOTES_RUN_FEED:-127.0.0.1:8032}
http_addr=${QUOTES_RUN_HTTP:-127.0.0.1:5000}
mkdir -p "$dir"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping…"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; data kept in $dir/data (query it with: $bin query instruments --data $dir/data)"
}
trap "cleanup; exit 0" INT TERM
trap cleanup EXIT

since=$(date -u +%Y-%m-%dT%H:%M:%S) # quotes of this run are stamped after this
"$bin" generate --listen "$feed_addr" --instruments "${QUOTES_RUN_INSTRUMENTS:-1000}" >"$dir/generate.log" 2>&1 &
pids+=($!)
"$bin" ingest --source "ws://$feed_addr" --data "$dir/data" --http "$http_addr" >"$dir/ingest.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fsS "http://$http_addr/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[1]}" 2>/dev/null; then echo "ingest exited; see $dir/ingest.log"; tail -5 "$dir/ingest.log"; exit 1; fi
  sleep 0.1
done
# The example ISIN: one quoted by this run (--data may keep instruments of earlier runs that
# the snapshot guard did not delete), else the first listed.
isin=""
for _ in $(seq 1 50); do
  list=$(curl -fsS "http://$http_addr/instruments" 2>/dev/null || true)
  isin=$(grep -o '"isin":"[A-Z0-9]\{12\}"[^{}]*"priceTs":"[^"]*"' <<<"$list" |
    sed -n 's/^"isin":"\([A-Z0-9]*\)".*"priceTs":"\([^"]*\)"$/\2 \1/p' |
    awk -v s="$since" '$1 >= s { print $2; exit }' || true)
  [ -n "$isin" ] && break
  sleep 0.1
done
[ -n "$isin" ] || isin=$(grep -o '"isin":"[A-Z0-9]\{12\}"' <<<"$list" | head -1 | cut -d'"' -f4 || true)
isin=${isin:-ISIN}

cat <<MSG

quotes is running: a simulated partner on ws://$feed_addr, ingest into $dir/data.

  Web page
    http://$http_addr/
  HTTP API
    curl http://$http_addr/instruments
    curl http://$http_addr/instruments/$isin/candles?last=30m
    curl http://$http_addr/last30m/$isin
    curl -N http://$http_addr/hot                 (hot events as they happen, SSE)
    curl http://$http_addr/metrics
  Shell (works while ingest runs)
    $bin query instruments --data $dir/data
    $bin query candles $isin --data $dir/data
    $bin query hot --data $dir/data --follow

  Logs: $dir/generate.log, $dir/ingest.log.  Candles fill in as minutes pass; hot events need
  five minutes of history.  Ctrl-C stops both.
MSG
wait -n "${pids[@]}" || true
echo "a process exited unexpectedly; see $dir/*.log"
exit 1
