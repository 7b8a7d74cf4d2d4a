#!/usr/bin/env bash
# Static checks of the monitoring assets under deploy/ (no server needed):
#   - promtool check config / check rules / test rules
#   - alert rules carry a severity label and summary/description annotations
#   - the Grafana dashboard JSON parses, every panel has a target expr, and
#     every expr (template variables substituted) parses as PromQL
#   - the Grafana provisioning files parse
# Usage: tests/e2e/check_prometheus_assets.sh   (from anywhere)
# Needs: promtool (Debian package `prometheus`), python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PROM_DIR=deploy/prometheus
DASHBOARD=deploy/grafana/dashboards/dytserve.json
HELPER=tests/e2e/prom_assets.py

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

step() { printf '\n== %s\n' "$*"; }

for tool in promtool python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found" >&2; exit 1; }
done
echo "promtool: $(promtool --version 2>&1 | head -n1)"

shopt -s nullglob
rule_files=("$PROM_DIR"/rules/*.yml)
test_files=("$PROM_DIR"/tests/*.yml)
shopt -u nullglob
((${#rule_files[@]} > 0)) || { echo "FAIL: no rule files in $PROM_DIR/rules" >&2; exit 1; }
((${#test_files[@]} > 0)) || { echo "FAIL: no rule tests in $PROM_DIR/tests" >&2; exit 1; }

step "promtool check config $PROM_DIR/prometheus.yml"
promtool check config "$PROM_DIR/prometheus.yml"

step "promtool check rules ${rule_files[*]}"
promtool check rules "${rule_files[@]}"

step "promtool test rules ${test_files[*]}"
promtool test rules "${test_files[@]}"

step "alert rules have a severity label and summary/description annotations"
python3 - "${rule_files[@]}" <<'EOF'
import sys
try:
    import yaml
except ImportError:
    print("  SKIP (PyYAML not installed)")
    sys.exit(0)
bad = 0
n = 0
for path in sys.argv[1:]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" not in rule:
                continue
            n += 1
            missing = []
            if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                missing.append("labels.severity (critical|warning|info)")
            for key in ("summary", "description"):
                if not rule.get("annotations", {}).get(key):
                    missing.append(f"annotations.{key}")
            if missing:
                bad += 1
                print(f"  FAIL {path}: {rule['alert']}: missing {', '.join(missing)}")
            else:
                print(f"  ok   {rule['alert']} (severity={rule['labels']['severity']}, for={rule.get('for', '0s')})")
if n == 0:
    print("  FAIL no alert rules found")
    sys.exit(1)
sys.exit(1 if bad else 0)
EOF

step "dashboard JSON parses: $DASHBOARD"
python3 -m json.tool "$DASHBOARD" >/dev/null
echo "  ok"

step "dashboard structure: every panel has a target expr"
python3 "$HELPER" lint "$DASHBOARD"

step "dashboard exprs parse as PromQL (as recording rules, via promtool)"
python3 "$HELPER" rules-file "$DASHBOARD" "$TMP/dashboard_exprs.yml"
promtool check rules "$TMP/dashboard_exprs.yml"

step "grafana provisioning files parse"
python3 - deploy/grafana/provisioning/datasources/*.yml deploy/grafana/provisioning/dashboards/*.yml <<'EOF'
import sys
try:
    import yaml
except ImportError:
    print("  SKIP (PyYAML not installed)")
    sys.exit(0)
for path in sys.argv[1:]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    if doc.get("apiVersion") != 1 or not (doc.get("datasources") or doc.get("providers")):
        print(f"  FAIL {path}: expected apiVersion 1 and datasources/providers")
        sys.exit(1)
    print(f"  ok   {path}")
EOF

printf '\nALL CHECKS PASSED\n'
