#!/usr/bin/env bash
# HTTP load test of `mtrank serve` on loopback with wrk: 200-candidate requests
# made from real census rows, 2 server threads, hot reloads in the middle.
#   bench/serve_load.sh MODEL_DIR [SECONDS=20] [CONNECTIONS=8] [CANDIDATES=200]
# Needs ../shared/datasets and Debian's wrk (installed here if missing). Bounded in time.
# MTRANK=path/to/mtrank runs another build (e.g. an older commit, side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1
SECONDS_=${2:-20}
CONN=${3:-8}
N=${4:-200}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
WORK=$(mktemp -d)
SERVER=""
trap '[ -n "$SERVER" ] && kill -9 $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

bench/wrk_rank_requests.sh "$MODEL" "$N" "$WORK"
echo token > "$WORK/token"
"${MTRANK:-build/mtrank}" serve --model "$MODEL" --port 0 --threads 2 --admin-token-file "$WORK/token" > "$WORK/out" 2> "$WORK/err" &
SERVER=$!
for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o "http://127.0.0.1:[0-9]*" "$WORK/out")
# Hot reloads while the load runs: one every 2 seconds.
( for _ in $(seq $((SECONDS_ / 2 - 1))); do sleep 2
    curl -s -o /dev/null -H 'Content-Type: application/json' -H 'Authorization: Bearer token' --data-binary '{}' -X POST "$URL/v1/reload"; done ) &
RELOADER=$!
wrk -t2 -c"$CONN" -d"${SECONDS_}s" --latency -s "$WORK/post.lua" "$URL" | tee "$WORK/wrk.txt"
wait $RELOADER
echo "reloads during the run: $(grep -c 'reloaded model' "$WORK/err")"
curl -s "$URL/metrics" | grep -E 'mtrank_requests_total|mtrank_reloads_total'
grep -q "Non-2xx" "$WORK/wrk.txt" && echo "ERRORS: some responses were not 2xx" || echo "errors: none (no non-2xx responses)"
kill -TERM $SERVER; wait $SERVER; SERVER=""
