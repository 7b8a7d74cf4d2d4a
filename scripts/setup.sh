#!/usr/bin/env bash
# Installs every Debian package dytserve needs, and only what is missing, so it is
# safe to run on every build (a fresh machine and a warm one take the same path).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl openssl
  libtorch-dev python3-torch python3-numpy python3-sklearn python3-pytest
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  # Without the pthread OpenBLAS, LibTorch falls back to reference BLAS and
  # every matmul is ~27x slower.
  libopenblas0-pthread
  # promtool, for the metrics lint in the test suite.
  prometheus
  # The deploy manifest test: PyYAML parses deploy/k8s and docker-compose.yml,
  # and docker-compose 1.29 validates the compose file (`config` needs no daemon).
  python3-yaml
  docker-compose
  # Sanitizer and fuzzing builds (scripts/sanitize.sh, docs/testing.md): clang,
  # its sanitizer and libFuzzer runtimes (only recommended by clang, and this
  # script installs no recommends), its OpenMP for dytserve_ops, and
  # llvm-symbolizer for readable sanitizer stack traces.
  clang libclang-rt-14-dev libomp-dev llvm
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present" >&2
fi
