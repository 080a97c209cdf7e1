#!/usr/bin/env bash
# Data-parallel training end to end through `mtrank train --nproc-per-node`:
# two workers write what one process writes (the same metrics up to float
# rounding), and a worker that dies or hangs ends the run with a non-zero exit
# and a message naming it, within a bounded time, leaving no model directory.
set -euo pipefail
MTRANK=$1
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*"; exit 1; }

"$MTRANK" quickstart --dir qs --rows 12000 --threads 1 >/dev/null 2>qs.err || { cat qs.err; fail quickstart; }
DATA=(--config qs/quickstart.toml --train qs/train.csv --val qs/val.csv --test qs/test.csv)

# Two workers against one process with the same (global) batch.
"$MTRANK" train "${DATA[@]}" --out one --metrics-out one.json --threads 1 --quiet >/dev/null 2>one.err ||
  { cat one.err; fail "one process"; }
"$MTRANK" train "${DATA[@]}" --out two --metrics-out two.json --nproc-per-node 2 --quiet >two.out 2>two.err ||
  { cat two.err; fail "two workers"; }
[ "$(grep -c 'model written to two' two.err)" = 1 ] && [ "$(grep -c 'test metrics' two.out)" = 1 ] || { cat two.out two.err; fail "rank 0 alone reports"; }
[ ! -e two.checkpoint ] || fail "the finished run left its checkpoint"
for f in config.toml preprocess.json weights.pt meta.json manifest.json; do [ -s "two/$f" ] || fail "missing two/$f"; done
python3 - <<'PY' || fail "two workers' metrics differ from one process's"
import json
a, b = json.load(open("one.json")), json.load(open("two.json"))
assert a["world_size"] == 1 and b["world_size"] == 2 and b["threads"] == 1, (a["world_size"], b["world_size"], b["threads"])
assert a["epochs"] == b["epochs"] and a["best_epoch"] == b["best_epoch"], (a["epochs"], b["epochs"])
for task, m in a["tasks"].items():
    for k in ("auc", "logloss", "rmse"):
        if k in m: assert abs(m[k] - b["tasks"][task][k]) < 1e-4, (task, k, m[k], b["tasks"][task][k])
for x, y in zip(a["history"], b["history"]):
    assert abs(x["train_loss"] - y["train_loss"]) < 1e-4 * max(1, abs(x["train_loss"])), (x["train_loss"], y["train_loss"])
PY

# Row-wise sharded tables: each worker holds half of every table; the run still trains what one process trains.
printf 'extends = "qs/quickstart.toml"\n[train]\ntable_sharding = "row"\n' > sharded.toml
"$MTRANK" train --config sharded.toml --train qs/train.csv --val qs/val.csv --test qs/test.csv --out sharded \
  --metrics-out sharded.json --nproc-per-node 2 --quiet >/dev/null 2>sharded.err || { cat sharded.err; fail "sharded tables"; }
grep -Eq "table_sharding = ['\"]row" sharded/config.toml || fail "the model's config.toml does not record the sharding"
ls sharded.checkpoint* >/dev/null 2>&1 && fail "the finished sharded run left checkpoint files"
python3 - <<'PY' || fail "two workers with sharded tables differ from one process"
import json
a, b = json.load(open("one.json")), json.load(open("sharded.json"))
assert b["world_size"] == 2 and a["epochs"] == b["epochs"], (b["world_size"], a["epochs"], b["epochs"])
for task, m in a["tasks"].items():
    for k in ("auc", "logloss", "rmse"):
        if k in m: assert abs(m[k] - b["tasks"][task][k]) < 1e-4, (task, k, m[k], b["tasks"][task][k])
PY

# A sequential (next-item) model, dropout off: two workers train what one process trains.
python3 - <<'PY'
import random
random.seed(5)
with open("seq.txt", "w") as f:
    for u in range(121):
        item = random.randrange(30) + 1
        for e in range(15):
            f.write(f"{u} {item}\n")
            item = (7 * item + 3) % 30 + 1 if random.random() < 0.8 else random.randrange(30) + 1
PY
printf '[sequential]\nwidths = [4, 8]\nblocks = 1\nmax_len = 12\ndropout = 0\n[train]\nbatch_size = 33\neval_every_steps = 20\n' > seq.toml
"$MTRANK" train --config seq.toml --train seq.txt --out seq1 --metrics-out seq1.json --max-steps 40 --threads 1 \
  --quiet >/dev/null 2>seq1.err || { cat seq1.err; fail "sequential, one process"; }
"$MTRANK" train --config seq.toml --train seq.txt --out seq2 --metrics-out seq2.json --max-steps 40 \
  --nproc-per-node 2 --quiet >/dev/null 2>seq2.err || { cat seq2.err; fail "sequential, two workers"; }
[ -s seq2/weights.pt ] && [ ! -e seq2.checkpoint ] || fail "sequential, two workers: model directory or checkpoint"
python3 - <<'PY' || fail "two workers' sequential metrics differ from one process's"
import json
a, b = json.load(open("seq1.json")), json.load(open("seq2.json"))
assert a["world_size"] == 1 and b["world_size"] == 2, (a["world_size"], b["world_size"])
assert len(a["history"]) == len(b["history"]) >= 2, (len(a["history"]), len(b["history"]))
for x, y in zip(a["history"], b["history"]):
    assert abs(x["train_loss"] - y["train_loss"]) < 1e-4 * max(1, abs(x["train_loss"])), (x, y)
for width, m in a["widths"].items():
    for k in ("ndcg@10", "recall@10", "mrr"):
        assert abs(m[k] - b["widths"][width][k]) < 1e-3, (width, k, m[k], b["widths"][width][k])
assert b["widths"]["8"]["recall@10"] > 0.3, b["widths"]["8"]  # it learned the chain
PY

# A sequential run with dropout, killed after a checkpoint, then resumed: it ends exactly as the
# uninterrupted one (rank 0's stream is in the checkpoint, the others reseed at every checkpoint).
printf '[sequential]\nwidths = [4, 8]\nblocks = 1\nmax_len = 12\n[train]\nbatch_size = 33\neval_every_steps = 8\nepochs = 100\npatience = 0\n' > seqr.toml
"$MTRANK" train --config seqr.toml --train seq.txt --out seqr1 --metrics-out seqr1.json --max-steps 160 \
  --nproc-per-node 2 --quiet >/dev/null 2>seqr1.err || { cat seqr1.err; fail "sequential with dropout, two workers"; }
"$MTRANK" train --config seqr.toml --train seq.txt --out seqr2 --metrics-out seqr2.json --max-steps 160 \
  --nproc-per-node 2 --quiet >/dev/null 2>seqr2.err &
LAUNCHER=$!
for _ in $(seq 1 300); do [ -e seqr2.checkpoint ] && break; sleep 0.02; done
[ -e seqr2.checkpoint ] || fail "the sequential run wrote no checkpoint"
for p in $(pgrep -P "$LAUNCHER"); do kill -9 "$p" 2>/dev/null || true; done
wait "$LAUNCHER" || true
[ ! -e seqr2 ] || fail "the interrupted run wrote its model directory"
"$MTRANK" train --config seqr.toml --train seq.txt --out seqr2 --metrics-out seqr2.json --max-steps 160 \
  --nproc-per-node 2 --resume --quiet >/dev/null 2>seqr2.err || { cat seqr2.err; fail "sequential resume, two workers"; }
python3 - <<'PY' || fail "the resumed two-worker run differs from the uninterrupted one"
import json
a, b = json.load(open("seqr1.json")), json.load(open("seqr2.json"))
assert b["resumed"] and not a["resumed"]
assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]], (a["history"], b["history"])
assert a["widths"] == b["widths"], (a["widths"], b["widths"])
PY

# Streamed rows (out of core) with two workers: each streams its own temporary store, removed after.
printf 'extends = "quickstart.toml"\n[data]\nblock_rows = 1000\nshuffle_buffer_rows = 3000\n' > qs/stream.toml
"$MTRANK" train --config qs/stream.toml --train qs/train.csv --val qs/val.csv --test qs/test.csv --out s1 \
  --metrics-out s1.json --stream --threads 1 --quiet >/dev/null 2>s1.err || { cat s1.err; fail "streamed, one process"; }
"$MTRANK" train --config qs/stream.toml --train qs/train.csv --val qs/val.csv --test qs/test.csv --out s2 \
  --metrics-out s2.json --stream --nproc-per-node 2 --quiet >/dev/null 2>s2.err || { cat s2.err; fail "streamed, two workers"; }
ls -d s2.blocks* >/dev/null 2>&1 && fail "the workers' temporary block stores were left behind"
python3 - <<'PY' || fail "two streaming workers differ from one streaming process"
import json
a, b = json.load(open("s1.json")), json.load(open("s2.json"))
assert a["streamed"] and b["streamed"] and b["world_size"] == 2
for task, m in a["tasks"].items():
    for k in ("auc", "logloss", "rmse"):
        if k in m: assert abs(m[k] - b["tasks"][task][k]) < 1e-4, (task, k, m[k], b["tasks"][task][k])
PY

# A resume without a checkpoint: every worker stops with the same error, the launcher returns its code.
set +e
"$MTRANK" train "${DATA[@]}" --out absent --nproc-per-node 2 --resume --quiet >/dev/null 2>resume.err
rc=$?
set -e
[ "$rc" = 4 ] || { cat resume.err; fail "resume without a checkpoint: exit $rc, expected 4"; }
grep -q "no checkpoint to resume from" resume.err || { cat resume.err; fail "resume message"; }
grep -q "worker rank [01] (pid [0-9]*) exited with code 4" resume.err || { cat resume.err; fail "launcher message"; }

# --nproc-per-node inside a worker's environment is refused.
set +e
WORLD_SIZE=2 RANK=0 "$MTRANK" train "${DATA[@]}" --out x --nproc-per-node 2 >/dev/null 2>nested.err
rc=$?
set -e
[ "$rc" = 2 ] && grep -q "WORLD_SIZE is already set" nested.err || { cat nested.err; fail "nested launch: exit $rc"; }

# Workers started by hand (as on two machines: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) that read
# different training data: every worker stops with a config error naming the rank that differs.
head -n 5001 qs/train.csv > qs/train_part.csv
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
set +e
RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$MTRANK" train "${DATA[@]}" --out by_hand \
  --dist-timeout 30 --quiet >/dev/null 2>hand0.err &
first=$!
RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$MTRANK" train --config qs/quickstart.toml \
  --train qs/train_part.csv --val qs/val.csv --out by_hand --dist-timeout 30 --quiet >/dev/null 2>hand1.err
rc1=$?
wait "$first"
rc0=$?
set -e
[ "$rc0" = 2 ] && [ "$rc1" = 2 ] || { cat hand0.err hand1.err; fail "workers with different data: exits $rc0 and $rc1"; }
grep -q "disagree on the config and training data.*rank(s) 1 differ from rank 0" hand0.err ||
  { cat hand0.err; fail "the disagreement message"; }
[ ! -e by_hand ] || fail "workers that disagree wrote a model"

# The pid of the worker with RANK=$2 among launcher $1's children.
worker_pid() {
  local p
  for p in $(pgrep -P "$1"); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "RANK=$2"; then echo "$p"; return; fi
  done
}
# Starts a long run in the background; sets LAUNCHER once both workers train (rank 0 wrote epoch 1's checkpoint).
start_long_run() {
  printf 'extends = "quickstart.toml"\n[train]\nepochs = 1000\npatience = 0\n' > qs/long.toml
  "$MTRANK" train --config qs/long.toml --train qs/train.csv --val qs/val.csv --out "$1" --nproc-per-node 2 \
    --dist-timeout 4 --quiet >"$1.out" 2>"$1.err" &
  LAUNCHER=$!
  for _ in $(seq 1 600); do [ -e "$1.checkpoint" ] && return; sleep 0.1; done
  cat "$1.err"; fail "the long run did not start"
}

# A worker killed mid-run: the other stops within seconds, the launcher names the dead one.
start_long_run killed
victim=$(worker_pid "$LAUNCHER" 1)
[ -n "$victim" ] || fail "no worker with RANK=1"
start=$(date +%s)
kill -9 "$victim"
set +e
wait "$LAUNCHER"
rc=$?
set -e
took=$(( $(date +%s) - start ))
[ "$rc" != 0 ] || fail "a killed worker gave exit 0"
grep -q "worker rank 1 (pid $victim) was killed by signal 9" killed.err || { cat killed.err; fail "launcher message"; }
[ "$took" -le 30 ] || fail "the run took $took s to stop after a worker died"
[ ! -e killed ] || fail "a model directory was written by a failed run"

# A worker that hangs (stopped): the other gives up at --dist-timeout, naming its own rank.
start_long_run hung
victim=$(worker_pid "$LAUNCHER" 1)
start=$(date +%s)
kill -STOP "$victim"
set +e
wait "$LAUNCHER"
rc=$?
set -e
took=$(( $(date +%s) - start ))
[ "$rc" != 0 ] || fail "a hung worker gave exit 0"
grep -q "rank 0 of 2: .* failed" hung.err || { cat hung.err; fail "rank 0's message"; }
grep -q "worker rank 0 (pid [0-9]*) exited with code 1" hung.err || { cat hung.err; fail "launcher message"; }
[ "$took" -le 40 ] || fail "the run took $took s to stop with a hung worker (timeout 4 s)"
[ ! -e hung ] || fail "a model directory was written by a failed run"
! kill -0 "$victim" 2>/dev/null || fail "the hung worker was left running"
# The launcher killed outright (SIGKILL: it cannot stop anyone): its workers get SIGTERM from the
# kernel (PR_SET_PDEATHSIG) and stop; none is left training.
start_long_run orphaned
w0=$(worker_pid "$LAUNCHER" 0)
w1=$(worker_pid "$LAUNCHER" 1)
kill -9 "$LAUNCHER"
wait "$LAUNCHER" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$w0" 2>/dev/null || kill -0 "$w1" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$w0" 2>/dev/null && ! kill -0 "$w1" 2>/dev/null || fail "workers outlived their launcher"

# SIGTERM to the launcher (a scheduler's stop): it stops the workers and exits 128 + 15.
start_long_run terminated
kill -TERM "$LAUNCHER"
set +e
wait "$LAUNCHER"
rc=$?
set -e
[ "$rc" = 143 ] || { cat terminated.err; fail "SIGTERM to the launcher: exit $rc"; }
grep -q "stopping the workers" terminated.err || { cat terminated.err; fail "SIGTERM message"; }
[ ! -e terminated ] || fail "a stopped run wrote its model directory"
echo "distributed: all checks passed"
