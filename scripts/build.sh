#!/usr/bin/env bash
# Configures and builds mtrank (Release) into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
fi
# 2 parallel jobs: a LibTorch translation unit needs ~1.2 GB of compiler memory.
cmake --build build -j "$(nproc)"
