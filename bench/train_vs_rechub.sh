#!/usr/bin/env bash
# mtrank against torch-rechub on the census MMoE in torch-rechub's own example
# configuration, back to back on one machine, and the ratio of their training
# rows/s at each thread count.
#   RECHUB=DIR bench/train_vs_rechub.sh [ROUNDS=3] [THREADS="1 2"]
# RECHUB: torch-rechub's source laid out as ../shared/peers/README.md says
# (commit 5a73b2e measured). Needs ../shared/datasets; installs Debian's
# python3-torch, python3-pandas, python3-sklearn and python3-tqdm if missing.
# Rounds interleave the two systems thread count by thread count; the ratio is
# of the medians. Stop other work on the machine first: this is a timing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
THREADS=${2:-"1 2"}
PEER=../shared/peers/torch_rechub_census.py
[ -n "${RECHUB:-}" ] && [ -d "$RECHUB/torch_rechub" ] ||
  { echo "set RECHUB to torch-rechub's source tree (see ../shared/peers/README.md)" >&2; exit 2; }
[ -f "$PEER" ] || { echo "missing $PEER" >&2; exit 2; }
PY=/usr/bin/python3  # Debian's python, where python3-torch lives
"$PY" -c "import torch, pandas, sklearn, tqdm" 2>/dev/null ||
  { apt-get update -qq && apt-get install -y -qq python3-torch python3-pandas python3-sklearn python3-tqdm >/dev/null; } ||
  { echo "needs Debian's python3-torch python3-pandas python3-sklearn python3-tqdm (apt-get install as root)" >&2; exit 1; }
MTRANK=${MTRANK:-build/mtrank}
# The peer gets the BLAS kernel mtrank runs with: Debian's OpenBLAS misdetects
# some CPUs as Prescott (5x slower sgemm), which mtrank corrects for itself
# (ensure_fast_blas) and Python's torch does not.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  export OPENBLAS_CORETYPE=$("$MTRANK" doctor --seconds 0.1 | awk -F': *' '/^OpenBLAS core/{print $2}')
fi
D=../shared/datasets
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$MTRANK" doctor --seconds 0.5 | grep -E "OpenBLAS core|cores|1 thread"
echo "both run with OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"
for round in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    /usr/bin/time -f "%M" -o "$WORK/rss" "$MTRANK" train --config examples/census/mmoe.toml --quiet --seed 1 \
      --threads "$t" --train $D/census-train.csv.gz --val $D/census-val.csv.gz --test $D/census-test.csv.gz \
      --out "$WORK/model" --metrics-out "$WORK/mtrank-$t-$round.json" >/dev/null 2>&1
    echo "$(cat "$WORK/rss")" > "$WORK/mtrank-$t-$round.rss"
    DATASETS=$D PYTHONPATH="$RECHUB" /usr/bin/time -f "%M" -o "$WORK/rss" "$PY" "$PEER" "$t" \
      "$WORK/rechub-$t-$round.json" >/dev/null 2>"$WORK/rechub.err" ||
      { tail -5 "$WORK/rechub.err"; echo "torch-rechub failed" >&2; exit 1; }
    echo "$(cat "$WORK/rss")" > "$WORK/rechub-$t-$round.rss"
    echo "round $round, $t thread(s): done" >&2
  done
done
"$PY" - "$WORK" "$ROUNDS" "$THREADS" <<'PY'
import json, statistics, sys
work, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def runs(system, t):
    out = []
    for r in range(1, rounds + 1):
        m = json.load(open(f"{work}/{system}-{t}-{r}.json"))
        rss = int(open(f"{work}/{system}-{t}-{r}.rss").read().split()[-1]) / 1024
        if system == "mtrank":
            out.append((m["train_rows_per_s"], m["tasks"]["income"]["auc"], m["tasks"]["marital"]["auc"], rss))
        else:
            out.append((m["train_rows_per_s"], m["test_auc_income"], m["test_auc_marital"], rss))
    return out
print(f"{'system':<13} {'threads':>7} {'rows/s per round':>32} {'median':>9} {'AUC income':>10} {'AUC marital':>11} {'max RSS MiB':>11}")
medians = {}
for t in threads:
    for system in ("mtrank", "torch-rechub"):
        rs = runs("mtrank" if system == "mtrank" else "rechub", t)
        med = statistics.median(r[0] for r in rs)
        medians[(system, t)] = med
        per = ", ".join(f"{r[0]:,.0f}" for r in rs)
        print(f"{system:<13} {t:>7} {per:>32} {med:>9,.0f} {rs[0][1]:>10.4f} {rs[0][2]:>11.4f} {max(r[3] for r in rs):>11.0f}")
for t in threads:
    print(f"mtrank / torch-rechub at {t} thread(s): {medians[('mtrank', t)] / medians[('torch-rechub', t)]:.1f}x")
PY
