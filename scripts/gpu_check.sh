#!/usr/bin/env bash
# The GPU check. Run from an unpacked GPU kit (scripts/gpu_kit.sh) on a machine
# with an NVIDIA GPU, PyTorch 2.11 installed and no network:
#
#   tar xzf gpu_kit.tar.gz && gpu_kit/gpu_check.sh
#
# In under 8 minutes (an H200 with 16 cores; each step has its own time limit):
#   1. the kit's binaries load (their libraries resolve) and the server starts;
#   2. the default repository is exported with this machine's PyTorch: the LN
#      and DyT ViTs and decoders served on cuda:0, and the AOTInductor twins
#      compiled for CUDA;
#   3. the CUDA tests: the fused DyT kernel against the reference (unit),
#      vit_dyt and llama_dyt (and their norm twins) served on cuda:0 equal to
#      CPU, the CUDA allocator's memory in /metrics, a batch that runs out of
#      GPU memory split and retried (integration);
#   4. the GPU benchmarks: the DyT kernel's bandwidth against a device copy;
#      served DyT/LN p50 (ViT-Tiny, decoders); batched against unbatched
#      throughput; TorchScript against AOTInductor.
# and prints one summary (also written to summary.txt beside this script).
# Without a usable GPU it checks step 1, runs the CUDA tests (which skip and
# say why), reports "no GPU" and exits 0. A failed step is reported in the
# summary and the check goes on; the exit status is 1 if any step failed.
#
# PYTHON names the interpreter with PyTorch (default: python3).
set -uo pipefail
KIT=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
WORK=${WORK:-$KIT/work}
START=$SECONDS
FAILED=0
SUMMARY=()

say() { echo "gpu_check: $*" >&2; }
add() { SUMMARY+=("$1"); say "$1"; }
finish() {
  {
    echo "==== dytserve GPU check ($(cat "$KIT/REVISION" 2>/dev/null || echo unknown), $((SECONDS - START)) s) ===="
    printf '%s\n' "${SUMMARY[@]}"
  } | tee "$KIT/summary.txt"
  exit "$1"
}
# step NAME SECONDS LOGFILE COMMAND...: runs it under a time limit, logs its output.
step() {
  local name=$1 limit=$2 log=$3 t=$SECONDS rc
  shift 3
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  if ((rc == 0)); then
    say "$name: ok ($((SECONDS - t)) s)"
  else
    FAILED=1
    add "FAILED $name (exit $rc after $((SECONDS - t)) s; last lines of $log:)"
    while IFS= read -r line; do add "    $line"; done < <(tail -n 8 "$log")
  fi
  return $rc
}

mkdir -p "$WORK"
if ! TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null); then
  add "no PyTorch: '$PY' cannot import torch (set PYTHON)"
  finish 1
fi
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
add "PyTorch $TORCH_VERSION at $TORCH_DIR"
case $TORCH_VERSION in
  2.11.*) ;;
  *) add "the kit was built against PyTorch 2.11.0's LibTorch; this machine has $TORCH_VERSION: stopping"; finish 1 ;;
esac
NVIDIA_LIBS=$(find "$TORCH_DIR/../nvidia" -maxdepth 2 -type d -name lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$KIT/lib:$TORCH_DIR/lib:$NVIDIA_LIBS${LD_LIBRARY_PATH:-}"

# 1. The binaries load, and the server starts and stops.
missing=$(ldd "$KIT"/bin/* 2>/dev/null | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
if [[ -n $missing ]]; then
  add "FAILED: libraries not found for the kit's binaries: $missing"
  finish 1
fi
mkdir -p "$WORK/empty_repository"
"$KIT/bin/dytserve-server" --model_repository="$WORK/empty_repository" --host=127.0.0.1 --grpc_port=0 \
  --metrics_port=0 --http_port=0 >"$WORK/server_start.out" 2>"$WORK/server_start.log" &
server=$!
for _ in $(seq 1 100); do
  grep -q "dytserve listening" "$WORK/server_start.out" 2>/dev/null && break
  kill -0 $server 2>/dev/null || break
  sleep 0.2
done
if grep -q "dytserve listening" "$WORK/server_start.out"; then
  kill -TERM $server && wait $server
  add "server starts: $(cat "$WORK/server_start.out"); $(grep -o 'LibTorch [^,]*, CUDA [a-z ]*' "$WORK/server_start.log" | head -1)"
else
  kill -KILL $server 2>/dev/null
  add "FAILED: the server did not start: $(tail -n 3 "$WORK/server_start.log" | tr '\n' ' ')"
  finish 1
fi

GPU=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>/dev/null)
if [[ -z $GPU ]]; then
  # The CUDA tests still run: each must skip and say why.
  step "CUDA unit tests" 120 "$WORK/unit.log" "$KIT/bin/dytserve_unit_tests" --gtest_filter='DytOp.Cuda*'
  step "CUDA integration tests" 120 "$WORK/gpu_tests.log" env DYTSERVE_SERVER_BIN="$KIT/bin/dytserve-server" \
    "$KIT/bin/dytserve_integration_tests" --gtest_filter='Gpu.*'
  reason=$(grep -ho "no GPU: .*\|no CUDA here" "$WORK/gpu_tests.log" "$WORK/unit.log" | sort -u | tr '\n' ';')
  add "no GPU: torch.cuda.is_available() is False here; the CUDA tests skipped (${reason%;}); no GPU benchmark ran"
  finish $FAILED
fi
add "GPU: $GPU ($(nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1))"
export DYTSERVE_EXPORT_THREADS=${DYTSERVE_EXPORT_THREADS:-$(nproc)}

# 2. The repository, exported here: TorchScript on cuda:0, AOTInductor for CUDA.
REPO=$WORK/repository
if step "export" 240 "$WORK/export.log" bash -c "cd '$KIT/src' && '$PY' models/export_repository.py --out '$REPO' \
      --only vit_ln,vit_dyt,llama_rms,llama_dyt,vit_dyt_aoti,llama_dyt_aoti --device cuda"; then
  add "exported: $(grep -E 'test accuracy|compiled with AOTInductor' "$WORK/export.log" | tr '\n' ';' | sed 's/;$//')"
fi

# 3. The CUDA tests.
if step "CUDA unit tests" 120 "$WORK/unit.log" "$KIT/bin/dytserve_unit_tests" --gtest_filter='DytOp.*'; then
  add "unit: $(grep -E '^\[  (PASSED|SKIPPED) ' "$WORK/unit.log" | tr '\n' ' ')"
fi
if step "CUDA integration tests" 300 "$WORK/gpu_tests.log" env DYTSERVE_TEST_REPO="$REPO" \
    DYTSERVE_SERVER_BIN="$KIT/bin/dytserve-server" "$KIT/bin/dytserve_integration_tests" --gtest_filter='Gpu.*'; then
  add "integration: $(grep -E '^\[ +(OK|SKIPPED) ' "$WORK/gpu_tests.log" | tr '\n' ' ')"
fi

# 4. The GPU benchmarks (short runs: ratios, not publication figures).
if step "dyt_op_bench" 120 "$WORK/dyt_op_bench.log" "$KIT/bin/dyt_op_bench" --device=cuda --min_seconds=0.3; then
  while IFS= read -r line; do add "dyt op: $line"; done < <(grep -E '^\[|^shape' "$WORK/dyt_op_bench.log")
fi
cd "$KIT/src" || finish 1
if step "dyt_e2e_bench" 180 "$WORK/dyt_e2e_bench.log" "$KIT/bin/dyt_e2e_bench" --device=cuda:0 --repo="$REPO" \
    --server="$KIT/bin/dytserve-server" --python="$PY" --work_dir="$WORK/e2e" --seconds=15 --blocks=3; then
  while IFS= read -r line; do add "served: $line"; done < <(grep -E 'p50|/ LN|RMSNorm' "$WORK/dyt_e2e_bench.log")
fi
if step "batching_bench" 150 "$WORK/batching_bench.log" "$KIT/bin/batching_bench" --device=cuda:0 --repo="$REPO" \
    --server="$KIT/bin/dytserve-server" --concurrency=1,32 --seconds=1.5 --slices=3; then
  while IFS= read -r line; do add "batching: $line"; done < <(grep -Ei 'c=32|batched|offline|vit_' "$WORK/batching_bench.log" | head -12)
fi
if step "format_bench" 150 "$WORK/format_bench.log" "$KIT/bin/format_bench" --repo="$REPO" \
    --server="$KIT/bin/dytserve-server" --seconds=10 --slices=2 --slice_seconds=1.5; then
  while IFS= read -r line; do add "formats: $line"; done < <(grep -E 'p50|AOTI' "$WORK/format_bench.log")
fi
finish $FAILED
