#!/usr/bin/env bash
# Load test of the one service (issue 12): POST /v1/recommend (retrieve,
# join the catalog, rank) for users with live state and POST /v1/events,
# mixed, over loopback with wrk, with POST /v1/reload of the whole unit
# (ranker, retrieval model, catalog) every RELOAD_EVERY seconds meanwhile.
#   bench/load_recommend.sh RANKER_DIR SEQ_DIR CATALOG [SECONDS=30]
#   (e.g. the models examples/movielens/run.sh trains)
# Environment: THREADS=2 (serve --threads), CONNECTIONS=8, WRK_THREADS=1,
#   EVENT_SHARE=0.2, USERS=500 (each given 3 events first), RELOAD_EVERY=5
#   (0 = none), SERVE_FLAGS (more serve flags, e.g. "--index funnel").
# Prints the warm-up's one-client event latency (an event's cost with its
# fsync), wrk's throughput and p50/p99/p99.9, the errors, and the reloads' statuses.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 2,13p "$0"; exit 2; }
RANKER=$1 SEQ=$2 CATALOG=$3 DURATION=${4:-30}
THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-8} WRK_THREADS=${WRK_THREADS:-1}
export EVENT_SHARE=${EVENT_SHARE:-0.2} USERS=${USERS:-500}
RELOAD_EVERY=${RELOAD_EVERY:-5}
command -v wrk >/dev/null || { echo "load_recommend.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
echo tok > "$WORK/token"
build/mtrank serve --model "$RANKER" --retrieval "$SEQ" --catalog "$CATALOG" --port 0 --threads "$THREADS" \
  --state-dir "$WORK/state" --admin-token-file "$WORK/token" --models-root / ${SERVE_FLAGS:-} > "$WORK/out" 2> "$WORK/err" &
SERVER_PID=$!
for _ in $(seq 600); do grep -q "listening on" "$WORK/out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o "http://127.0.0.1:[0-9]*" "$WORK/out") || { cat "$WORK/err"; exit 1; }
head -2 "$WORK/out"
python3 - "$CATALOG" "$WORK/items.txt" <<'PY'
import csv, gzip, sys
path = sys.argv[1]
f = gzip.open(path, "rt") if path.endswith(".gz") else open(path)
rows = csv.DictReader(f, delimiter="\t" if ".tsv" in path else ",")
open(sys.argv[2], "w").write("\n".join(r["item"] for r in rows) + "\n")
PY
python3 - "$URL" "$WORK/items.txt" <<'PY'
import http.client, json, os, random, sys, time, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
items = open(sys.argv[2]).read().split()
conn = http.client.HTTPConnection(url.hostname, url.port)
rng = random.Random(1)
ms = []
for u in range(1, int(os.environ["USERS"]) + 1):
    for _ in range(3):
        body = json.dumps({"user": f"u{u}", "item": rng.choice(items)})
        t = time.perf_counter()
        conn.request("POST", "/v1/events", body, {"Content-Type": "application/json"})
        r = conn.getresponse(); r.read()
        ms.append((time.perf_counter() - t) * 1e3)
        assert r.status == 200, r.status
ms.sort()
print(f"warm-up: {len(ms)} events from one client: p50 {ms[len(ms)//2]:.2f} ms, p99 {ms[len(ms)*99//100]:.2f} ms (each synced to disk)")
PY
reloads() {
  [ "$RELOAD_EVERY" -gt 0 ] || return 0
  while sleep "$RELOAD_EVERY"; do
    curl -s -o /dev/null -w '%{http_code}\n' -X POST -H 'Authorization: Bearer tok' --data-binary '{}' "$URL/v1/reload" >> "$WORK/reloads"
  done
}
reloads & RELOADER=$!
ITEMS_FILE="$WORK/items.txt" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s bench/recommend_mix.lua "$URL" |
  grep -E "^(requests|errors)"
kill "$RELOADER" 2>/dev/null || true
echo "reloads during the run: $(sort "$WORK/reloads" 2>/dev/null | uniq -c | tr '\n' ' ')"
curl -s "$URL/metrics" | grep -E '^mtrank_(recommend_requests|events)_total'
