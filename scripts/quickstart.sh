#!/usr/bin/env bash
# Sets up (Debian packages), builds, and runs the quickstart on embedded synthetic data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
build/mtrank quickstart "$@"
