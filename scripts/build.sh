#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then configures and builds
# everything into build/. Safe to run repeatedly; ccache keeps rebuilds short.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} >/dev/null
# Two cores and LibTorch-heavy translation units: more jobs only thrash.
cmake --build "$BUILD_DIR" -- -j "${BUILD_JOBS:-$(nproc)}"
