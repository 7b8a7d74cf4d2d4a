#!/usr/bin/env bash
# The main job: set up, build the server and CLI, export the default model
# repository (LN and DyT ViTs trained on digits, RMSNorm and DyT decoders,
# TorchScript and AOTInductor) and run dytserve-server on CPU. Extra arguments
# go to the server (e.g. --grpc_port=0).
#
# The build and the export run one after the other: side by side on 2 cores,
# the training's OpenMP threads lost their cores to the compiler and one ViT
# took 236 s instead of 35.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh dytserve-server dytserve-cli >&2  # stdout is the server's: one "listening" line
BUILD_DIR=${BUILD_DIR:-build}
"${DYTSERVE_VENV:-.venv}/bin/python" models/export_repository.py --out "$BUILD_DIR/repository" >&2
exec "$BUILD_DIR/server/dytserve-server" --model_repository="$BUILD_DIR/repository" \
  --grpc_port="${GRPC_PORT:-8001}" --metrics_port="${METRICS_PORT:-8002}" --http_port="${HTTP_PORT:-8000}" "$@"
