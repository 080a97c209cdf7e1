#!/usr/bin/env bash
# Writes the wrk inputs that the serving load tests share into WORK_DIR:
# 32 request bodies of N consecutive census test rows (the model's input
# columns) and post.lua, which cycles through them and prints p99.9 and errors.
#   bench/wrk_rank_requests.sh MODEL_DIR N WORK_DIR
# Needs ../shared/datasets and python3 (run from the repository root).
set -euo pipefail
MODEL=$1
N=$2
WORK=$3

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
