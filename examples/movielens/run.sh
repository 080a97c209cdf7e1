#!/usr/bin/env bash
# "What to watch next" end to end on MovieLens (issue 12): trains the two
# stages from ../shared/datasets/movielens-small.csv.gz and prints the command
# that serves them together.
#   1. mtrank simulate: an impression log with known truth from the ratings
#      (positions, devices, clicks, watch, like, rating) and the item catalog.
#   2. The ranker: the YouTube multi-task model (youtube.toml) on that log.
#   3. The retriever: a Matryoshka LRU recommender (lru.toml) on the users'
#      rating histories in time order, with the catalog's genres and title words.
# Usage (from anywhere; outputs go to OUT, by default runs/movielens in the repo):
#   examples/movielens/run.sh              then run the printed command, adding --port and --state-dir
#   OUT=/tmp/ml STEPS=300 examples/movielens/run.sh   (a quicker, weaker retriever)
# The last line starts with "build/mtrank serve" and is run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
MTRANK=build/mtrank
DATA=${DATA:-../shared/datasets/movielens-small.csv.gz}
OUT=${OUT:-runs/movielens}
STEPS=${STEPS:-600}
THREADS=${THREADS:-0}
[ -x "$MTRANK" ] || { echo "run.sh: $MTRANK is missing: build first (scripts/build.sh)" >&2; exit 1; }
[ -f "$DATA" ] || { echo "run.sh: $DATA is missing (the MovieLens ratings of ../shared/datasets; DATA= names another)" >&2; exit 1; }
mkdir -p "$OUT"

echo "== 1/3 simulate an impression log and the item catalog ($OUT/sim)" >&2
"$MTRANK" simulate --ratings "$DATA" --out "$OUT/sim" --seed 1 >&2

echo "== 2/3 train the ranker ($OUT/ranker)" >&2
"$MTRANK" train --config examples/movielens/youtube.toml --train "$OUT/sim/train.csv" --val "$OUT/sim/val.csv" \
  --test "$OUT/sim/test.csv" --out "$OUT/ranker" --metrics-out "$OUT/ranker.json" --threads "$THREADS" >&2

echo "== 3/3 train the retriever ($OUT/seq, $STEPS steps)" >&2
"$MTRANK" train --config examples/movielens/lru.toml --train "$DATA" --items "$OUT/sim/items.csv" \
  --out "$OUT/seq" --metrics-out "$OUT/seq.json" --max-steps "$STEPS" --threads "$THREADS" >&2

echo "build/mtrank serve --model $OUT/ranker --retrieval $OUT/seq --catalog $OUT/sim/items.csv"
