#!/usr/bin/env python3
"""Static checks of the deployment manifests: the fields that tie them together.

    .venv/bin/python tests/e2e/check_deploy_manifests.py [REPO_ROOT]

Parses deploy/k8s/**/*.yaml, deploy/docker/Dockerfile*, docker-compose.yml and
the server's own flags and metric names, and checks every tie that would
otherwise only break in a cluster or on `docker compose up`: selectors against
pod labels, Service and ServiceMonitor ports against container ports, probes,
the drain budget, the HPA metric through the adapter rule down to a metric
the server exports, the compose scrape and load targets. Runs
`docker-compose config -q` when docker-compose is installed (a failure when
scripts/setup.sh lists it and it is missing). Prints one line per check and
exits 1 naming every broken tie. Needs PyYAML (Debian: python3-yaml).
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]).resolve()
failures = []


def check(ok, what, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}{'' if ok else ': ' + str(detail)}")
    if not ok:
        failures.append(f"{what}: {detail}")
    return ok


def get(obj, dotted, default=None):
    """obj["a"]["b"] for "a.b", or default where a level is missing."""
    for key in dotted.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def selects(selector, labels):
    """A matchLabels selector selects these labels."""
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def flags(args):
    """{"name": "value"} of the --name=value arguments."""
    return dict(a[2:].split("=", 1) for a in args or [] if str(a).startswith("--") and "=" in a)


def flag_names(path):
    return set(re.findall(r"ABSL_FLAG\([^,]+, (\w+),", (ROOT / path).read_text()))


# What the programs define: flags and defaults, metric families, the scrape job
# the alert rules select.
main_cc = (ROOT / "server/main.cc").read_text()
defaults = dict(re.findall(r'ABSL_FLAG\(\w+, (\w+), "?([^",]*)"?,', main_cc))
server_flags = flag_names("server/main.cc")
loadgen_flags = flag_names("client/loadgen/main.cc")
metric_names = set(re.findall(r'\.Name\("(dytserve_\w+)"\)', (ROOT / "server/metrics/server_metrics.cc").read_text()))
scrape_job = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"][0]["job_name"]

print(f"== deploy/k8s ({ROOT})")
objs = []
for path in sorted((ROOT / "deploy/k8s").rglob("*.yaml")):
    for doc in filter(None, yaml.safe_load_all(path.read_text())):
        objs.append(doc)
        check(get(doc, "metadata.labels", {}).get("app.kubernetes.io/name") == "dytserve",
              f"{path.relative_to(ROOT)}: {doc.get('kind')} is labelled app.kubernetes.io/name=dytserve",
              get(doc, "metadata.labels"))


def one(kind):
    found = [o for o in objs if o.get("kind") == kind]
    check(len(found) == 1, f"exactly one {kind}", f"found {len(found)}")
    return found[0] if found else {}


dep, svc, pdb, hpa, sm = map(one, ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                                   "ServiceMonitor"))
pod = get(dep, "spec.template", {})
pod_labels = get(pod, "metadata.labels", {})
containers = get(pod, "spec.containers", [])
c = next((x for x in containers if x.get("name") == "dytserve"), containers[0] if containers else {})
ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
args = flags(c.get("args"))

check(selects(get(dep, "spec.selector.matchLabels"), pod_labels), "Deployment selector matches its pod labels",
      f"{get(dep, 'spec.selector')} vs {pod_labels}")
check(set(args) <= server_flags, "container args are dytserve-server flags", sorted(set(args) - server_flags))
for flag, name in (("grpc_port", "grpc"), ("metrics_port", "metrics")):
    want = int(args.get(flag, defaults.get(flag, -1)))
    check(ports.get(name) == want, f"containerPort '{name}' = --{flag} ({want})", f"containerPort is {ports.get(name)}")
check(str(get(c, "resources.limits", {}).get("nvidia.com/gpu", 0)) not in ("0", ""), "container limits nvidia.com/gpu",
      get(c, "resources"))
for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
    grpc = get(c, f"{probe}.grpc", {})
    check(grpc.get("port") == ports.get("grpc") and isinstance(grpc.get("service"), str),
          f"{probe} is a grpc probe on the grpc port naming a health service",
          f"{c.get(probe)}, grpc containerPort {ports.get('grpc')}")

pre = get(c, "lifecycle.preStop", {})
sleep_s = int(get(pre, "sleep.seconds", 0)) or next(
    (int(x) for x in get(pre, "exec.command", []) if str(x).isdigit()), 0)
grace = int(args.get("shutdown_grace_s", defaults.get("shutdown_grace_s", 0)))
period = get(pod, "spec.terminationGracePeriodSeconds", 30)
check(sleep_s > 0, "preStop sleeps before SIGTERM (endpoint removal reaches clients first)", pre)
# The server answers what is left UNAVAILABLE at the end of the grace period
# and gives those answers 3 s (kAnswerMargin in server/main.cc) to leave.
ANSWER_MARGIN_S = 3
check(period > sleep_s + grace + ANSWER_MARGIN_S,
      f"terminationGracePeriodSeconds ({period}) > preStop sleep ({sleep_s}) + --shutdown_grace_s ({grace})"
      f" + the server's answer margin ({ANSWER_MARGIN_S})",
      "SIGKILL would cut the drain short")
readiness = get(c, "readinessProbe", {})
ready_after = int(readiness.get("periodSeconds", 10)) * int(readiness.get("failureThreshold", 3))
check(ready_after <= sleep_s + grace,
      f"readiness notices a draining pod ({ready_after} s = periodSeconds x failureThreshold) within preStop"
      f" + grace ({sleep_s + grace} s): clients that route by readiness leave before the drain ends",
      readiness)

volumes = {v.get("name") for v in get(pod, "spec.volumes", [])}
mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts", [])}
repo = args.get("model_repository")
check(mounts.get(repo) in volumes, f"--model_repository ({repo}) is a mounted pod volume", mounts)
for init in get(pod, "spec.initContainers", []):
    names = {m.get("name") for m in init.get("volumeMounts", [])}
    check(mounts.get(repo) in names, f"init container '{init.get('name')}' fills the repository volume", names)

check(get(svc, "spec.clusterIP") == "None", "Service is headless (clusterIP: None)", get(svc, "spec.clusterIP"))
check(selects(get(svc, "spec.selector"), pod_labels), "Service selector matches the pod labels",
      f"{get(svc, 'spec.selector')} vs {pod_labels}")
svc_ports = {p.get("name"): p for p in get(svc, "spec.ports", [])}
check({"grpc", "metrics"} <= set(svc_ports), "Service has ports named grpc and metrics", sorted(svc_ports))
for name, p in svc_ports.items():
    target = p.get("targetPort", p.get("port"))
    check(target in ports or target in ports.values(), f"Service port '{name}' targets a container port",
          f"targetPort {target}, container ports {ports}")

check(selects(get(pdb, "spec.selector.matchLabels"), pod_labels), "PodDisruptionBudget selector matches the pod labels",
      f"{get(pdb, 'spec.selector')} vs {pod_labels}")
min_available, min_replicas = get(pdb, "spec.minAvailable"), get(hpa, "spec.minReplicas", 1)
check(isinstance(min_available, str) or (min_available or 0) < min_replicas,
      "PodDisruptionBudget allows an eviction at the HPA's minReplicas",
      f"minAvailable {min_available}, minReplicas {min_replicas}")

check(selects(get(sm, "spec.selector.matchLabels"), get(svc, "metadata.labels")),
      "ServiceMonitor selector matches the Service labels",
      f"{get(sm, 'spec.selector')} vs {get(svc, 'metadata.labels')}")
for ep in get(sm, "spec.endpoints", []):
    target = svc_ports.get(ep.get("port"), {}).get("targetPort")
    check(target in ("metrics", ports.get("metrics")), f"ServiceMonitor endpoint port '{ep.get('port')}' is the "
          "Service port of the metrics containerPort", f"Service ports {sorted(svc_ports)}, targetPort {target}")
    check(ep.get("path", "/metrics") == "/metrics", "ServiceMonitor path is /metrics", ep.get("path"))
# The operator's job label is the Service name unless jobLabel names a label.
job = get(svc, "metadata.labels", {}).get(get(sm, "spec.jobLabel"), get(svc, "metadata.name"))
check(job == scrape_job, f"ServiceMonitor job ({job}) = job_name in deploy/prometheus/prometheus.yml ({scrape_job})",
      "the alert rules select that job")

ref = get(hpa, "spec.scaleTargetRef", {})
check(hpa.get("apiVersion") == "autoscaling/v2", "HPA is autoscaling/v2", hpa.get("apiVersion"))
check(ref.get("kind") == "Deployment" and ref.get("name") == get(dep, "metadata.name"),
      f"HPA scaleTargetRef names the Deployment ({get(dep, 'metadata.name')})", ref)
adapters = [o for o in objs if o.get("kind") == "ConfigMap" and "config.yaml" in o.get("data", {})]
exposed = {}  # custom metric name -> (series name, rule)
for cm in adapters:
    for rule in yaml.safe_load(cm["data"]["config.yaml"]).get("rules", []):
        series = re.match(r"\s*(\w*)", rule.get("seriesQuery", "")).group(1)
        exposed[get(rule, "name.as", series)] = (series, rule)
check(bool(exposed), "a prometheus-adapter ConfigMap (config.yaml) has rules", f"{len(adapters)} adapter ConfigMaps")
for m in get(hpa, "spec.metrics", []):
    name = get(m, f"{m.get('type', '').lower()}.metric.name")
    if not check(name in exposed, f"HPA metric '{name}' is exposed by a prometheus-adapter rule",
                 f"the rules expose {sorted(exposed)}"):
        continue
    series, rule = exposed[name]
    check(series in metric_names, f"adapter rule series '{series}' is a metric the server exports",
          "not a .Name(...) in server/metrics/server_metrics.cc")
    resources = {v.get("resource") for v in get(rule, "resources.overrides", {}).values()}
    check(m.get("type") != "Pods" or resources >= {"pod", "namespace"},
          "adapter rule maps its series to pods and namespaces (Pods metric)", resources)

print("== deploy/docker")
init_command = " ".join(x for i in get(pod, "spec.initContainers", []) for x in i.get("command", []))
for name in ("Dockerfile", "Dockerfile.cuda"):
    text = (ROOT / "deploy/docker" / name).read_text()
    expose = set(" ".join(re.findall(r"^EXPOSE (.*)$", text, re.M)).split())
    check(expose == {defaults.get("grpc_port"), defaults.get("metrics_port"), defaults.get("http_port")},
          f"{name} EXPOSEs the server's default gRPC, metrics and REST ports", f"EXPOSE {sorted(expose)}")
    check(re.search(r"^HEALTHCHECK .*\n?.*dytserve-cli health", text, re.M) is not None,
          f"{name} HEALTHCHECK is dytserve-cli health", "missing")
    entry = re.search(r'^ENTRYPOINT \[.*"--model_repository=([^"]+)"', text, re.M)
    image_repo = entry.group(1) if entry else None
    check(image_repo is not None and re.search(rf"^COPY --from=\S+ \S+ {re.escape(image_repo)}$", text, re.M),
          f"{name} ENTRYPOINT serves the repository the image copies in ({image_repo})", "no such COPY")
    if name == "Dockerfile.cuda" and init_command:
        check(image_repo is not None and image_repo in init_command,
              f"the k8s init container copies the CUDA image's repository ({image_repo})", init_command)

print("== docker-compose.yml")
services = yaml.safe_load((ROOT / "docker-compose.yml").read_text()).get("services", {})
ds = services.get("dytserve", {})
dflags = flags(ds.get("command"))
grpc_port = int(dflags.get("grpc_port", defaults.get("grpc_port", -1)))
metrics_port = int(dflags.get("metrics_port", defaults.get("metrics_port", -1)))
check(set(dflags) <= server_flags, "dytserve command is dytserve-server flags", sorted(set(dflags) - server_flags))
check((ROOT / get(ds, "build.dockerfile", "-")).is_file(), "dytserve builds from a Dockerfile in the repository",
      ds.get("build"))
published = {str(p).rsplit(":", 1)[-1] for p in ds.get("ports", [])}
check({str(grpc_port), str(metrics_port)} <= published, f"dytserve publishes {grpc_port} and {metrics_port}", published)
check("dytserve-cli health" in " ".join(get(ds, "healthcheck.test", [])), "dytserve healthcheck is dytserve-cli health",
      ds.get("healthcheck"))


def mounted(service):
    """container path -> host path of a service's bind mounts."""
    return {v.split(":")[1]: v.split(":")[0] for v in services.get(service, {}).get("volumes", [])}


prom = mounted("prometheus")
config_in = next((ctr for ctr in prom if ctr.endswith("/prometheus.yml")), None)
if check(config_in is not None, "prometheus mounts a prometheus.yml", prom):
    config = yaml.safe_load((ROOT / prom[config_in]).read_text())
    targets = [t for job in config.get("scrape_configs", []) for s in job.get("static_configs", [])
               for t in s.get("targets", [])]
    check(f"dytserve:{metrics_port}" in targets, f"prometheus scrapes dytserve:{metrics_port}", f"targets {targets}")
    for rule_glob in config.get("rule_files", []):
        # rule_files are relative to the config file inside the container.
        wanted = f"{config_in.rsplit('/', 1)[0]}/{rule_glob}"
        check(any(wanted.startswith(ctr + "/") for ctr in prom), f"prometheus rule_files '{rule_glob}' are mounted",
              f"{wanted} not under {sorted(prom)}")

graf = mounted("grafana")
datasources, providers = (graf.get(f"/etc/grafana/provisioning/{d}") for d in ("datasources", "dashboards"))
if check(datasources and providers, "grafana mounts datasource and dashboard provisioning", graf):
    urls = [d.get("url") for f in sorted((ROOT / datasources).glob("*.yml"))
            for d in yaml.safe_load(f.read_text()).get("datasources", [])]
    check("http://prometheus:9090" in urls, "grafana datasource url is the prometheus service", urls)
    paths = [get(p, "options.path") for f in sorted((ROOT / providers).glob("*.yml"))
             for p in yaml.safe_load(f.read_text()).get("providers", [])]
    check(bool(paths) and all(p in graf for p in paths), "grafana dashboard provider paths are mounted",
          f"{paths} vs {sorted(graf)}")

lg = services.get("loadgen", {})
lflags = flags(lg.get("command"))
check("load" in lg.get("profiles", []), "loadgen is behind the 'load' profile", lg.get("profiles"))
check(set(lflags) <= loadgen_flags, "loadgen command is dytserve-loadgen flags", sorted(set(lflags) - loadgen_flags))
check(lflags.get("target") == f"dytserve:{grpc_port}", f"loadgen targets dytserve:{grpc_port}", lflags.get("target"))
waits = [(n, d) for n, s in services.items() if isinstance(s.get("depends_on"), dict)
         for d, cond in s["depends_on"].items() if cond.get("condition") == "service_healthy"]
check(("loadgen", "dytserve") in waits, "loadgen waits for dytserve to be healthy", waits)
for name, dependency in waits:
    check("healthcheck" in services.get(dependency, {}), f"{name} waits for {dependency}, which has a healthcheck",
          "service_healthy never comes without one")

listed = re.search(r"^\s*docker-compose\b", (ROOT / "scripts/setup.sh").read_text(), re.M) is not None
tool = shutil.which("docker-compose")
if tool:
    r = subprocess.run([tool, "-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(ROOT),
                        "--profile", "load", "config", "-q"], capture_output=True, text=True)
    check(r.returncode == 0, "docker-compose config -q (every profile)", (r.stderr or r.stdout).strip())
elif listed:
    check(False, "docker-compose installed (scripts/setup.sh lists it)", "not on PATH; run scripts/setup.sh")
else:
    print("  SKIP docker-compose config (docker-compose not installed)")

if failures:
    print(f"\nFAILED: {len(failures)} broken tie(s):")
    for f in failures:
        print(f"  - {f}")
    sys.exit(1)
print("\nALL CHECKS PASSED")
