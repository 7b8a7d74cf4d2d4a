#!/usr/bin/env python3
"""Helpers for the dytserve monitoring-asset checks (standard library only).

Subcommands:
  lint DASHBOARD.json
      Structure checks: every non-row panel has targets with a non-empty
      `expr`, unique panel ids and refIds, panels use the ${datasource}
      variable, the datasource and model variables exist, and no template
      variable is left unknown after substitution.
  rules-file DASHBOARD.json OUT.yml
      Writes every panel expr (template variables substituted) as a recording
      rule, so `promtool check rules OUT.yml` parses all of them as PromQL.
  render-config PROMETHEUS.yml RULES_DIR TARGET OUT.yml
      Writes the repository's prometheus.yml with the placeholder target
      replaced by TARGET, 1s scrape/evaluation intervals and an absolute
      rules glob (for the end-to-end test).
  query URL DASHBOARD.json RULES.yml... [--var NAME=VALUE]...
      Evaluates, against a live Prometheus at URL, every panel expr, every
      query variable (label_values -> count by) and every recording rule's
      output name; prints a table and exits 1 if any returns an error or no
      series, or a series lacks a label the panel's legendFormat shows
      ({{label}}). Also fails if Prometheus reports a rule that is not healthy.

Template variables are substituted with DEFAULT_VARS, overridden by --var.
"""

import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_VARS = {
    "__rate_interval": "15s",
    "__interval": "5s",
    "__range": "5m",
    "job": "dytserve",
    "instance": ".+",
    "model": "vit_ln|vit_dyt|llama_rms|llama_dyt",
    "experiment": "vit|llama",
}
DATASOURCE_REFS = {"${datasource}", "$datasource"}
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr, variables):
    unknown = []

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in variables:
            return variables[name]
        unknown.append(name)
        return m.group(0)

    return VAR_RE.sub(repl, expr), unknown


def load_dashboard(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def iter_panels(dash):
    """Top-level panels and those nested in (collapsed) rows."""
    for p in dash.get("panels", []):
        yield p
        for child in p.get("panels", []) or []:
            yield child


def panel_exprs(dash, variables):
    """[(panel title, refId, substituted expr, unknown vars)] of non-row panels."""
    return [(title, ref, expr, unknown) for title, ref, expr, unknown, _ in panel_targets(dash, variables)]


def panel_targets(dash, variables):
    """As panel_exprs, plus the label names the target's legendFormat uses."""
    out = []
    for p in iter_panels(dash):
        if p.get("type") == "row":
            continue
        for t in p.get("targets", []) or []:
            expr, unknown = substitute(t.get("expr", "") or "", variables)
            legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "") or "")
            out.append((p.get("title", "?"), t.get("refId", "?"), expr, unknown, legend))
    return out


def variable_exprs(dash, variables):
    """label_values(SELECTOR, LABEL) variables as `count by (LABEL) (SELECTOR)`."""
    out = []
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", q, re.S)
        if not m:
            out.append(("$" + v.get("name", "?"), q, ["unsupported variable query"]))
            continue
        expr, unknown = substitute(f"count by ({m.group(2)}) ({m.group(1)})", variables)
        out.append(("$" + v["name"], expr, unknown))
    return out


def cmd_lint(args):
    dash = load_dashboard(args[0])
    errors = []
    for key in ("uid", "title", "panels", "templating"):
        if key not in dash:
            errors.append(f"dashboard has no '{key}'")
    tvars = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if not any(v.get("type") == "datasource" for v in tvars.values()):
        errors.append("no datasource-type template variable")
    if "model" not in tvars:
        errors.append("no 'model' template variable")
    ids = set()
    n_panels = n_targets = 0
    for p in iter_panels(dash):
        title = p.get("title") or f"id {p.get('id')}"
        pid = p.get("id")
        if pid in ids:
            errors.append(f"panel '{title}': duplicate id {pid}")
        ids.add(pid)
        if "gridPos" not in p:
            errors.append(f"panel '{title}': no gridPos")
        if p.get("type") == "row":
            continue
        n_panels += 1
        if not p.get("title"):
            errors.append(f"panel id {pid}: no title")
        ds = (p.get("datasource") or {}).get("uid")
        if ds not in DATASOURCE_REFS:
            errors.append(f"panel '{title}': datasource uid {ds!r} is not the ${{datasource}} variable")
        targets = p.get("targets") or []
        if not targets:
            errors.append(f"panel '{title}': no targets")
        refs = set()
        for t in targets:
            n_targets += 1
            if t.get("refId") in refs:
                errors.append(f"panel '{title}': duplicate refId {t.get('refId')}")
            refs.add(t.get("refId"))
            if not (t.get("expr") or "").strip():
                errors.append(f"panel '{title}' target {t.get('refId')}: empty expr")
            tds = (t.get("datasource") or {}).get("uid")
            if tds is not None and tds not in DATASOURCE_REFS:
                errors.append(f"panel '{title}' target {t.get('refId')}: datasource uid {tds!r}")
    for title, ref, _, unknown in panel_exprs(dash, DEFAULT_VARS):
        if unknown:
            errors.append(f"panel '{title}' target {ref}: unknown template variables {unknown}")
    for name, _, unknown in variable_exprs(dash, DEFAULT_VARS):
        if unknown:
            errors.append(f"variable {name}: {unknown}")
    for e in errors:
        print(f"  FAIL {e}")
    print(f"  {n_panels} panels, {n_targets} targets, variables: {', '.join(tvars)}")
    return 1 if errors else 0


def cmd_rules_file(args):
    dash = load_dashboard(args[0])
    rules = []
    for i, (title, ref, expr, _) in enumerate(panel_exprs(dash, DEFAULT_VARS)):
        rules.append((f"dashboard_panel_{i}", f"{title} [{ref}]", expr))
    for i, (name, expr, _) in enumerate(variable_exprs(dash, DEFAULT_VARS)):
        rules.append((f"dashboard_variable_{i}", name, expr))
    with open(args[1], "w", encoding="utf-8") as f:
        f.write("groups:\n  - name: dashboard_exprs\n    rules:\n")
        for record, what, expr in rules:
            f.write(f"      # {what}\n")
            f.write(f"      - record: {record}\n")
            f.write(f"        expr: {json.dumps(expr)}\n")
    print(f"  wrote {len(rules)} exprs to {args[1]}")
    return 0


def cmd_render_config(args):
    src, rules_dir, target, out = args
    with open(src, encoding="utf-8") as f:
        text = f.read()
    replacements = [
        ("- dytserve:8002", f"- {target}"),
        ("scrape_interval: 5s", "scrape_interval: 1s"),
        ("evaluation_interval: 5s", "evaluation_interval: 1s"),
        ("scrape_timeout: 4s", "scrape_timeout: 1s"),
        ("- rules/*.yml", f"- {rules_dir.rstrip('/')}/*.yml"),
    ]
    for old, new in replacements:
        if old not in text:
            print(f"  FAIL render-config: '{old}' not found in {src}", file=sys.stderr)
            return 1
        text = text.replace(old, new)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


def recording_rule_names(paths):
    names = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = re.match(r"\s*-?\s*record:\s*['\"]?([^'\"\s#]+)", line)
                if m:
                    names.append(m.group(1))
    return names


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def prom_query(base, expr, need_labels=()):
    """(status, number of series, number of NaN values, error text).

    need_labels: label names every returned series must carry (those the
    panel's legendFormat shows); a series without one is reported as an error.
    """
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = http_get(url)
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read().decode())
        except Exception:  # noqa: BLE001
            return "error", 0, 0, f"HTTP {e.code}"
    except Exception as e:  # noqa: BLE001
        return "error", 0, 0, str(e)
    if body.get("status") != "success":
        return body.get("status", "?"), 0, 0, body.get("error", "")
    data = body["data"]
    if data["resultType"] == "scalar":
        values = [data["result"][1]]
    elif data["resultType"] == "vector":
        values = [s["value"][1] for s in data["result"]]
    else:  # matrix (not expected for instant queries)
        values = [s["values"][-1][1] for s in data["result"] if s["values"]]
    nans = sum(1 for v in values if math.isnan(float(v)))
    if data["resultType"] in ("vector", "matrix"):
        for s in data["result"]:
            missing = [l for l in need_labels if l not in s["metric"]]
            if missing:
                return "nolabel", len(values), nans, f"series {s['metric']} lacks legend label(s) {missing}"
    return "success", len(values), nans, ""


def cmd_query(args):
    variables = dict(DEFAULT_VARS)
    rest = []
    i = 0
    while i < len(args):
        if args[i] == "--var":
            k, _, v = args[i + 1].partition("=")
            variables[k] = v
            i += 2
        else:
            rest.append(args[i])
            i += 1
    base, dash_path, rule_paths = rest[0].rstrip("/"), rest[1], rest[2:]
    dash = load_dashboard(dash_path)

    checks = []
    for title, ref, expr, unknown, legend in panel_targets(dash, variables):
        checks.append((f"panel  {title} [{ref}]", expr, unknown, legend))
    for name, expr, unknown in variable_exprs(dash, variables):
        checks.append((f"var    {name}", expr, unknown, []))
    for name in recording_rule_names(rule_paths):
        checks.append((f"record {name}", name, [], []))

    failures = 0
    rows = []
    for what, expr, unknown, legend in checks:
        if unknown:
            rows.append((what, "unknown-vars", 0, 0, expr))
            failures += 1
            continue
        status, n, nans, err = "error", 0, 0, ""
        for attempt in range(3):  # a few retries for a rule/scrape in progress
            status, n, nans, err = prom_query(base, expr, legend)
            if status == "success" and n > 0:
                break
            time.sleep(1)
        ok = status == "success" and n > 0
        failures += 0 if ok else 1
        rows.append((what, status if ok or status != "success" else "EMPTY", n, nans, err or expr))

    width = max(len(r[0]) for r in rows)
    print(f"{'check'.ljust(width)}  {'status':<8} {'series':>6} {'NaN':>4}  expr")
    for what, status, n, nans, expr in rows:
        one_line = " ".join(expr.split())
        if len(one_line) > 110:
            one_line = one_line[:107] + "..."
        print(f"{what.ljust(width)}  {status:<8} {n:>6} {nans:>4}  {one_line}")

    # Rules health as Prometheus evaluated them.
    bad_rules = []
    n_rules = 0
    try:
        groups = http_get(f"{base}/api/v1/rules")["data"]["groups"]
        for g in groups:
            for r in g["rules"]:
                n_rules += 1
                if r.get("health") != "ok":
                    bad_rules.append(f"{g['name']}/{r.get('name')}: {r.get('health')} {r.get('lastError', '')}")
    except Exception as e:  # noqa: BLE001
        bad_rules.append(f"cannot read /api/v1/rules: {e}")
    if n_rules == 0:
        bad_rules.append("Prometheus loaded no rules")
    for b in bad_rules:
        print(f"FAIL rule {b}")
    print(f"{len(rows)} expressions checked, {failures} without data or failed; "
          f"{n_rules} rules loaded, {len(bad_rules)} unhealthy")
    return 1 if failures or bad_rules else 0


def main(argv):
    cmds = {"lint": (cmd_lint, 1), "rules-file": (cmd_rules_file, 2),
            "render-config": (cmd_render_config, 4), "query": (cmd_query, 3)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 < cmds[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]][0](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
