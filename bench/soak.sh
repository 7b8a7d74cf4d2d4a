#!/usr/bin/env bash
# Soak: a real server under steady open-loop load for a bounded time (default
# 10 minutes; not part of the test suite), its resident memory sampled from
# /metrics every 30 s. Reports the RSS drift between the first sample after
# warm-up and the last (goal < 5%) and every request that did not succeed
# (goal: 0). Stops by itself; everything runs on loopback.
#
#   bench/soak.sh [SECONDS] [RATE]      e.g. bench/soak.sh 600 400
# Env: BUILD_DIR (build), REPO (BUILD_DIR/repository), MODELS (vit_ln,vit_dyt),
#      SERVER_FLAGS (further server flags, space-separated, e.g. --intra_op_threads=1)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL="${1:-600}"
RATE="${2:-400}"
BUILD_DIR="${BUILD_DIR:-build}"
REPO="${REPO:-$BUILD_DIR/repository}"
MODELS="${MODELS:-vit_ln,vit_dyt}"
read -r -a server_flags <<<"${SERVER_FLAGS:-}"
TMP="$(mktemp -d)"
SERVER_PID=""
LOAD_PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${LOAD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  if [[ -n "$SERVER_PID" ]] && kill -TERM "$SERVER_PID" 2>/dev/null; then wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
# Stopped early (Ctrl-C, timeout): the server and load generators go too.
trap cleanup EXIT
trap 'exit 143' INT TERM

"$BUILD_DIR/server/dytserve-server" --model_repository="$REPO" --host=127.0.0.1 --grpc_port=0 --metrics_port=0 --http_port=0 \
  "${server_flags[@]}" >"$TMP/listening" 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do grep -q listening "$TMP/listening" && break; sleep 0.2; done
LINE="$(cat "$TMP/listening")"
GRPC="${LINE#*grpc=}"; GRPC="${GRPC%% *}"
METRICS="${LINE#*metrics=}"
[[ -n "$GRPC" && -n "$METRICS" ]] || { echo "soak: the server did not start" >&2; cat "$TMP/server.log" >&2; exit 1; }

rss() { curl -fsS --max-time 5 "http://$METRICS/metrics" | awk '/^process_resident_memory_bytes / { print $2 }'; }

echo "soak: ${SECONDS_TOTAL}s of open-loop load at ${RATE} req/s over $MODELS on $GRPC${SERVER_FLAGS:+ (server: $SERVER_FLAGS)}"
IFS=, read -r -a models <<<"$MODELS"
per_model=$(( RATE / ${#models[@]} ))
for m in "${models[@]}"; do
  "$BUILD_DIR/client/dytserve-loadgen" --target="$GRPC" --model="$m" --rate="$per_model" --arrival=poisson \
    --warmup=0 --duration="$SECONDS_TOTAL" --window="$SECONDS_TOTAL" --requests=0 --timeout_ms=10000 --progress=false \
    --json="$TMP/$m.json" >"$TMP/$m.out" 2>&1 &
  LOAD_PIDS+=($!)
done
samples=()
sleep 30  # warm-up: allocator pools and batch shapes settle
for ((t = 30; t < SECONDS_TOTAL; t += 30)); do
  samples+=("$(rss)")
  printf '  t=%4ds rss %.1f MiB\n' "$t" "$(echo "${samples[-1]} / 1048576" | bc -l)"
  sleep 30
done
for pid in "${LOAD_PIDS[@]}"; do wait "$pid"; done
samples+=("$(rss)")

errors=0
for m in "${models[@]}"; do
  n=$(/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(sum(s['errors'].values()) for s in d['steps']))" "$TMP/$m.json")
  r=$(/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(s['requests'] for s in d['steps']))" "$TMP/$m.json")
  echo "  $m: $r requests, $n failed"
  errors=$((errors + n))
done
first="${samples[0]}"; last="${samples[-1]}"
drift=$(echo "100 * ($last - $first) / $first" | bc -l)
printf 'soak: RSS %.1f -> %.1f MiB, drift %.2f%% (goal < 5%%); unexpected errors %d (goal 0)\n' \
  "$(echo "$first / 1048576" | bc -l)" "$(echo "$last / 1048576" | bc -l)" "$drift" "$errors"
