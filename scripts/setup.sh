#!/usr/bin/env bash
# Installs what dytserve needs, and only what is missing, so it is safe to run
# on every build (a fresh machine and a warm one take the same path):
#   1. Debian packages: toolchain, gRPC, Protobuf, Abseil, prometheus-cpp, GTest...
#   2. The project's virtual environment (.venv, or $DYTSERVE_VENV), made with
#      Debian's /usr/bin/python3, holding models/requirements.txt: the pinned
#      PyPI torch==2.11.0, whose wheel is also the LibTorch the server links.
# Prints nothing on stdout (serve.sh's stdout is the server's).
set -euo pipefail
exec 1>&2
ROOT=$(cd "$(dirname "$0")/.." && pwd)

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl openssl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  # The v2 HTTP/REST endpoint and /metrics: GNU libmicrohttpd (event-driven,
  # so slow clients hold no thread) and nlohmann/json.
  libmicrohttpd-dev nlohmann-json3-dev
  # The virtual environment, made from Debian's interpreter (the python3 first
  # on PATH may be another one); python3-dev for AOTInductor's compile step.
  python3 python3-venv python3-dev
  # patchelf: the GPU kit's binaries drop this machine's library paths.
  patchelf
  # promtool, for the metrics lint in the test suite.
  prometheus
  # docker-compose 1.29 validates the compose file in the deploy manifest test
  # (`config` needs no daemon).
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

SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# Debian's LibTorch 1.13 must not be found beside the pinned one. Its -dev
# package (which this script installed before the move to the wheel) puts
# unversioned libtorch*.so and libc10.so links in /usr/lib: AOTInductor's
# compile step then linked a package against 1.13's libtorch_cpu, which lacks
# its symbols ("undefined symbol: aoti_torch_dtype_float32" at load). So it
# goes. Its runtime (libtorch1.13, python3-torch) has only versioned names
# and stays unless you remove it.
if dpkg-query -W -f='${Status}' libtorch-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "setup: removing Debian's libtorch-dev (LibTorch 1.13's link names shadow the pinned wheel's)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq libtorch-dev >/dev/null
fi

# The virtual environment. A stamp holding the requirements' hash makes the
# warm path a file comparison, not a pip run.
VENV=${DYTSERVE_VENV:-$ROOT/.venv}
REQS=$ROOT/models/requirements.txt
want=$(sha256sum "$REQS" | cut -d' ' -f1)
stamp=$VENV/.dytserve-requirements
if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "setup: virtual environment $VENV up to date"
else
  echo "setup: installing $REQS into $VENV (first time: about 3.5 GB from PyPI, torch and its CUDA libraries)"
  start=$(date +%s)
  [[ -x $VENV/bin/python ]] || /usr/bin/python3 -m venv "$VENV"
  # PIP_FIND_LINKS may point at a local wheel folder; PyPI stays the source.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
  "$VENV/bin/python" -c 'import torch, sys; v = torch.__version__.split("+")[0]; sys.exit(0 if v == "2.11.0" else f"torch {v} in the venv, 2.11.0 pinned")'
  echo "$want" >"$stamp"
  echo "setup: virtual environment ready in $(($(date +%s) - start)) s ($(du -sh "$VENV" | cut -f1))"
fi
