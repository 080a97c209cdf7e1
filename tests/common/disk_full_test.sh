#!/usr/bin/env bash
# A disk that fills while mtrank writes (docs/reliability.md): the error says
# "disk full" and names the file, nothing half-written is left behind, and the
# model that was there before still loads, byte for byte unchanged.
#   disk_full_test.sh MTRANK PRELOAD_LIBRARY
set -euo pipefail
MTRANK=$1
PRELOAD=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }
# on_full_disk N MATCH command...: runs the command with the disk full under
# paths containing MATCH; it must fail and say "(disk full)" (stderr in errN.txt).
on_full_disk() {
  local n=$1 match=$2; shift 2
  set +e
  MTRANK_TEST_FULL_PATH="$match" LD_PRELOAD="$PRELOAD" "$@" >"out$n.txt" 2>"err$n.txt"
  local rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "case $n: exited 0 on a full disk: $*"
  grep -q "write failed: No space left on device (disk full)" "err$n.txt" || { cat "err$n.txt"; fail "case $n: no disk full message"; }
}

"$MTRANK" quickstart --dir qs --rows 3000 --threads 1 >/dev/null 2>&1 || fail quickstart
printf 'extends = "quickstart.toml"\n[train]\nepochs = 2\n' > qs/short.toml
( cd qs/model && sha256sum * ) > before.sha

# 1. The disk fills under the model being written (its temporary directory).
on_full_disk 1 "model.tmp-" "$MTRANK" train --config qs/short.toml --out qs/model --quiet
grep -q "qs/model.tmp-[0-9]*/" err1.txt || { cat err1.txt; fail "the message does not name the file"; }
ls -d qs/model.tmp-* qs/model.old-* 2>/dev/null && fail "litter left beside the model"
( cd qs/model && sha256sum -c --quiet ../../before.sha ) || fail "the previous model changed"
"$MTRANK" eval --model qs/model --data qs/test.csv >/dev/null 2>&1 || fail "the previous model does not load"
# The trained epochs are not lost: the last checkpoint is complete, and --resume writes the model once there is space.
[ -s qs/model.checkpoint ] || fail "no checkpoint kept after the failed save"
"$MTRANK" train --config qs/short.toml --out qs/model --resume --quiet >out1b.txt 2>err1b.txt || { cat err1b.txt; fail "resume after the full disk"; }
[ ! -e qs/model.checkpoint ] || fail "the checkpoint outlived the saved model"
( cd qs/model && sha256sum * ) > before.sha

# 2. The disk fills under the checkpoint of the first epoch.
on_full_disk 2 "model.checkpoint" "$MTRANK" train --config qs/short.toml --out qs/model --quiet
grep -q "model.checkpoint.*(disk full)" err2.txt || { cat err2.txt; fail "no disk full message for the checkpoint"; }
ls qs/ | grep -q "checkpoint" && { ls qs; fail "a partial checkpoint was left"; }
( cd qs/model && sha256sum -c --quiet ../../before.sha ) || fail "the previous model changed (checkpoint case)"

# 3. The metrics file: written through a temporary file, which is removed.
on_full_disk 3 "metrics-full" "$MTRANK" eval --model qs/model --data qs/test.csv --metrics-out metrics-full.json
ls | grep -q "metrics-full" && fail "a partial metrics file was left"
echo "disk full: clear errors, nothing half-written, the old model intact"
