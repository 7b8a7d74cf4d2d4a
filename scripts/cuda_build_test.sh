#!/usr/bin/env bash
# The CUDA build (-DDYTSERVE_WITH_CUDA=ON: the wheel's CUDA LibTorch, the
# fused DyT CUDA kernel, nvcc 13) in build-cuda/, with the benchmarks the GPU
# kit packs, and its whole test suite. On a machine without a GPU the suite
# still passes: the GPU-only tests skip and say why, and the GPU kit's dry run
# (tests/e2e/gpu_kit_dry_run.sh) reports "no GPU". CI runs this, so the CUDA
# build cannot rot. The plain build's model repositories are served, so the
# models are exported once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PLAIN_BUILD=${BUILD_DIR:-build}
[[ $PLAIN_BUILD == /* ]] || PLAIN_BUILD=$PWD/$PLAIN_BUILD
start=$SECONDS
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDYTSERVE_WITH_CUDA=ON -DDYTSERVE_BUILD_BENCH=ON \
  -DDYTSERVE_TEST_REPO="$PLAIN_BUILD/repository" -DDYTSERVE_TEST_MODELS="$PLAIN_BUILD/test_models" >/dev/null
cmake --build build-cuda -- -j "${BUILD_JOBS:-$(nproc)}"
echo "cuda_build_test: build took $((SECONDS - start)) s" >&2
start=$SECONDS
ctest --test-dir build-cuda --output-on-failure -j "${TEST_JOBS:-2}"
echo "cuda_build_test: tests took $((SECONDS - start)) s" >&2
