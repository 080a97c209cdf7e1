#!/usr/bin/env bash
# End-to-end check of `mtrank serve` on a free loopback port: ranking matches
# offline prediction, errors, probes, metrics, reloads (token, bad model, models
# root, schema change, SIGHUP) and a graceful SIGTERM that finishes a request in
# flight. Every wait is bounded. Hostile clients: serve_hostile_test.sh.
set -euo pipefail
MTRANK=$1
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
fail() { echo "FAIL: $*"; [ -f server.err ] && tail -5 server.err; exit 1; }

"$MTRANK" quickstart --dir qs --rows 12000 --threads 2 >/dev/null 2>&1 || fail "quickstart"
printf 's3cret\r\n' > token  # CRLF from an editor: not part of the token
"$MTRANK" serve --model qs/model --port 0 --threads 2 --admin-token-file token --max-body-bytes 1000000 \
  > server.out 2> server.err &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" server.out 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o "http://127.0.0.1:[0-9]*" server.out) || fail "server did not start"
C="curl -s --max-time 10 -H Content-Type:application/json"

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
# An error message that quotes a value cut inside a UTF-8 character: a valid
# UTF-8 JSON 400, no internal text in a header (was: 500 with EXCEPTION_WHAT).
code=$($C -D headers.txt -o bad.json -w '%{http_code}' -X POST \
  --data-binary "{\"candidates\": [{\"price\": \"$(printf 'a%.0s' $(seq 39))\u00e9\u00e9\"}]}" "$URL/v1/rank")
[ "$code" = 400 ] && ! grep -qi "exception" headers.txt || fail "value cut inside a UTF-8 character: $code $(cat headers.txt)"
python3 -c 'import json,sys; json.loads(open("bad.json", "rb").read().decode("utf-8"))' || fail "error body is not UTF-8 JSON"
head -c 1200000 /dev/zero | tr '\0' ' ' > huge.json
code=$($C -o bad.json -w '%{http_code}' -X POST --data-binary @huge.json "$URL/v1/rank")
[ "$code" = 413 ] || fail "body over --max-body-bytes: $code"

# Probes and metrics.
[ "$($C "$URL/healthz")" = "ok" ] || fail healthz
[ "$($C -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ] || fail readyz
$C "$URL/metrics" > metrics.txt
grep -q 'mtrank_requests_total{status="2xx"} 2' metrics.txt || fail "2xx count: $(grep requests_total metrics.txt)"
grep -q 'mtrank_requests_total{status="4xx"} 5' metrics.txt || fail "4xx count (413 included): $(grep requests_total metrics.txt)"
grep -q 'mtrank_http_responses_total{code="413"} 1' metrics.txt || fail "413 count"
# Candidates scored, not returned: 5 + 5 (the second request returned top_k 2).
grep -q 'mtrank_candidates_scored_total 10' metrics.txt || fail "candidates count: $(grep candidates_scored metrics.txt)"
grep -q 'mtrank_model_info{name="model"' metrics.txt || fail "model info"

# Reloads: token required (the token file's CRLF stripped); a broken model is
# refused with a generic 422 (details only in the log) and the old one keeps serving.
R() { $C -X POST -H 'Authorization: Bearer s3cret' "$@"; }
[ "$($C -o /dev/null -w '%{http_code}' -X POST --data-binary '{}' "$URL/v1/reload")" = 401 ] || fail "reload without token"
[ "$($C -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer s3cre' --data-binary '{}' "$URL/v1/reload")" = 401 ] || fail "reload with a wrong token"
[ "$(R -o /dev/null -w '%{http_code}' --data-binary '{}' "$URL/v1/reload")" = 200 ] || fail "reload (token file ending in CRLF)"
cp -r qs/model qs/broken && head -c 100 qs/model/weights.pt > qs/broken/weights.pt
code=$(R -o reload.json -w '%{http_code}' --data-binary "{\"model_dir\": \"$WORK/qs/broken\"}" "$URL/v1/reload")
[ "$code" = 422 ] && ! grep -q "weights" reload.json || fail "broken model reload: $code $(cat reload.json)"
grep -q "broken.*weights.pt" server.err || fail "the reload failure's details are not in the log"
[ "$($C -o /dev/null -w '%{http_code}' -X POST --data-binary @request.json "$URL/v1/rank")" = 200 ] || fail "serving after a refused reload"

# Only directories inside the models root (default: the parent of --model) are
# loaded; outside, the answer is the same whether the path exists or not.
cp -r qs/model outside && ln -s "$WORK/outside" qs/link
for dir in "$WORK/outside" "/nonexistent/model" "../outside" "link" "broken/../../outside" "/etc"; do
  code=$(R -o reload.json -w '%{http_code}' --data-binary "{\"model_dir\": \"$dir\"}" "$URL/v1/reload")
  [ "$code" = 403 ] && grep -q "inside the server's models root" reload.json || fail "reload of $dir: $code $(cat reload.json)"
done

# A model with another input schema (no "hour") is refused unless asked for.
sed -e 's/names = \["item_category", "device", "hour"\]/names = ["item_category", "device"]/' -e 's/^epochs = .*/epochs = 1/' \
  qs/quickstart.toml > nohour.toml
"$MTRANK" train --config nohour.toml --train qs/train.csv --val qs/val.csv --test qs/test.csv --out qs/nohour --quiet --threads 2 >/dev/null 2>&1 ||
  fail "training the no-hour model"
code=$(R -o reload.json -w '%{http_code}' --data-binary '{"model_dir": "nohour"}' "$URL/v1/reload")
[ "$code" = 409 ] && grep -q 'removed: hour' reload.json || fail "schema change not refused: $code $(cat reload.json)"
[ "$($C -o /dev/null -w '%{http_code}' -X POST --data-binary @request.json "$URL/v1/rank")" = 200 ] || fail "serving after a refused schema change"
code=$(R -o reload.json -w '%{http_code}' --data-binary '{"model_dir": "nohour", "allow_schema_change": true}' "$URL/v1/reload")
[ "$code" = 200 ] && grep -q '"name":"nohour"' reload.json || fail "schema change allowed: $code $(cat reload.json)"
code=$(R -o reload.json -w '%{http_code}' --data-binary '{"model_dir": "model", "allow_schema_change": true}' "$URL/v1/reload")
[ "$code" = 200 ] || fail "reload back to model: $code"

# Prometheus label values are escaped: a model directory named a"b\c<newline>d.
cp -r qs/model "qs/a\"b\\c"$'\n'"d"
code=$(R -o reload.json -w '%{http_code}' --data-binary '{"model_dir": "a\"b\\c\nd"}' "$URL/v1/reload")
[ "$code" = 200 ] || fail "reload of a strangely named model: $code $(cat reload.json)"
$C "$URL/metrics" > metrics.txt
grep -qF 'mtrank_model_info{name="a\"b\\c\nd",version=' metrics.txt || fail "label not escaped: $(grep -A1 model_info metrics.txt)"
[ "$(R -o /dev/null -w '%{http_code}' --data-binary '{"model_dir": "model"}' "$URL/v1/reload")" = 200 ] || fail "reload back"

reloads=$(grep -c 'reloaded model' server.err)
kill -HUP "$SERVER_PID"
for _ in $(seq 50); do [ "$(grep -c 'reloaded model' server.err)" -gt "$reloads" ] && break; sleep 0.1; done
[ "$(grep -c 'reloaded model' server.err)" -gt "$reloads" ] || fail "SIGHUP reload"
$C "$URL/metrics" | grep -q "mtrank_reloads_total{result=\"ok\"} $((reloads + 1))" || fail "reload counter"

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
