#!/usr/bin/env bash
# Packs the GPU kit: one folder, and a .tar.gz of it, holding everything that
# scripts/gpu_check.sh needs on a machine with an NVIDIA GPU, PyTorch 2.11
# installed and no network, beyond that PyTorch:
#
#   gpu_check.sh   the check (scripts/gpu_check.sh)
#   bin/           the CUDA build's server, CLI, loadgen, test and benchmark
#                  binaries, debug info stripped
#   lib/           the shared libraries they load that neither PyTorch's wheels
#                  nor the C library carry: Debian's gRPC, Protobuf, Abseil,
#                  prometheus-cpp, c-ares, RE2, OpenSSL...
#   src/           the Python the check runs with that machine's PyTorch: the
#                  model exporter (models/) and bench/export_e2e_models.py
#
# LibTorch and the CUDA libraries come from the GPU machine's own PyTorch
# (gpu_check.sh puts its torch/lib and nvidia/*/lib on LD_LIBRARY_PATH).
#
#   scripts/gpu_kit.sh [--no-build] [OUT]     OUT: build-cuda/gpu_kit
#
# --no-build packs what build-cuda/ holds (the CUDA build must be there).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=1
if [[ ${1:-} == --no-build ]]; then
  BUILD=0
  shift
fi
OUT=${1:-build-cuda/gpu_kit}
BUILD_DIR=${BUILD_DIR:-build-cuda}
BINARIES=(server/dytserve-server client/dytserve-cli client/dytserve-loadgen tests/dytserve_unit_tests
  tests/dytserve_integration_tests bench/dyt_op_bench bench/dyt_e2e_bench bench/batching_bench bench/format_bench)

if ((BUILD)); then
  targets=()
  for b in "${BINARIES[@]}"; do targets+=("$(basename "$b")"); done
  BUILD_DIR=$BUILD_DIR CMAKE_ARGS="-DDYTSERVE_WITH_CUDA=ON -DDYTSERVE_BUILD_BENCH=ON ${CMAKE_ARGS:-}" \
    bash scripts/build.sh "${targets[@]}" >&2
fi
for b in "${BINARIES[@]}"; do
  [[ -x $BUILD_DIR/$b ]] || { echo "gpu_kit: $BUILD_DIR/$b is missing (a CUDA build with benchmarks)" >&2; exit 1; }
done
grep -q "DYTSERVE_WITH_CUDA:BOOL=ON" "$BUILD_DIR/CMakeCache.txt" ||
  { echo "gpu_kit: $BUILD_DIR is not a CUDA build (-DDYTSERVE_WITH_CUDA=ON)" >&2; exit 1; }

rm -rf "$OUT" "$OUT.tar.gz"
mkdir -p "$OUT/bin" "$OUT/lib" "$OUT/src/models" "$OUT/src/bench"
for b in "${BINARIES[@]}"; do
  strip --strip-debug -o "$OUT/bin/$(basename "$b")" "$BUILD_DIR/$b"
  # This machine's paths (the venv, the build tree) mean nothing there:
  # gpu_check.sh's LD_LIBRARY_PATH is all they go by, here too.
  patchelf --remove-rpath "$OUT/bin/$(basename "$b")"
done

# Every library the binaries resolve here, except PyTorch's own (torch/lib,
# nvidia/*/lib: the GPU machine has its own) and the C and C++ runtimes
# (glibc, libstdc++, libgcc_s: a newer system's must be used, not ours).
declare -A seen=()
while read -r path; do
  name=$(basename "$path")
  case $path in */site-packages/torch/lib/* | */site-packages/nvidia/*) continue ;; esac
  case $name in
    libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux*.so.* | libstdc++.so.* | \
      libgcc_s.so.* | libresolv.so.* | libutil.so.*) continue ;;
  esac
  [[ -n ${seen[$name]:-} ]] && continue
  seen[$name]=1
  cp -L "$path" "$OUT/lib/$name"
done < <(ldd "${BINARIES[@]/#/$BUILD_DIR/}" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)

cp scripts/gpu_check.sh "$OUT/gpu_check.sh"
cp models/export_repository.py "$OUT/src/models/"
cp -r models/dytserve_models "$OUT/src/models/"
find "$OUT/src" -name __pycache__ -prune -exec rm -rf {} +
cp bench/export_e2e_models.py "$OUT/src/bench/"
git rev-parse --short HEAD >"$OUT/REVISION" 2>/dev/null || echo unknown >"$OUT/REVISION"

tar -czf "$OUT.tar.gz" -C "$(dirname "$OUT")" "$(basename "$OUT")"
echo "gpu_kit: $OUT ($(du -sh "$OUT" | cut -f1), ${#seen[@]} libraries) and $OUT.tar.gz ($(du -h "$OUT.tar.gz" | cut -f1))" >&2
