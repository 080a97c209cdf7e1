#!/usr/bin/env bash
# ESMM against MMoE on the quickstart impression log, conversion = like
# (docs/experiments.md, section 6): click (all impressions), click and like
# (all impressions: pCTCVR), like on clicked rows (pCVR).
#   experiments/esmm.sh [OUT_DIR=mtrank-esmm] [ROWS=200000] [SEEDS=1,2,3]
# Needs nothing but the build: the data is the synthetic impression log.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-mtrank-esmm}
ROWS=${2:-200000}
SEEDS=${3:-1,2,3}
MTRANK=${MTRANK:-build/mtrank}
mkdir -p "$OUT"
[ -s "$OUT/data/train.csv" ] || "$MTRANK" quickstart --dir "$OUT/data" --rows "$ROWS" --threads 1 >/dev/null
# The tasks: an empty like (no click) is a 0, so no value is missing here.
TASKS='[data]
missing_labels = []
missing_values = []

[[tasks]]
name = "click"
column = "click"

[[tasks]]
name = "click_and_like"
column = "like"
positive = ["1"]
'
cat > "$OUT/esmm.toml" <<TOML
extends = "data/quickstart.toml"
$TASKS
[[tasks]]
name = "like"
column = "like"
positive = ["1"]
where = { column = "click", equals = ["1"] }
weight = 0                  # pCVR = pCTCVR / pCTR: evaluated on clicked rows, trained through click_and_like

[model]
type = "esmm"
embedding_dim = 8
tower_hidden = [64, 32]
TOML
cat > "$OUT/mmoe.toml" <<TOML
extends = "data/quickstart.toml"
$TASKS
[[tasks]]
name = "like"
column = "like"
positive = ["1"]
where = { column = "click", equals = ["1"] }   # the usual CVR model: trained on clicked rows

[model]
type = "mmoe"
embedding_dim = 8
num_experts = 4
expert_hidden = [32]
tower_hidden = [16]
TOML
"$MTRANK" compare "$OUT/esmm.toml" "$OUT/mmoe.toml" --baseline mmoe --seeds "$SEEDS" --threads 1 \
  --out-dir "$OUT/runs" --markdown
