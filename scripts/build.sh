#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then configures and builds into
# build/ (BUILD_DIR): every target, or only those named as arguments. Safe to
# run repeatedly; ccache keeps rebuilds short. CMAKE_ARGS adds configure
# options (e.g. -DDYTSERVE_WITH_CUDA=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} ${CMAKE_ARGS:-} >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
# Two cores and LibTorch-heavy translation units: more jobs only thrash.
cmake --build "$BUILD_DIR" "${targets[@]}" -- -j "${BUILD_JOBS:-$(nproc)}"
