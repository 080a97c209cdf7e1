#!/usr/bin/env bash
# Training throughput and peak memory of the census MMoE (torch-rechub's sizes), 1 and 2 threads.
#   bench/train_census.sh [CONFIG] [SEEDS]
# Needs ../shared/datasets (see its README). Prints one line per (threads, seed), with the share of
# the 1-core roofline: rows/s x the model's train_matmul_flops_per_row over `mtrank doctor`'s 1-thread sgemm.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-examples/census/mmoe.toml}
SEEDS=${2:-"1 2 3"}
D=../shared/datasets
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
SGEMM=$("${MTRANK:-build/mtrank}" doctor | sed -n 's/^ *1 thread: *\([0-9.]*\) GFLOP.*/\1/p')
echo "1-thread sgemm: $SGEMM GFLOP/s"
printf "%-8s %-5s %12s %10s %10s %10s %8s %9s\n" threads seed train_rows/s auc_income auc_marital peak_MiB epochs roofline
for threads in 1 2; do
  for seed in $SEEDS; do
    /usr/bin/time -f "%M" -o "$OUT/rss" "${MTRANK:-build/mtrank}" train --config "$CONFIG" --quiet \
      --train $D/census-train.csv.gz --val $D/census-val.csv.gz --test $D/census-test.csv.gz \
      --out "$OUT/model" --metrics-out "$OUT/m.json" --threads "$threads" --seed "$seed" >/dev/null 2>&1
    python3 - "$OUT/m.json" "$OUT/rss" "$threads" "$seed" "$SGEMM" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); rss_kib = int(open(sys.argv[2]).read().split()[-1])
t = m["tasks"]
roofline = m["train_rows_per_s"] * m["train_matmul_flops_per_row"] / (float(sys.argv[5]) * 1e9)
print(f"{sys.argv[3]:<8} {sys.argv[4]:<5} {m['train_rows_per_s']:12.0f} {t['income']['auc']:10.4f} "
      f"{t['marital']['auc']:10.4f} {rss_kib/1024:10.0f} {m['epochs']:8d} {100 * roofline:8.1f}%")
PY
  done
done
