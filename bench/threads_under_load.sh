#!/usr/bin/env bash
# Census MMoE training at 1 and 2 threads, on an idle machine and beside
# bench/cpu_load.sh spinning on one core, under OpenMP wait policies:
# "default" (the environment as it is), "passive" (OMP_WAIT_POLICY=passive:
# idle OpenMP threads sleep at once) and "spinN" (GOMP_SPINCOUNT=N: libgomp's
# idle threads spin N times, then sleep). Issue 15: 2 threads must never be
# slower than 1 under load.
#   bench/threads_under_load.sh [ROUNDS=2] [POLICIES="default passive"] [THREADS="1 2"]
# Needs ../shared/datasets. Stop other work first. One line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
POLICIES=${2:-"default passive"}
THREAD_COUNTS=${3:-"1 2"}
MTRANK=${MTRANK:-build/mtrank}
D=../shared/datasets
WORK=$(mktemp -d)
LOAD=""
trap '[ -n "$LOAD" ] && kill $LOAD 2>/dev/null; rm -rf "$WORK"' EXIT
run() {  # run POLICY THREADS -> rows/s
  local env=()
  case "$1" in
    passive) env+=(OMP_WAIT_POLICY=passive) ;;
    spin*) env+=(GOMP_SPINCOUNT="${1#spin}") ;;
  esac
  env "${env[@]}" "$MTRANK" train --config examples/census/mmoe.toml --quiet --seed 1 --threads "$2" \
    --train $D/census-train.csv.gz --val $D/census-val.csv.gz --test $D/census-test.csv.gz \
    --out "$WORK/model" --metrics-out "$WORK/m.json" >/dev/null 2>&1
  /usr/bin/python3 -c "import json; print(round(json.load(open('$WORK/m.json'))['train_rows_per_s']))"
}
printf "%-6s %-6s %-8s %-7s %12s\n" round load policy threads train_rows/s
for round in $(seq "$ROUNDS"); do
  for load in 0 1; do
    LOAD=""
    [ "$load" = 1 ] && LOAD=$(bench/cpu_load.sh 1 600 | tr '\n' ' ')
    for policy in $POLICIES; do
      for t in $THREAD_COUNTS; do
        printf "%-6s %-6s %-8s %-7s %12s\n" "$round" "$load" "$policy" "$t" "$(run $policy $t)"
      done
    done
    [ -n "$LOAD" ] && kill $LOAD 2>/dev/null
    LOAD=""
  done
done
