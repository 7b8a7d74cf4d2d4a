#!/usr/bin/env bash
# Sets up, builds and runs every test (C++ unit and integration tests, Python
# model tests) through CTest. The model repository is exported by the first
# CTest fixture.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
cd "$BUILD_DIR"
ctest --output-on-failure -j "${TEST_JOBS:-2}" "$@"
