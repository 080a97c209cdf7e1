#!/usr/bin/env bash
# Position-bias correction measured against simulated truth (docs/experiments.md
# section 8): for each click model, eta and logger, simulate a log from
# MovieLens ratings (mtrank simulate), train every method on it, and rank the
# held-out users' lists as served (bias features missing), scored by NDCG@10
# on the true grades (mtrank eval --truth).
#   experiments/position_bias.sh [OUT=/work/exp-bias] [SEEDS="1"] [GRID=main|full]
# SETTINGS="pbm:2:strong ..." (click model:eta:logger) replaces GRID's list.
# Methods (METHODS, in this order by default): naive (no bias features),
# feature (position as a feature, missing at serving), tower (YouTube's
# shallow tower, 10% position dropout), tower_no_dropout, pal (P(seen) x
# P(click | seen)), ips_true and ips_estimated (naive with clicks weighted by
# 1 / theta: the true examination probability, or PAL's learned P(seen)), and
# oracle (trained on the true grades).
# Prints one row per (setting, method), writes OUT/results.tsv and one HTML
# report per click model and eta (OUT/report-CM-ETA.html).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/work/exp-bias}
SEEDS=${2:-1}
GRID=${3:-main}
MTRANK=${MTRANK:-build/mtrank}
SESSIONS=${SESSIONS:-20000}
METHODS=${METHODS:-naive feature tower tower_no_dropout pal ips_true ips_estimated oracle}
mkdir -p "$OUT"
if [ -n "${SETTINGS:-}" ]; then
  :  # e.g. SETTINGS="pbm:2:strong additive:0.5:weak" (click model:eta:logger)
elif [ "$GRID" = full ]; then
  SETTINGS=""
  for cm in pbm additive; do for eta in 0.5 1 2; do for lg in weak medium strong; do SETTINGS+="$cm:$eta:$lg "; done; done; done
else
  SETTINGS="pbm:1:medium additive:1:medium"
fi
RESULTS="$OUT/results.tsv"
[ -f "$RESULTS" ] || printf 'click_model\teta\tlogger\tseed\tmethod\tndcg10\tbias_rank_corr\tbias_monotone\n' >"$RESULTS"
for setting in $SETTINGS; do
  IFS=: read -r cm eta lg <<<"$setting"
  for seed in $SEEDS; do
    sim="$OUT/sim-$cm-$eta-$lg-$seed"
    if [ ! -f "$sim/simulation.json" ]; then
      "$MTRANK" simulate --out "$sim" --click-model "$cm" --eta "$eta" --logger "$lg" --seed "$seed" \
        --sessions "$SESSIONS" --quiet >/dev/null
      # The oracle's training data: the log with the true grade joined row for row.
      for split in train val test; do
        paste -d, "$sim/$split.csv" <(cut -d, -f3 "$sim/$split.truth.csv") >"$sim/$split.graded.csv"
      done
    fi
    for method in $METHODS; do
      if grep -q "^$cm	$eta	$lg	$seed	$method	" "$RESULTS"; then continue; fi
      config=examples/movielens/youtube.toml
      [ "$method" = tower ] || config=experiments/position_bias/$method.toml
      suffix=.csv rank=click
      [ "$method" = oracle ] && suffix=.graded.csv rank=grade
      if [ "$method" = ips_true ] || [ "$method" = ips_estimated ]; then
        # The weight column: 1 / theta on clicked rows, 1 elsewhere; theta the
        # true examination probability, or PAL's learned P(seen) by position.
        # Weighting clicks only is the common approximation, not the unbiased
        # pointwise estimator (Saito et al. 2020: soft labels c / theta), whose
        # labels can exceed 1; its expected loss still depends on theta.
        kind=${method#ips_} suffix=.ipw-${method#ips_}.csv
        [ "$kind" = true ] || [ -f "$sim/model-pal.eval.json" ] ||
          { echo "ips_estimated needs the pal method first (METHODS order)" >&2; exit 1; }
        for split in train val test; do
          /usr/bin/python3 - "$sim/$split.csv" "$sim/$split.truth.csv" "$kind" "$sim/model-pal.eval.json" \
            >"$sim/$split$suffix" <<'PY'
import csv, json, math, sys
log, truth, kind, pal = sys.argv[1:5]
theta = {}
if kind == "estimated":
    for b in json.load(open(pal))["truth"]["bias_by_position"]:
        theta[str(b["position"])] = math.exp(b["learned"])  # log P(seen), 0 at position 1
out = csv.writer(sys.stdout, lineterminator="\n")
with open(log) as f, open(truth) as t:
    rows, truths = csv.reader(f), csv.DictReader(t)
    header = next(rows)
    out.writerow(header + ["ipw"])
    click, position = header.index("click"), header.index("position")
    for row, tr in zip(rows, truths):
        if kind == "true":
            p = float(tr["p_examined"])
        elif row[position] in theta:
            p = theta[row[position]]
        else:
            sys.exit("%s: position %s has no learned P(seen) in %s" % (log, row[position], pal))
        out.writerow(row + ["%.6g" % (1.0 / p if row[click] == "1" else 1.0)])
PY
        done
      fi
      model="$sim/model-$method"
      "$MTRANK" train --config "$config" --train "$sim/train$suffix" --val "$sim/val$suffix" --out "$model" \
        --seed "$seed" --threads 1 --quiet >"$model.log" 2>&1 || { cat "$model.log"; exit 1; }
      "$MTRANK" eval --model "$model" --data "$sim/test$suffix" --truth "$sim/test.truth.csv" --rank-by "$rank" \
        --threads 1 --metrics-out "$model.eval.json" >"$model.eval.txt"
      row=$(/usr/bin/python3 - "$model.eval.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["truth"]
rho = t.get("bias_rank_correlation")
mono = t.get("bias_monotone")
print("%.4f\t%s\t%s" % (t["ndcg@10"], "-" if rho is None else "%.3f" % rho, "-" if mono is None else str(mono).lower()))
PY
)
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$cm" "$eta" "$lg" "$seed" "$method" "$row" | tee -a "$RESULTS"
    done
  done
done
# The plots: one report per click model and eta, every method over the loggers
# and seeds simulated (NDCG@10 by logger strength; learned bias by position).
for cm_eta in $(for setting in $SETTINGS; do echo "${setting%:*}"; done | sort -u); do
  cm=${cm_eta%%:*} eta=${cm_eta#*:} args=""
  for f in "$OUT"/sim-"$cm"-"$eta"-*/model-*.eval.json; do
    [ -f "$f" ] || continue
    m=$(basename "$f" .eval.json); args="$args ${m#model-}=$f"
  done
  [ -n "$args" ] && "$MTRANK" report $args --title "position bias: $cm, eta $eta" --out "$OUT/report-$cm-$eta.html" | tail -1
done
# The share of the naive-to-oracle gap each method closes, per setting (mean over seeds).
/usr/bin/python3 - "$RESULTS" <<'PY'
import csv, sys, collections
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows:
    by[(r["click_model"], r["eta"], r["logger"])][r["method"]].append(float(r["ndcg10"]))
methods = ("naive", "feature", "tower", "tower_no_dropout", "pal", "ips_true", "ips_estimated", "oracle")
print("\n| click model | eta | logger | seeds | " + " | ".join(methods) + " | gap closed: " + " | ".join(methods[1:-1]) + " |")
print("|---|---|---|---|" + "---|" * (2 * len(methods) - 2))
for key, m in sorted(by.items()):
    mean = {k: sum(v) / len(v) for k, v in m.items()}
    if not all(k in mean for k in ("naive", "oracle")): continue
    gap = mean["oracle"] - mean["naive"]
    closed = lambda k: "-" if k not in mean or abs(gap) < 1e-9 else "%.0f%%" % (100 * (mean[k] - mean["naive"]) / gap)
    cells = ["%.4f" % mean[k] if k in mean else "-" for k in methods]
    print("| %s | %s | %s | %d | %s | %s |" % (key[0], key[1], key[2], len(m["naive"]), " | ".join(cells), " | ".join(closed(k) for k in methods[1:-1])))
PY
