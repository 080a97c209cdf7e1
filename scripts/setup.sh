#!/usr/bin/env bash
# Installs everything mtrank needs from Debian 12 packages. Idempotent: safe to run again.
#   scripts/setup.sh          what building and running mtrank needs
#   scripts/setup.sh --tests  also what the test suite alone needs (scripts/test.sh passes it)
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev            # tensors, autograd, optimizers, torch.distributed
  libgloo-dev             # the Gloo headers ProcessGroupGloo.hpp includes (data-parallel training)
  libopenblas0-openmp     # the OpenMP build: the pthread one fights torch's OpenMP pool
  libopenblas-openmp-dev
  libtomlplusplus-dev nlohmann-json3-dev libcli11-dev zlib1g-dev
  libsimdjson-dev         # request parsing on the serving hot path
  libboost-dev curl       # the HTTP server: header-only Boost.Beast + Asio (async, so idle or slow
                          # clients hold no thread; docs/reliability.md); curl for its end-to-end test
  libfaiss-dev            # approximate inner-product item indexes (HNSW, IVF) for retrieval
  liblmdb-dev             # the served users' live state (serve --state-dir): durable, larger than memory
  libxgboost-dev          # the gradient-boosted trees baseline of `compare --gbdt` (C API)
  libgtest-dev libgmock-dev libbenchmark-dev
)

# Only for tests: a headless browser that renders `mtrank report` pages (and
# a font for its text), and python3 for the end-to-end scripts' JSON and DOM checks.
TEST_PACKAGES=(chromium fonts-dejavu-core python3)
if [ "${1:-}" = "--tests" ]; then PACKAGES+=("${TEST_PACKAGES[@]}"); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's alternatives may point libblas.so.3 at the reference BLAS (measured 30x slower).
# Select the OpenMP OpenBLAS for both BLAS and LAPACK.
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3; do
  target="/usr/lib/$arch/openblas-openmp/$lib"
  if [ -e "$target" ]; then
    current=$(update-alternatives --query "$lib-$arch" 2>/dev/null | awk '/^Value:/{print $2}')
    if [ "$current" != "$target" ]; then
      $SUDO update-alternatives --set "$lib-$arch" "$target"
    fi
  fi
done
echo "setup: done"
