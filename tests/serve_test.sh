#!/usr/bin/env bash
# End-to-end check of `mtrank serve` on a free loopback port: ranking matches
# offline prediction, errors, probes, metrics, reloads (token, bad model, SIGHUP)
# and a graceful SIGTERM that finishes a request in flight. Every wait is bounded.
set -euo pipefail
MTRANK=$1
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
fail() { echo "FAIL: $*"; [ -f server.err ] && tail -5 server.err; exit 1; }

"$MTRANK" quickstart --dir qs --rows 12000 --threads 2 >/dev/null 2>&1 || fail "quickstart"
echo "s3cret" > token
"$MTRANK" serve --model qs/model --port 0 --threads 2 --admin-token-file token > server.out 2> server.err &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" server.out 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o "http://127.0.0.1:[0-9]*" server.out) || fail "server did not start"
C="curl -s --max-time 10 -H Content-Type:application/json"  # form-encoded bodies are capped at 8 KB by cpp-httplib

# Rank 5 real test rows; compare with mtrank predict on the same rows.
head -6 qs/test.csv | cut -d, -f1-7 > rows.csv
python3 - <<'PY' > request.json
import csv, json
rows = list(csv.DictReader(open("rows.csv")))
print(json.dumps({"context": {"device": rows[0]["device"]},
                  "candidates": [{k: v for k, v in r.items() if not (i == 0 and k == "device")} for i, r in enumerate(rows)]}))
PY
code=$($C -o rank.json -w '%{http_code}' -X POST --data-binary @request.json "$URL/v1/rank")
[ "$code" = 200 ] || fail "rank returned $code: $(cat rank.json)"
"$MTRANK" predict --model qs/model --data rows.csv --out pred.csv 2>/dev/null
python3 - <<'PY' || fail "served scores differ from offline predictions"
import csv, json
r = json.load(open("rank.json")); pred = list(csv.DictReader(open("pred.csv")))
assert r["model"]["name"] == "model" and r["model"]["version"] != "unversioned", r["model"]
scores = [x["score"] for x in r["results"]]
assert scores == sorted(scores, reverse=True) and len(scores) == 5
for x in r["results"]:
    for task, p in x["tasks"].items():
        assert abs(p - float(pred[x["index"]][task])) < 1e-5, (x, pred[x["index"]])
PY
code=$($C -o top.json -w '%{http_code}' -X POST --data-binary "$(python3 -c 'import json; r=json.load(open("request.json")); r["top_k"]=2; print(json.dumps(r))')" "$URL/v1/rank")
[ "$code" = 200 ] && [ "$(python3 -c 'import json; print(len(json.load(open("top.json"))["results"]))')" = 2 ] || fail "top_k"

# Bad requests: 4xx with the field named; the server keeps serving.
code=$($C -o bad.json -w '%{http_code}' -X POST --data-binary '{"candidates": [{"price": "abc"}]}' "$URL/v1/rank")
[ "$code" = 400 ] && grep -q "candidates\[0\].price" bad.json || fail "bad value: $code $(cat bad.json)"
code=$($C -o bad.json -w '%{http_code}' -X POST --data-binary '{"candidates": [' "$URL/v1/rank")
[ "$code" = 400 ] && grep -q "malformed JSON" bad.json || fail "malformed JSON: $code"
code=$($C -o bad.json -w '%{http_code}' -X POST --data-binary "$(python3 -c 'print("[" * 5000 + "]" * 5000)')" "$URL/v1/rank")
[ "$code" = 400 ] || fail "deep nesting: $code"

# Probes and metrics.
[ "$($C "$URL/healthz")" = "ok" ] || fail healthz
[ "$($C -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ] || fail readyz
$C "$URL/metrics" > metrics.txt
grep -q 'mtrank_requests_total{status="2xx"} 2' metrics.txt || fail "2xx count: $(grep requests_total metrics.txt)"
grep -q 'mtrank_requests_total{status="4xx"} 3' metrics.txt || fail "4xx count"
grep -q 'mtrank_candidates_scored_total 7' metrics.txt || fail "candidates count"
grep -q 'mtrank_model_info{name="model"' metrics.txt || fail "model info"

# Reloads: token required; a broken model is refused and the old one keeps serving.
[ "$($C -o /dev/null -w '%{http_code}' -X POST --data-binary '{}' "$URL/v1/reload")" = 401 ] || fail "reload without token"
[ "$($C -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer s3cret' --data-binary '{}' "$URL/v1/reload")" = 200 ] || fail "reload"
cp -r qs/model broken && head -c 100 qs/model/weights.pt > broken/weights.pt
code=$($C -o reload.json -w '%{http_code}' -X POST -H 'Authorization: Bearer s3cret' --data-binary "{\"model_dir\": \"$WORK/broken\"}" "$URL/v1/reload")
[ "$code" = 422 ] && grep -q "weights.pt" reload.json || fail "broken model reload: $code $(cat reload.json)"
[ "$($C -o /dev/null -w '%{http_code}' -X POST --data-binary @request.json "$URL/v1/rank")" = 200 ] || fail "serving after a refused reload"
kill -HUP "$SERVER_PID"
for _ in $(seq 50); do grep -q "reloaded model" server.err && [ "$(grep -c 'reloaded model' server.err)" -ge 2 ] && break; sleep 0.1; done
[ "$(grep -c 'reloaded model' server.err)" -ge 2 ] || fail "SIGHUP reload"
$C "$URL/metrics" | grep -q 'mtrank_reloads_total{result="ok"} 2' || fail "reload counter"

# Graceful shutdown finishes a request in flight: its body (about 70 KB) is
# uploaded at 40 KB/s, and SIGTERM comes once the connection is up and a
# little of the body has gone.
python3 - <<'PY' > big.json
import csv, json
cols = ["user_id", "item_id", "item_category", "device", "user_interests", "price", "hour"]
rows = list(csv.DictReader(open("qs/test.csv")))[:2000]
print(json.dumps({"candidates": [{c: r[c] for c in cols} for r in rows]}))
PY
$C -o inflight.json -w '%{http_code}' --limit-rate 40K -X POST --data-binary @big.json "$URL/v1/rank" > inflight.code &
CURL_PID=$!
python3 - "${URL##*:}" <<'PY' || fail "the slow request never connected"
import sys, time
port = int(sys.argv[1])
for _ in range(200):  # an established connection to the server's port (state 01 in /proc/net/tcp)
    for line in open("/proc/net/tcp").readlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port and f[3] == "01":
            sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
PY
sleep 0.3  # accepted by the server, part of the body read
kill -TERM "$SERVER_PID"
wait "$CURL_PID" || true
[ "$(cat inflight.code)" = 200 ] && grep -q '"results":\[{' inflight.json ||
  fail "a request in flight at SIGTERM got $(cat inflight.code): $(head -c 200 inflight.json)"
for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVER_PID" 2>/dev/null; then fail "server did not stop on SIGTERM"; fi
wait "$SERVER_PID" && rc=0 || rc=$?
SERVER_PID=""
[ "$rc" = 0 ] || fail "server exit code $rc"
echo "serve tests passed"
