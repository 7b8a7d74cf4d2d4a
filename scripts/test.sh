#!/usr/bin/env bash
# Sets up, builds and runs every test (C++ unit and integration tests, Python
# model tests) through CTest. The model repository is exported by the first
# CTest fixture. In CI, the sanitizer builds follow (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${TEST_JOBS:-2}" "$@"

# The CUDA build and its suite (scripts/cuda_build_test.sh): on in CI unless
# DYTSERVE_CUDA_BUILD=0, and on anywhere with DYTSERVE_CUDA_BUILD=1.
if [[ ${DYTSERVE_CUDA_BUILD:-} == 1 || (-z ${DYTSERVE_CUDA_BUILD:-} && ${CI:-} == true) ]]; then
  bash scripts/cuda_build_test.sh
fi

# The sanitizer builds (scripts/sanitize.sh): on in CI (CI=true) unless
# DYTSERVE_SANITIZERS=0, and on anywhere with DYTSERVE_SANITIZERS=1.
if [[ ${DYTSERVE_SANITIZERS:-} == 1 || (-z ${DYTSERVE_SANITIZERS:-} && ${CI:-} == true) ]]; then
  bash scripts/sanitize.sh
fi
