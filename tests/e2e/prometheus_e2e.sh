#!/usr/bin/env bash
# End-to-end check of the monitoring assets against a real server and a real
# Prometheus, all on loopback:
#   1. starts dytserve-server (ports chosen by the OS),
#   2. starts prometheus with deploy/prometheus/prometheus.yml rendered for the
#      test (target = the server's metrics address, 1s scrape and rule
#      evaluation, the repository's rules/*.yml),
#   3. drives bounded load on all four models with dytserve-cli (a few
#      deliberately invalid requests included, so error series have data),
#   4. waits until Prometheus has scraped the final counters and evaluated the
#      rules, then evaluates every dashboard panel expr, every dashboard
#      variable query and every recording rule via /api/v1/query.
# Fails if any expression errors or returns no series, or any rule is
# unhealthy. Everything started here is stopped on exit; the whole run is
# capped at E2E_BUDGET_S seconds (default 170).
#
# Usage: tests/e2e/prometheus_e2e.sh SERVER_BIN REPO CLI_BIN
#   e.g. tests/e2e/prometheus_e2e.sh build/server/dytserve-server \
#          build/repository build/client/dytserve-cli
# Env:   LOAD_SECONDS (default 18), E2E_BUDGET_S (default 170),
#        PROMETHEUS (default: prometheus on PATH), DASHBOARD (default: the
#        repository's deploy/grafana/dashboards/dytserve.json)
set -euo pipefail

if (($# != 3)); then
  echo "usage: $0 SERVER_BIN REPO CLI_BIN" >&2
  exit 2
fi
abspath() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
SERVER_BIN="$(abspath "$1")"
REPO_DIR="$(abspath "$2")"
CLI_BIN="$(abspath "$3")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HELPER="$ROOT/tests/e2e/prom_assets.py"
DASHBOARD="${DASHBOARD:-$ROOT/deploy/grafana/dashboards/dytserve.json}"
PROM_YML="$ROOT/deploy/prometheus/prometheus.yml"
RULES_DIR="$ROOT/deploy/prometheus/rules"
PROMETHEUS="${PROMETHEUS:-prometheus}"
LOAD_SECONDS="${LOAD_SECONDS:-18}"
E2E_BUDGET_S="${E2E_BUDGET_S:-170}"
MODELS="vit_ln|vit_dyt|llama_rms|llama_dyt"

for f in "$SERVER_BIN" "$CLI_BIN"; do [[ -x "$f" ]] || { echo "FAIL: $f is not executable" >&2; exit 2; }; done
[[ -d "$REPO_DIR" ]] || { echo "FAIL: $REPO_DIR is not a directory" >&2; exit 2; }
for tool in "$PROMETHEUS" promtool python3 curl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found" >&2; exit 2; }
done

START_S=$SECONDS
TMP="$(mktemp -d "${TMPDIR:-/tmp}/dytserve-prom-e2e.XXXXXX")"
SERVER_PID="" PROM_PID="" WATCHDOG_PID=""
LOAD_PIDS=()

log() { printf '[%3ds] %s\n' "$((SECONDS - START_S))" "$*"; }

stop_pid() {  # stop_pid PID NAME: SIGTERM, up to 10s grace, then SIGKILL
  local pid="$1" name="$2" i
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "  $name (pid $pid) ignored SIGTERM; killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  for pid in "${LOAD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${LOAD_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  stop_pid "$PROM_PID" prometheus
  stop_pid "$SERVER_PID" dytserve-server
  if [[ -n "$WATCHDOG_PID" ]]; then kill -TERM "$WATCHDOG_PID" 2>/dev/null; wait "$WATCHDOG_PID" 2>/dev/null; fi
  if ((rc != 0)); then
    echo "---- dytserve-server stderr (tail) ----" >&2
    tail -n 20 "$TMP/server.err" >&2 2>/dev/null
    echo "---- prometheus log (tail) ----" >&2
    tail -n 20 "$TMP/prometheus.log" >&2 2>/dev/null
  fi
  rm -rf "$TMP"
  log "done in $((SECONDS - START_S))s, exit $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "FAIL: time budget of ${E2E_BUDGET_S}s exceeded" >&2; exit 124' TERM

# Watchdog: SIGTERM to this script once the budget is spent (the trap above
# then cleans up). Its sleep is a child of the subshell, stopped with it.
(
  trap 'kill $sleep_pid 2>/dev/null; exit 0' TERM
  sleep "$E2E_BUDGET_S" & sleep_pid=$!
  wait $sleep_pid && kill -TERM $$ 2>/dev/null
) &
WATCHDOG_PID=$!

wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...
  local limit=$(( SECONDS + $1 )) what="$2"
  shift 2
  until "$@"; do
    if ((SECONDS >= limit)); then
      echo "FAIL: timed out waiting for $what" >&2
      return 1
    fi
    sleep 0.5
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---------------------------------------------------------------- server
log "starting dytserve-server"
"$SERVER_BIN" --model_repository="$REPO_DIR" --host=127.0.0.1 --grpc_port=0 --metrics_port=0 --http_port=0 \
  --shutdown_grace_s=2 >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!
server_listening() {
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "FAIL: dytserve-server exited" >&2; exit 1; }
  grep -q '^dytserve listening ' "$TMP/server.out"
}
wait_until 60 "the server's listening line" server_listening
LINE="$(grep -m1 '^dytserve listening ' "$TMP/server.out")"
GRPC_ADDR="$(sed -E 's/.* grpc=([^ ]+).*/\1/' <<<"$LINE")"
METRICS_ADDR="$(sed -E 's/.* metrics=([^ ]+).*/\1/' <<<"$LINE")"
[[ "$GRPC_ADDR" == 127.0.0.1:* && "$METRICS_ADDR" == 127.0.0.1:* ]] || {
  echo "FAIL: cannot parse listening line: $LINE" >&2; exit 1; }
log "server: grpc=$GRPC_ADDR metrics=$METRICS_ADDR"
METRICS_TEXT="$(curl -fsS --max-time 5 "http://$METRICS_ADDR/metrics")"
grep -q '^dytserve_build_info' <<<"$METRICS_TEXT" || {
  echo "FAIL: /metrics has no dytserve_build_info" >&2; exit 1; }

# ---------------------------------------------------------------- prometheus
python3 "$HELPER" render-config "$PROM_YML" "$RULES_DIR" "$METRICS_ADDR" "$TMP/prometheus.yml"
promtool check config "$TMP/prometheus.yml" >"$TMP/check_config.out" 2>&1 || {
  cat "$TMP/check_config.out" >&2; exit 1; }
prom_ready() {
  kill -0 "$PROM_PID" 2>/dev/null || return 2
  curl -fs --max-time 2 "$PROM_URL/-/ready" >/dev/null
}
for attempt in 1 2 3; do  # the chosen port may be taken before prometheus binds it
  PROM_PORT="$(free_port)"
  PROM_URL="http://127.0.0.1:$PROM_PORT"
  log "starting prometheus on 127.0.0.1:$PROM_PORT (attempt $attempt)"
  mkdir -p "$TMP/tsdb"
  "$PROMETHEUS" --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
  PROM_PID=$!
  rc=0
  for ((i = 0; i < 60; i++)); do
    prom_ready && { rc=0; break; } || rc=$?
    ((rc == 2)) && break
    sleep 0.5
  done
  ((rc == 0)) && break
  stop_pid "$PROM_PID" prometheus
  PROM_PID=""
  cat "$TMP/prometheus.log" >&2
done
[[ -n "$PROM_PID" ]] || { echo "FAIL: prometheus did not become ready" >&2; exit 1; }
log "prometheus ready"

prom_value() {  # prom_value EXPR: first sample value, empty if none
  curl -fsS --max-time 5 -G "$PROM_URL/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
target_up() { [[ "$(prom_value 'up{job="dytserve"}')" == "1" ]]; }
wait_until 30 "the first successful scrape of the server" target_up
log "target up"

# ---------------------------------------------------------------- load
# One loop per model, bounded by time and count. Every 20th request is
# invalid (rows > max_batch_size -> INVALID_ARGUMENT) so error series have data.
load_loop() {  # load_loop MODEL MAX_ROWS ARGS...   (runs in a background subshell)
  local model="$1" max_rows="$2" n=0 ok=0 bad=0 rows cli=""
  shift 2
  local end=$((SECONDS + LOAD_SECONDS))
  # Stopped early (cleanup): stop the request in flight too.
  trap '[[ -n "$cli" ]] && kill -TERM "$cli" 2>/dev/null; wait 2>/dev/null; exit 143' TERM
  while ((SECONDS < end && n < 5000)); do
    n=$((n + 1))
    if ((n % 20 == 0)); then
      rows=$((max_rows + 1))
    else
      rows=$(( (n % 4 == 0) ? 4 : 1 ))
    fi
    "$CLI_BIN" --target="$GRPC_ADDR" --timeout_ms=5000 infer "$model" --rows "$rows" "$@" >/dev/null 2>&1 &
    cli=$!
    if wait "$cli"; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1))
    fi
    cli=""
  done
  echo "  load $model: $n requests, $ok ok, $bad failed"
}
log "driving load for ${LOAD_SECONDS}s on vit_ln vit_dyt llama_rms llama_dyt and the experiments vit and llama"
load_loop vit_ln 64 >"$TMP/load.vit_ln" & LOAD_PIDS+=($!)
load_loop vit_dyt 64 >"$TMP/load.vit_dyt" & LOAD_PIDS+=($!)
load_loop llama_rms 16 --seq_len 16 --int_high 256 >"$TMP/load.llama_rms" & LOAD_PIDS+=($!)
load_loop llama_dyt 16 --seq_len 16 --int_high 256 >"$TMP/load.llama_dyt" & LOAD_PIDS+=($!)
# The default repository's experiments: per-arm and shadow panels need data.
load_loop vit 64 >"$TMP/load.vit" & LOAD_PIDS+=($!)
load_loop llama 16 --seq_len 16 --int_high 256 >"$TMP/load.llama" & LOAD_PIDS+=($!)
for pid in "${LOAD_PIDS[@]}"; do wait "$pid"; done
LOAD_PIDS=()
cat "$TMP"/load.*

# ---------------------------------------------------------------- wait for scrape + rules
SERVER_TOTAL="$(curl -fsS --max-time 5 "http://$METRICS_ADDR/metrics" |
  awk '/^dytserve_requests_total\{/ { s += $NF } END { printf "%d", s }')"
log "server answered $SERVER_TOTAL requests; waiting for Prometheus to scrape them"
scraped_all() {
  local v
  v="$(prom_value 'sum(dytserve_requests_total{job="dytserve"})')"
  [[ -n "$v" ]] && python3 -c "import sys; sys.exit(0 if float('$v') >= $SERVER_TOTAL > 0 else 1)"
}
wait_until 20 "Prometheus to scrape the final counters" scraped_all
sleep 2  # at least one more rule evaluation (evaluation_interval is 1s)
log "scraped; evaluating dashboard exprs, variables and recording rules"

# ---------------------------------------------------------------- evaluate
set +e
python3 "$HELPER" query "$PROM_URL" "$DASHBOARD" "$RULES_DIR"/*.yml --var "model=$MODELS"
rc=$?
set -e
if ((rc != 0)); then
  echo "FAIL: some expressions returned no data or failed" >&2
  exit 1
fi
log "PASS"
