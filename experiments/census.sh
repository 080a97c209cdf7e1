#!/usr/bin/env bash
# Census group 1 (income, marital) and group 2 (education, marital): every model
# of the zoo over 3 seeds, as seesaw tables against the single-task models.
#   experiments/census.sh [OUT_DIR] [THREADS]
# Needs ../shared/datasets. Trained results in OUT_DIR are reused on a re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-mtrank-census}
THREADS=${2:-1}
MTRANK=${MTRANK:-build/mtrank}
CONFIGS=()
for m in single_task shared_bottom omoe mmoe cgc ple wide_deep best best_ple single_task_best single_task_best_ple; do
  CONFIGS+=("examples/census/$m.toml")
done
echo "## group 1: income, marital"
"$MTRANK" compare "${CONFIGS[@]}" --seeds 1,2,3 --threads "$THREADS" --out-dir "$OUT/group1" --markdown --gbdt
echo
echo "## group 2: education, marital"
"$MTRANK" compare "${CONFIGS[@]}" --overlay examples/census/group2.toml --seeds 1,2,3 --threads "$THREADS" \
  --out-dir "$OUT/group2" --markdown --gbdt
echo
# The honest baseline: a single-task model of the same recipe and budget as
# `best` (docs/experiments.md, section 4). Results are reused from above.
for g in 1 2; do
  echo "## group $g against single_task_best"
  overlay=()
  [ "$g" = 2 ] && overlay=(--overlay examples/census/group2.toml)
  "$MTRANK" compare "${CONFIGS[@]}" "${overlay[@]}" --seeds 1,2,3 --threads "$THREADS" --out-dir "$OUT/group$g" \
    --baseline single_task_best --markdown
done
