#!/usr/bin/env bash
# The MMoE paper's synthetic experiment (Ma et al. 2018, section 5.2): for task
# correlations 0.5, 0.9 and 1.0, train Shared-Bottom, OMoE and MMoE of
# comparable size over several seeds and compare the held-out loss.
#   experiments/mmoe_synthetic.sh [OUT_DIR] [SEEDS]
# Writes OUT_DIR/results.tsv, OUT_DIR/table.md and docs/mmoe_synthetic.png.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-mtrank-synthetic}
SEEDS=${2:-"1 2 3 4 5"}
MTRANK=${MTRANK:-build/mtrank}
mkdir -p "$OUT"

# Models of about 15k parameters each over d = 100 inputs.
model_toml() {
  case $1 in
    shared_bottom) printf '[model]\ntype = "shared_bottom"\nbottom_hidden = [128]\ntower_hidden = [8]\n' ;;
    omoe) printf '[model]\ntype = "omoe"\nnum_experts = 8\nexpert_hidden = [16]\ntower_hidden = [8]\n' ;;
    mmoe) printf '[model]\ntype = "mmoe"\nnum_experts = 8\nexpert_hidden = [16]\ntower_hidden = [8]\n' ;;
  esac
}

features=$(python3 -c 'print(", ".join(f"\"x{i}\"" for i in range(100)))')
printf "correlation\tmodel\tseed\tloss\n" > "$OUT/results.tsv"
for p in 0.5 0.9 1.0; do
  # One data set per correlation (fixed generator seed); the train seed varies the model.
  "$MTRANK" synth mmoe --rows 16000 --correlation "$p" --seed 7 --out "$OUT/all-$p.csv" >/dev/null
  head -n 10001 "$OUT/all-$p.csv" > "$OUT/train-$p.csv"
  { head -n 1 "$OUT/all-$p.csv"; sed -n '10002,12001p' "$OUT/all-$p.csv"; } > "$OUT/val-$p.csv"
  { head -n 1 "$OUT/all-$p.csv"; sed -n '12002,16001p' "$OUT/all-$p.csv"; } > "$OUT/test-$p.csv"
  for model in shared_bottom omoe mmoe; do
    cfg="$OUT/$model.toml"
    {
      printf '[[features]]\nnames = [%s]\ntype = "numeric"\ntransform = "none"\n\n' "$features"
      printf '[[tasks]]\nname = "y1"\ntype = "regression"\ncolumn = "y1"\n\n'
      printf '[[tasks]]\nname = "y2"\ntype = "regression"\ncolumn = "y2"\n\n'
      model_toml $model
      printf '\n[train]\nlearning_rate = 0.001\nbatch_size = 256\nepochs = 60\npatience = 5\n'
    } > "$cfg"
    for seed in $SEEDS; do
      "$MTRANK" train --config "$cfg" --train "$OUT/train-$p.csv" --val "$OUT/val-$p.csv" --test "$OUT/test-$p.csv" \
        --out "$OUT/model" --metrics-out "$OUT/m.json" --seed "$seed" --quiet >/dev/null
      python3 - "$OUT/m.json" "$p" "$model" "$seed" >> "$OUT/results.tsv" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["tasks"]
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{sys.argv[4]}\t{(t['y1']['mse'] + t['y2']['mse']) / 2:.5f}")
PY
    done
  done
done

python3 - "$OUT" <<'PY'
import csv, statistics as st, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/results.tsv"), delimiter="\t"))
models = ["shared_bottom", "omoe", "mmoe"]
corrs = ["0.5", "0.9", "1.0"]
with open(f"{out}/table.md", "w") as f:
    f.write("| correlation | " + " | ".join(f"{m} mean (min..max)" for m in models) + " |\n")
    f.write("|---" * (len(models) + 1) + "|\n")
    for c in corrs:
        cells = []
        for m in models:
            v = [float(r["loss"]) for r in rows if r["correlation"] == c and r["model"] == m]
            cells.append(f"{st.mean(v):.4f} ({min(v):.4f}..{max(v):.4f})")
        f.write(f"| {c} | " + " | ".join(cells) + " |\n")
    with open(f"{out}/plot.dat", "w") as d:
        for i, c in enumerate(corrs):
            d.write(c + " " + " ".join(f"{st.mean([float(r['loss']) for r in rows if r['correlation'] == c and r['model'] == m]):.5f} "
                                       f"{min(float(r['loss']) for r in rows if r['correlation'] == c and r['model'] == m):.5f} "
                                       f"{max(float(r['loss']) for r in rows if r['correlation'] == c and r['model'] == m):.5f}" for m in models) + "\n")
print(open(f"{out}/table.md").read())
PY

if ! command -v gnuplot >/dev/null; then
  echo "installing gnuplot-nox for the plot (Debian package)"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
fi
gnuplot <<GP
set terminal pngcairo size 800,480 font "DejaVu Sans,11"
set output "docs/mmoe_synthetic.png"
set title "MMoE synthetic data: held-out loss (mean of y1, y2 MSE) vs task correlation"
set xlabel "task correlation p"
set ylabel "held-out MSE (mean, min..max over seeds)"
set xtics ("0.5" 0, "0.9" 1, "1.0" 2)
set key top right
set grid
plot "$OUT/plot.dat" using (\$0-0.08):2:3:4 with yerrorlines lw 2 title "Shared-Bottom", \
     "" using (\$0):5:6:7 with yerrorlines lw 2 title "OMoE", \
     "" using (\$0+0.08):8:9:10 with yerrorlines lw 2 title "MMoE"
GP
echo "plot: docs/mmoe_synthetic.png"
