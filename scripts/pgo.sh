#!/usr/bin/env bash
# make pgo: record the CPU profile the Go compiler optimises quotes with (profile-guided
# optimisation; `go build` picks up cmd/quotes/default.pgo by itself). The profile is
# what quotes spends its time on at the spec load (SPEC §9): a replay of a 5-minute
# recording of 50,000 instruments quoting once a second, merged with 30 s of a live ingest
# of the same feed. Everything runs on loopback under a temp dir.
# Usage: scripts/pgo.sh BIN OUT
set -euo pipefail
bin=${1:-bin/quotes}
out=${2:-cmd/quotes/default.pgo}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

feed=(--instruments 50000 --quote-interval 1s --seed 1)
echo "pgo: recording 5 minutes of the spec feed"
"$bin" generate --record "$tmp/feed.jsonl" --speed max --duration 5m "${feed[@]}" >"$tmp/record.log" 2>&1
echo "pgo: replay --sync batch with --cpuprofile"
"$bin" --cpuprofile "$tmp/replay.pprof" replay "$tmp/feed.jsonl" --data "$tmp/replay" --sync batch --progress never >"$tmp/replay.log" 2>&1
rm -f "$tmp/feed.jsonl"

echo "pgo: live ingest at the spec load for 30 s with --cpuprofile"
"$bin" generate --listen 127.0.0.1:0 --speed 1x "${feed[@]}" >"$tmp/generate.log" 2>&1 &
pids+=($!)
url=""
for _ in $(seq 1 100); do
  url=$(grep -o 'listening on ws://[0-9.:]*' "$tmp/generate.log" | head -1 | cut -d' ' -f3 || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "pgo: generate did not start"; cat "$tmp/generate.log"; exit 1; }
"$bin" --cpuprofile "$tmp/ingest.pprof" ingest --source "$url" --data "$tmp/live" --http "" --sync batch >"$tmp/ingest.log" 2>&1 &
ingest=$!
sleep 30
kill -TERM "$ingest"
wait "$ingest" || { echo "pgo: ingest failed"; tail -5 "$tmp/ingest.log"; exit 1; }

go tool pprof -proto "$tmp/replay.pprof" "$tmp/ingest.pprof" >"$out" 2>/dev/null
echo "pgo: wrote $out ($(wc -c <"$out") bytes); rebuild with make build"
