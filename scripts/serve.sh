#!/usr/bin/env bash
# The main job: set up, build the server and CLI, export the default model
# repository (LN and DyT ViTs trained on digits, RMSNorm and DyT decoders,
# TorchScript and AOTInductor) and run dytserve-server on CPU. Extra arguments
# go to the server (e.g. --grpc_port=0).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
bash scripts/setup.sh  # prints nothing on stdout, which is the server's: one "listening" line
# The export (mostly Python: training, AOTInductor's compile) and the C++
# build run side by side: on a fresh 2-core machine that saves about a
# minute of the first start over running them in turn.
mkdir -p "$BUILD_DIR"
"${DYTSERVE_VENV:-.venv}/bin/python" models/export_repository.py --out "$BUILD_DIR/repository" >&2 &
export_pid=$!
if ! bash scripts/build.sh dytserve-server dytserve-cli >&2; then
  kill "$export_pid" 2>/dev/null
  exit 1
fi
wait "$export_pid" || { echo "serve.sh: exporting the model repository failed" >&2; exit 1; }
exec "$BUILD_DIR/server/dytserve-server" --model_repository="$BUILD_DIR/repository" \
  --grpc_port="${GRPC_PORT:-8001}" --metrics_port="${METRICS_PORT:-8002}" "$@"
