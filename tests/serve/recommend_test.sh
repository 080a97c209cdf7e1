#!/usr/bin/env bash
# End-to-end check of retrieval + ranking in one service (issue 12): a
# sequential model and a ranker trained by `mtrank train`, served with a
# catalog and a state store; events advance a user's state, /v1/recommend by
# user equals /v1/recommend by the same history, a restart keeps every
# acknowledged event, a reload swaps the retrieval model, a corrupt store is
# refused at start. Every wait is bounded.
set -euo pipefail
MTRANK=$1
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
fail() { echo "FAIL: $*"; [ -f server.err ] && tail -5 server.err; exit 1; }

python3 - <<'PY'
import random
rng = random.Random(4)
with open("log.txt", "w") as f:  # user item, in time order: items mostly follow a chain over 30 items
    for u in range(150):
        item = rng.randrange(30) + 1
        for _ in range(15):
            f.write(f"{u} {item}\n")
            item = (5 * item + 2) % 30 + 1 if rng.random() < 0.8 else rng.randrange(30) + 1
with open("impressions.csv", "w") as f:
    f.write("item,genre,hour,click\n")
    for _ in range(3000):
        item, hour = rng.randrange(30) + 1, rng.randrange(24)
        p = 0.7 if (item % 3 == 0) == (hour < 12) else 0.2
        f.write(f"{item},g{item % 3},{hour},{int(rng.random() < p)}\n")
with open("catalog.csv", "w") as f:
    f.write("item,genre,title\n")
    for item in range(1, 31):
        f.write(f'{item},g{item % 3},"Item {item}, the title"\n')
PY
cat > seq.toml <<'EOF'
[sequential]
widths = [8, 16]
blocks = 1
max_len = 16
[train]
batch_size = 32
max_steps = 20
eval_every_steps = 20
EOF
cat > rank.toml <<'EOF'
[[features]]
names = ["item", "genre", "hour"]
type = "categorical"
[[tasks]]
name = "click"
column = "click"
[model]
type = "shared_bottom"
[train]
epochs = 1
EOF
mkdir -p models
"$MTRANK" train --config seq.toml --train log.txt --out models/seq --quiet --threads 2 >/dev/null 2>train.err || fail "training the sequential model: $(tail -3 train.err)"
sed 's/max_steps = 20/max_steps = 30/' seq.toml > seq2.toml
"$MTRANK" train --config seq2.toml --train log.txt --out models/seq2 --quiet --threads 2 >/dev/null 2>train.err || fail "training the second sequential model"
"$MTRANK" train --config rank.toml --train impressions.csv --out models/ranker --quiet --threads 2 >/dev/null 2>train.err || fail "training the ranker: $(tail -3 train.err)"
echo s3cret > token
# eval --max-len: the window at evaluation, as long as every history here = what a live state reads.
"$MTRANK" eval --model models/seq --data log.txt --max-len 64 > eval64.txt 2>&1 || fail "eval --max-len: $(tail -3 eval64.txt)"
grep -q "^16 " eval64.txt || fail "eval --max-len printed no width-16 row: $(cat eval64.txt)"
set +e
"$MTRANK" eval --model models/ranker --data impressions.csv --max-len 64 > /dev/null 2> eval.err
code=$?
set -e
[ "$code" = 2 ] && grep -q "max-len is for sequential models" eval.err || fail "eval --max-len on a ranker: exit $code $(cat eval.err)"

start() {  # start [extra flags]: serve on a free port, set URL
  "$MTRANK" serve --model models/ranker --retrieval models/seq --catalog catalog.csv --port 0 --threads 2 \
    --admin-token-file token "$@" > server.out 2> server.err &
  SERVER_PID=$!
  for _ in $(seq 200); do grep -q "listening on" server.out 2>/dev/null && break; sleep 0.1; done
  URL=$(grep -o "http://127.0.0.1:[0-9]*" server.out) || fail "server did not start: $(cat server.err)"
}
stop() {
  kill -TERM "$SERVER_PID"
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  wait "$SERVER_PID" || fail "the server did not exit 0 on SIGTERM"
  SERVER_PID=""
}
C="curl -s --max-time 10 -H Content-Type:application/json"
post() { $C -o out.json -w '%{http_code}' -X POST --data-binary "$2" "$URL$1"; }

# Without --state-dir: recommendations by history; events are off.
start
grep -q "retrieval model seq" server.out || fail "the start line does not name the retrieval model: $(cat server.out)"
[ "$(post /v1/recommend '{"history": [3, 17, 22], "k": 5, "context": {"hour": 9}}')" = 200 ] || fail "recommend by history: $(cat out.json)"
python3 - <<'PY' || fail "recommend response: $(cat out.json)"
import json
r = json.load(open("out.json"))
res = r["results"]
assert len(res) == 5 and r["retrieved"] == 27 and r["not_in_catalog"] == 0, r
assert [x["score"] for x in res] == sorted((x["score"] for x in res), reverse=True)
assert all(set(x) == {"item", "score", "retrieval_score", "tasks"} and set(x["tasks"]) == {"click"} for x in res)
assert not {x["item"] for x in res} & {"3", "17", "22"}  # the history is left out
assert r["model"]["name"] == "ranker" and r["retrieval_model"]["name"] == "seq"
PY
[ "$(post /v1/events '{"user": "alice", "item": 3}')" = 404 ] && grep -q "start the server with --state-dir" out.json || fail "events without a store: $(cat out.json)"
[ "$(post /v1/recommend '{"user": "alice"}')" = 400 ] && grep -q 'keeps no user state' out.json || fail "recommend by user without a store: $(cat out.json)"
[ "$(post /v1/recommend '{"history": [3], "k": 0}')" = 400 ] && grep -q '"k: must be a positive integer"' out.json || fail "bad k: $(cat out.json)"
[ "$($C -o /dev/null -w '%{http_code}' "$URL/v1/recommend")" = 405 ] || fail "GET /v1/recommend"
stop

# With a store: events, then the same recommendations as the history gives; a restart keeps them.
start --state-dir state
for item in 3 17 22 9 14; do
  [ "$(post /v1/events "{\"user\": \"alice\", \"item\": $item}")" = 200 ] || fail "event: $(cat out.json)"
done
grep -q '"events":5' out.json || fail "event count: $(cat out.json)"
[ "$(post /v1/recommend '{"user": "alice", "k": 6, "context": {"hour": 20}}')" = 200 ] || fail "recommend by user: $(cat out.json)"
mv out.json by_user.json
[ "$(post /v1/recommend '{"history": [3, 17, 22, 9, 14], "k": 6, "context": {"hour": 20}}')" = 200 ] || fail "recommend by history"
mv out.json by_history.json
python3 - <<'PY' || fail "a user's state and the same history give different recommendations"
import json
a, b = json.load(open("by_user.json"))["results"], json.load(open("by_history.json"))["results"]
assert [x["item"] for x in a] == [x["item"] for x in b], (a, b)
assert all(abs(x["retrieval_score"] - y["retrieval_score"]) < 1e-4 for x, y in zip(a, b))
PY
[ "$(post /v1/recommend '{"user": "bob"}')" = 404 ] && grep -q 'no events of this user' out.json || fail "unknown user: $(cat out.json)"
$C "$URL/metrics" > metrics.txt
grep -q 'mtrank_events_total{status="2xx"} 5' metrics.txt || fail "events count: $(grep events_total metrics.txt)"
grep -q 'mtrank_recommend_requests_total{status="4xx"} 1' metrics.txt || fail "recommend 4xx count"
grep -q 'mtrank_retrieval_model_info{name="seq"' metrics.txt || fail "retrieval model info"
stop

start --state-dir state
grep -q "1 users' state in state" server.out || fail "the restarted server does not see the stored user: $(cat server.out)"
[ "$(post /v1/recommend '{"user": "alice", "k": 6, "context": {"hour": 20}}')" = 200 ] || fail "recommend after restart"
python3 -c 'import json,sys; a=json.load(open("by_user.json"))["results"]; b=json.load(open("out.json"))["results"]; sys.exit(a != b)' ||
  fail "recommendations changed across a restart"
[ "$(post /v1/events '{"user": "alice", "item": 5}')" = 200 ] && grep -q '"events":6' out.json || fail "event after restart: $(cat out.json)"
# A second server on the same store is refused (two writers could lose events).
set +e
"$MTRANK" serve --model models/ranker --retrieval models/seq --catalog catalog.csv --port 0 --state-dir state \
  > second.out 2> second.err
code=$?
set -e
[ "$code" = 2 ] && grep -q "another process" second.err || fail "a second server on one store: exit $code, $(cat second.err)"

# A reload swaps the retrieval model (and re-reads the catalog) with the ranker;
# the user's state of the old model still gives recommendations (from their recent items).
R() { $C -o out.json -w '%{http_code}' -X POST -H 'Authorization: Bearer s3cret' --data-binary "$1" "$URL/v1/reload"; }
[ "$(R '{"retrieval_dir": "seq2"}')" = 200 ] && grep -q '"retrieval_model":{"name":"seq2"' out.json || fail "retrieval reload: $(cat out.json)"
[ "$(R '{"retrieval_dir": "/etc"}')" = 403 ] || fail "retrieval_dir outside the models root"
[ "$(post /v1/recommend '{"user": "alice", "k": 3}')" = 200 ] && grep -q '"name":"seq2"' out.json || fail "recommend after reload: $(cat out.json)"
cp -r models/seq2 models/broken && head -c 100 models/seq2/weights.pt > models/broken/weights.pt
[ "$(R '{"retrieval_dir": "broken"}')" = 422 ] || fail "broken retrieval model reload"
[ "$(post /v1/recommend '{"user": "alice", "k": 3}')" = 200 ] && grep -q '"name":"seq2"' out.json || fail "serving after a refused reload"
stop

# A corrupt store is refused at start, naming the file (exit code 3).
head -c 50000 /dev/urandom > state/data.mdb
set +e
"$MTRANK" serve --model models/ranker --retrieval models/seq --catalog catalog.csv --port 0 --state-dir state \
  > server.out 2> server.err
code=$?
set -e
[ "$code" = 3 ] && grep -q "state/data.mdb: not a readable user-state store" server.err || fail "corrupt store: exit $code, $(cat server.err)"
echo "recommend end-to-end: ok"
