#!/usr/bin/env bash
# Builds the request fuzzer with clang (libFuzzer, ASan, UBSan) and runs it.
#   fuzz/run.sh [SECONDS=120]
# Needs clang-14 and libclang-rt-14-dev (Debian), installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_=${1:-120}
command -v clang++-14 >/dev/null || { apt-get update -qq && apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null; }
OUT=build/fuzz
mkdir -p "$OUT/corpus"
SOURCES="src/config/config.cpp src/data/preprocessor.cpp src/data/dataset.cpp src/data/record_reader.cpp
         src/common/progress.cpp src/common/atomic_file.cpp src/serve/request.cpp fuzz/fuzz_request.cpp"
clang++-14 -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -DTOML_HEADER_ONLY=0 -DTOML_SHARED_LIB=1 -Isrc $SOURCES -o "$OUT/fuzz_request" -ltomlplusplus -lsimdjson -lz
# Seeds: valid requests of every shape the API takes.
printf '%s' '{"context": {"user": "u1"}, "candidates": [{"item": "i1", "price": 3.5, "age": 20, "tags": "a|b", "app": "maps"}], "top_k": 1}' > "$OUT/corpus/seed1.json"
printf '%s' '{"candidates": [{"price": null, "age": 1e300}, {"user": 7, "item": true, "age": -3}]}' > "$OUT/corpus/seed2.json"
printf '%s' '{"candidates": []}' > "$OUT/corpus/seed3.json"
# Keys in changing orders (the parser guesses columns from the previous object's order), a bias feature.
printf '%s' '{"candidates": [{"item": "i1", "user": "u1", "position": 3}, {"user": "u2", "position": "1", "item": "i2"}, {"age": 5, "item": "i1"}]}' > "$OUT/corpus/seed4.json"
"$OUT/fuzz_request" -max_total_time="$SECONDS_" -print_final_stats=1 -artifact_prefix="$OUT/" "$OUT/corpus" 2>&1 | tail -25
