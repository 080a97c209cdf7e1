#!/usr/bin/env bash
# docs/experiments.md section 11: the one service (issue 12) measured on the
# simulator's truth for held-out users. For each test user of `mtrank
# simulate` (users the ranker never saw), with their whole rating history:
#   retrieval alone         the sequential model's top 10 of 200 retrieved
#   retrieval + ranking     the ranker's top 10 of those 200 (/v1/recommend)
#   ranking 200 random      the ranker's top 10 of 200 random unseen items (/v1/rank)
#   ranking every item      the ranker's top 10 of every unseen item (/v1/rank)
# NDCG@10 on the true grades (gain 2^grade - 1), the ideal over every unseen item.
#   experiments/one_service.sh [OUT=runs/movielens]   (after examples/movielens/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/movielens}
DATA=${DATA:-../shared/datasets/movielens-small.csv.gz}
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
build/mtrank serve --model "$OUT/ranker" --retrieval "$OUT/seq" --catalog "$OUT/sim/items.csv" --port 0 --threads 2 \
  > "$WORK/out" 2> "$WORK/err" &
SERVER_PID=$!
for _ in $(seq 600); do grep -q "listening on" "$WORK/out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o "http://127.0.0.1:[0-9]*" "$WORK/out") || { cat "$WORK/err"; exit 1; }
python3 - "$URL" "$DATA" "$OUT/sim/test.relevance.csv" "$OUT/sim/items.csv" <<'PY'
import csv, gzip, http.client, json, math, random, sys, urllib.parse
url, ratings, relevance, catalog = sys.argv[1:5]
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port)
def post(path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse(); data = r.read()
    assert r.status == 200, (r.status, data[:300])
    return json.loads(data)
histories = {}
with gzip.open(ratings, "rt") as f:  # in time order per user, ties by file order (as mtrank reads it)
    rows = [(r["userId"], int(r["timestamp"]), n, r["movieId"]) for n, r in enumerate(csv.DictReader(f))]
for user, _, _, item in sorted(rows):
    histories.setdefault(user, []).append(item)
grade = {}
with open(relevance) as f:
    for r in csv.DictReader(f):
        grade.setdefault(r["user"], {})[r["item"]] = int(r["grade"])
items = {}
with open(catalog) as f:
    for r in csv.DictReader(f):
        items[r["item"]] = {k: r[k] for k in ("item", "year", "genres", "title_words")}
def ndcg(ranked, g, seen):
    dcg = sum((2 ** g.get(i, 0) - 1) / math.log2(p + 2) for p, i in enumerate(ranked[:10]))
    ideal = sorted((v for i, v in g.items() if i not in seen), reverse=True)[:10]
    idcg = sum((2 ** v - 1) / math.log2(p + 2) for p, v in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0
rng = random.Random(1)
methods = ["retrieval alone", "retrieval + ranking", "ranking 200 random", "ranking every item"]
sums = {m: 0.0 for m in methods}
n = 0
for user, g in sorted(grade.items()):
    history = histories[user]
    seen = set(history)
    context = {"hour": rng.randrange(24)}
    rec = post("/v1/recommend", {"history": history, "k": 200, "retrieve": 200, "context": context})["results"]
    by_retrieval = [x["item"] for x in sorted(rec, key=lambda x: -x["retrieval_score"])]
    by_score = [x["item"] for x in rec]
    unseen = [i for i in items if i not in seen]
    def rank(cands):
        res = post("/v1/rank", {"context": context, "candidates": [items[i] for i in cands], "top_k": 10})["results"]
        return [cands[x["index"]] for x in res]
    got = {"retrieval alone": by_retrieval, "retrieval + ranking": by_score,
           "ranking 200 random": rank(rng.sample(unseen, 200)), "ranking every item": rank(unseen)}
    for m in methods:
        sums[m] += ndcg(got[m], g, seen)
    n += 1
print(f"{n} held-out users (the simulator's test split), NDCG@10 on the true grades:")
for m in methods:
    print(f"  {m:22s} {sums[m] / n:.4f}")
PY
