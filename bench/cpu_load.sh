#!/usr/bin/env bash
# A reproducible background load: N processes each spinning on one core for
# SECONDS (bounded: they end by themselves), as another user's job would.
#   bench/cpu_load.sh [N=1] [SECONDS=60]
# Prints the PIDs; `kill PID...` ends them early.
set -euo pipefail
N=${1:-1}
SECONDS_=${2:-60}
for _ in $(seq "$N"); do
  timeout "$SECONDS_" sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &
  echo $!
done
