#!/usr/bin/env bash
# The census MMoE's forward per request in mtrank, in eager LibTorch (C++) and
# in eager PyTorch (Python), same weights, same featurized candidates, one run.
#   bench/serve_vs_pytorch.sh MODEL_DIR [THREADS=1]
# MODEL_DIR: an MMoE trained with examples/census/mmoe.toml. Needs
# ../shared/datasets and Debian's python3-torch (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1
THREADS=${2:-1}
PY=/usr/bin/python3  # Debian's python, where python3-torch lives
"$PY" -c "import torch" 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-torch >/dev/null; } ||
  { echo "needs Debian's python3-torch: run 'apt-get install python3-torch' as root" >&2; exit 1; }
# The same BLAS kernel in both (Debian's OpenBLAS misdetects some CPUs as
# Prescott; mtrank corrects that itself, Python's torch does not).
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  export OPENBLAS_CORETYPE=$(build/mtrank doctor --seconds 0.1 | awk -F': *' '/^OpenBLAS core/{print $2}')
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
build/bench/bench_serve_vs_eager "$MODEL" ../shared/datasets/census-test.csv.gz "$THREADS" "$WORK/export.pt" \
  > "$WORK/cpp.txt"
"$PY" bench/pytorch_eager.py "$WORK/export.pt" "$THREADS" > "$WORK/py.txt"
echo "threads $THREADS; p50 ms per request, model forward on featurized candidates"
"$PY" - "$WORK/cpp.txt" "$WORK/py.txt" <<'PY'
import sys
cpp = {l.split()[0]: l.split() for l in open(sys.argv[1]) if l.split()[0].isdigit()}
py = {l.split()[0]: l.split() for l in open(sys.argv[2]) if l.split()[0].isdigit()}
print(f"{'candidates':>10} {'mtrank':>9} {'LibTorch eager':>15} {'PyTorch eager':>14} {'LibTorch/mtrank':>16} {'PyTorch/mtrank':>15}")
for n in cpp:
    ours, libtorch, pytorch = float(cpp[n][1]), float(cpp[n][2]), float(py[n][1])
    print(f"{n:>10} {ours:>9.3f} {libtorch:>15.3f} {pytorch:>14.3f} {libtorch / ours:>15.1f}x {pytorch / ours:>14.1f}x")
PY
