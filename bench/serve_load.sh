#!/usr/bin/env bash
# HTTP load test of `mtrank serve` on loopback with wrk: 200-candidate requests
# made from real census rows, 2 server threads, hot reloads in the middle.
#   bench/serve_load.sh MODEL_DIR [SECONDS=20] [CONNECTIONS=8] [CANDIDATES=200]
# Needs ../shared/datasets and Debian's wrk (installed here if missing). Bounded in time.
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

# 32 request bodies of N consecutive census test rows (the model's input columns).
python3 - "$MODEL" "$N" "$WORK" <<'PY'
import csv, gzip, json, random, sys, tomllib
model, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = tomllib.load(open(f"{model}/config.toml", "rb"))
cols = []
for f in cfg["features"]:
    for c in (f.get("columns") if f["type"] == "cross" else [f["name"]]):
        if c not in cols: cols.append(c)
rows = list(csv.DictReader(gzip.open("../shared/datasets/census-test.csv.gz", "rt")))
random.seed(1)
for i in range(32):
    s = random.randrange(len(rows) - n)
    body = {"candidates": [{c: r[c] for c in cols} for r in rows[s:s + n]], "top_k": 50}
    open(f"{work}/body{i}.json", "w").write(json.dumps(body))
PY
cat > "$WORK/post.lua" <<LUA
bodies = {}
for i = 0, 31 do
  local f = io.open("$WORK/body" .. i .. ".json", "r")
  bodies[i] = f:read("*a")
  f:close()
end
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/v1/rank", {["Content-Type"] = "application/json"}, bodies[counter % 32])
end
done = function(summary, latency, requests)
  io.write(string.format("p99.9 latency: %.2fms; errors: connect %d, read %d, write %d, status %d, timeout %d\n",
    latency:percentile(99.9) / 1000, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
LUA
echo token > "$WORK/token"
build/mtrank serve --model "$MODEL" --port 0 --threads 2 --admin-token-file "$WORK/token" > "$WORK/out" 2> "$WORK/err" &
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
