#!/usr/bin/env bash
# The GPU kit on this CPU-only machine: packed from the CUDA build, unpacked
# elsewhere, it must start (its binaries load from the kit and this PyTorch
# alone: their build paths are removed) and report "no GPU" cleanly, exit 0.
#   tests/e2e/gpu_kit_dry_run.sh BUILD_DIR PYTHON
set -euo pipefail
BUILD_DIR=$(cd "$1" && pwd)
PY=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$ROOT"
BUILD_DIR=$BUILD_DIR bash scripts/gpu_kit.sh --no-build "$TMP/packed/gpu_kit"
mkdir "$TMP/unpacked"
tar -xzf "$TMP/packed/gpu_kit.tar.gz" -C "$TMP/unpacked"
rm -rf "$TMP/packed"
set +e
PYTHON=$PY "$TMP/unpacked/gpu_kit/gpu_check.sh" >"$TMP/out.txt" 2>&1
rc=$?
set -e
cat "$TMP/out.txt"
[[ $rc -eq 0 ]] || { echo "gpu_check.sh exited $rc" >&2; exit 1; }
grep -q "^server starts: dytserve listening" "$TMP/out.txt" || { echo "the server did not start" >&2; exit 1; }
grep -q "^no GPU: " "$TMP/out.txt" || { echo "no 'no GPU' report" >&2; exit 1; }
if grep -q "^FAILED" "$TMP/out.txt"; then echo "a step failed" >&2; exit 1; fi
echo "gpu_kit dry run: ok"
