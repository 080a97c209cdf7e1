#!/usr/bin/env bash
# Builds a libFuzzer target with clang (libFuzzer, ASan, UBSan) and runs it.
#   fuzz/run.sh [SECONDS=120] [TARGET=request]
# TARGET is one of:
#   request  POST /v1/rank, /v1/recommend and /v1/events bodies through their parsers (fuzz_request.cpp)
#   csv      data files through RecordReader, Preprocessor::fit and featurize_file (fuzz_csv.cpp)
#   config   TOML configs through parse_config / load_config and the to_toml round trip (fuzz_config.cpp)
# Environment:
#   FUZZ_OUT   build and working folder (default /work/build-fuzz; never the source tree)
#   FUZZ_RUNS  stop after this many executions instead of after SECONDS
#   FUZZ_MERGE=1  after the run, merge the working corpus into the tree corpus
#              fuzz/corpus/TARGET (-merge=1 keeps only inputs that add coverage)
# Needs clang-14 and libclang-rt-14-dev (Debian), installed here if missing.
# The csv and config targets start from the seed corpora in fuzz/corpus/csv and
# fuzz/corpus/config; new units go to $FUZZ_OUT/corpus-TARGET, not the tree.
# A crash leaves its input as $FUZZ_OUT/TARGET-crash-* (reproduce with
# "$FUZZ_OUT/fuzz_TARGET" FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_=${1:-120}
TARGET=${2:-request}
command -v clang++-14 >/dev/null || { apt-get update -qq && apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null; }
OUT=${FUZZ_OUT:-/work/build-fuzz}
mkdir -p "$OUT"
FLAGS="-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -DTOML_HEADER_ONLY=0 -DTOML_SHARED_LIB=1"
INCLUDE="-Isrc"
LIMITS="-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$OUT/$TARGET-"
if [ -n "${FUZZ_RUNS:-}" ]; then STOP="-runs=$FUZZ_RUNS"; else STOP="-max_total_time=$SECONDS_"; fi
case "$TARGET" in
  request)
    mkdir -p "$OUT/corpus"
    SOURCES="src/config/config.cpp src/config/model_families.cpp src/data/preprocessor.cpp src/data/dataset.cpp src/data/record_reader.cpp
             src/common/progress.cpp src/common/atomic_file.cpp src/serve/request.cpp fuzz/fuzz_request.cpp"
    clang++-14 $FLAGS $INCLUDE $SOURCES -o "$OUT/fuzz_request" -ltomlplusplus -lsimdjson -lz
    # Seeds: valid requests of every shape the API takes.
    printf '%s' '{"context": {"user": "u1"}, "candidates": [{"item": "i1", "price": 3.5, "age": 20, "tags": "a|b", "app": "maps"}], "top_k": 1}' > "$OUT/corpus/seed1.json"
    printf '%s' '{"candidates": [{"price": null, "age": 1e300}, {"user": 7, "item": true, "age": -3}]}' > "$OUT/corpus/seed2.json"
    printf '%s' '{"candidates": []}' > "$OUT/corpus/seed3.json"
    # Keys in changing orders (the parser guesses columns from the previous object's order), a bias feature.
    printf '%s' '{"candidates": [{"item": "i1", "user": "u1", "position": 3}, {"user": "u2", "position": "1", "item": "i2"}, {"age": 5, "item": "i1"}]}' > "$OUT/corpus/seed4.json"
    printf '%s' '{"user": "u1", "context": {"app": "maps", "age": 3}, "k": 10, "retrieve": 200}' > "$OUT/corpus/seed5.json"
    printf '%s' '{"history": ["i1", 7, "i3"], "k": 2}' > "$OUT/corpus/seed6.json"
    printf '%s' '{"user": 42, "item": "i9", "timestamp": 1700000000}' > "$OUT/corpus/seed7.json"
    "$OUT/fuzz_request" $STOP $LIMITS "$OUT/corpus" 2>&1 | tail -25
    exit 0
    ;;
  csv)
    SOURCES="src/config/config.cpp src/config/model_families.cpp src/data/preprocessor.cpp src/data/dataset.cpp src/data/record_reader.cpp
             src/common/progress.cpp src/common/atomic_file.cpp fuzz/fuzz_csv.cpp"
    # Skipped-row warnings go to the program's stderr: -close_fd_mask=2 drops
    # them, while libFuzzer and the sanitizers keep reporting on a copy of stderr.
    EXTRA="-dict=fuzz/csv.dict -close_fd_mask=2"
    # RecordReader's initial buffer shrunk from 1 MiB to 64 bytes (a copy of
    # the header under $OUT/include, searched before src/): small inputs then
    # reach the refill, compaction and growth paths, and no execution faults
    # in 2 MiB of fresh pages. Nothing else changes.
    mkdir -p "$OUT/include/data"
    sed 's/kInitialBufferSize = std::size_t{1} << 20;/kInitialBufferSize = 64;  \/\/ fuzz build (fuzz\/run.sh)/' \
      src/data/record_reader.h > "$OUT/include/data/record_reader.h"
    grep -q 'kInitialBufferSize = 64;' "$OUT/include/data/record_reader.h" ||
      { echo "fuzz/run.sh: kInitialBufferSize not found in src/data/record_reader.h" >&2; exit 1; }
    INCLUDE="-I$OUT/include -Isrc"
    LIBS="-ltomlplusplus -lz"
    ;;
  config)
    SOURCES="src/config/config.cpp src/config/model_families.cpp fuzz/fuzz_config.cpp"
    EXTRA="-dict=fuzz/config.dict"
    LIBS="-ltomlplusplus"
    ;;
  *) echo "usage: fuzz/run.sh [SECONDS] [request|csv|config]" >&2; exit 2 ;;
esac
clang++-14 $FLAGS $INCLUDE $SOURCES -o "$OUT/fuzz_$TARGET" $LIBS
mkdir -p "$OUT/corpus-$TARGET"
"$OUT/fuzz_$TARGET" $STOP $LIMITS $EXTRA "$OUT/corpus-$TARGET" "fuzz/corpus/$TARGET" 2>&1 | tail -25
if [ "${FUZZ_MERGE:-0}" = 1 ]; then
  "$OUT/fuzz_$TARGET" -merge=1 $EXTRA "fuzz/corpus/$TARGET" "$OUT/corpus-$TARGET" 2>&1 | tail -3
  echo "fuzz/corpus/$TARGET: $(ls "fuzz/corpus/$TARGET" | wc -l) files"
fi
