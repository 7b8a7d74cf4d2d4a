#!/usr/bin/env bash
# Sanitizer builds and their tests (docs/testing.md), each in its own build
# directory, built with clang:
#   asan  build-asan: DYTSERVE_SANITIZE=address,undefined, DYTSERVE_FUZZ=ON;
#         the CTest suite (C++ unit and integration tests, the end-to-end
#         Prometheus test, the request fuzzer)
#   tsan  build-tsan: DYTSERVE_SANITIZE=thread; the batcher tests (no LibTorch)
#         and the canaries that show TSan sees Abseil's synchronization
# Usage: scripts/sanitize.sh [asan] [tsan]        (no argument: both)
# DYTSERVE_TEST_REPO, DYTSERVE_TEST_MODELS: the model repositories the asan
# integration tests serve; default to the plain build's, so that
# scripts/test.sh exports them only once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=${BUILD_JOBS:-$(nproc)}
PLAIN_BUILD=${BUILD_DIR:-build}
[[ $PLAIN_BUILD == /* ]] || PLAIN_BUILD=$PWD/$PLAIN_BUILD
REPO=${DYTSERVE_TEST_REPO:-$PLAIN_BUILD/repository}
TEST_MODELS=${DYTSERVE_TEST_MODELS:-$PLAIN_BUILD/test_models}
modes=("$@")
((${#modes[@]})) || modes=(asan tsan)

phase() {  # phase NAME COMMAND...: runs it and says how long it took
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "sanitize: $name took $((SECONDS - start)) s" >&2
}

for mode in "${modes[@]}"; do
  case $mode in
    asan)
      cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
        -DDYTSERVE_SANITIZE=address,undefined -DDYTSERVE_FUZZ=ON -DDYTSERVE_TEST_REPO="$REPO" \
        -DDYTSERVE_TEST_MODELS="$TEST_MODELS" >/dev/null
      phase "asan build" cmake --build build-asan -- -j "$JOBS"
      phase "asan tests" ctest --test-dir build-asan --output-on-failure -j "${TEST_JOBS:-2}"
      ;;
    tsan)
      cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
        -DDYTSERVE_SANITIZE=thread >/dev/null
      # Only the torch-free targets: TSan does not run LibTorch processes here.
      phase "tsan build" cmake --build build-tsan --target dytserve_batcher_tests tsan_canary -- -j "$JOBS"
      phase "tsan tests" ctest --test-dir build-tsan --output-on-failure -j "${TEST_JOBS:-2}"
      ;;
    *)
      echo "usage: scripts/sanitize.sh [asan] [tsan]" >&2
      exit 2
      ;;
  esac
done
