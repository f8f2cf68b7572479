#!/usr/bin/env bash
# Validates the observability rig without Docker: every YAML file parses (PyYAML) and has the
# structure Prometheus, Grafana and Compose expect; the dashboard is JSON; the entrypoint
# renders target lists and (where promtool is installed) Prometheus accepts the result.
# Metric and label names in the dashboard are checked by `cargo test -p collector --test
# dashboard`, not here.
#
#   deploy/observability/validate.sh
#
# PyYAML: the first python3 that can import yaml; else the venv at <repo>/target/deploy-venv
# (the one deploy/validate.sh creates), with PyYAML installed into it on first use.
# `docker compose config` runs too where Docker Compose is installed.
#
# Exit status: 0 when everything is valid, 1 on any invalid file, 2 on set-up errors.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/deploy-venv"

python=""
if command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
    python=python3
else
    if [[ ! -x "$venv/bin/python" ]]; then
        command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 2; }
        echo "==> creating ${venv#"$root"/}"
        python3 -m venv "$venv" || exit 2
    fi
    if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
        echo "==> installing PyYAML into ${venv#"$root"/}"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "PyYAML==6.0.3" \
            || exit 2
    fi
    python="$venv/bin/python"
fi
echo "==> PyYAML $("$python" -c 'import yaml; print(yaml.__version__)') ($python)"

failed=0

echo "==> YAML and JSON structure"
if ! "$python" - "$here" <<'PY'
import json, os, sys, yaml

here = sys.argv[1]
errors = []

def load(rel):
    path = os.path.join(here, rel)
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except Exception as e:  # noqa: BLE001 - report any parse failure
        errors.append(f"{rel}: {e}")
        return None
    if not isinstance(doc, dict):
        errors.append(f"{rel}: not a mapping")
        return None
    print(f"    {rel}: parsed")
    return doc

def need(cond, msg):
    if not cond:
        errors.append(msg)

prom = load("prometheus.yml")
if prom:
    need(prom.get("global", {}).get("scrape_interval") == "5s", "prometheus.yml: scrape_interval is not 5s")
    jobs = {j.get("job_name"): j for j in prom.get("scrape_configs", [])}
    for job, target in [("collector", "host.docker.internal:9464"), ("receiver", "host.docker.internal:8080")]:
        j = jobs.get(job)
        need(j is not None, f"prometheus.yml: no scrape job {job}")
        if j:
            targets = [t for sc in j.get("static_configs", []) for t in sc.get("targets", [])]
            need(targets == [target], f"prometheus.yml: job {job} targets {targets}, expected [{target}]")

compose = load("docker-compose.yml")
mounts = {}
if compose:
    services = compose.get("services", {})
    for name in ("prometheus", "grafana"):
        s = services.get(name)
        need(isinstance(s, dict), f"docker-compose.yml: no service {name}")
        if not isinstance(s, dict):
            continue
        need(":" in str(s.get("image", "")), f"docker-compose.yml: {name} has no pinned image")
        need("host.docker.internal:host-gateway" in s.get("extra_hosts", []),
             f"docker-compose.yml: {name} lacks extra_hosts host.docker.internal:host-gateway")
        for v in s.get("volumes", []):
            src, _, rest = v.partition(":")
            dst = rest.split(":")[0]
            if src.startswith("./"):
                need(os.path.exists(os.path.join(here, src)), f"docker-compose.yml: {name} mounts missing {src}")
                mounts[dst] = src
            else:
                need(src in (compose.get("volumes") or {}), f"docker-compose.yml: undeclared volume {src}")
    env = services.get("grafana", {}).get("environment", {})
    need(str(env.get("GF_AUTH_ANONYMOUS_ENABLED")).lower() == "true", "docker-compose.yml: anonymous access off")

ds = load("grafana/provisioning/datasources/prometheus.yml")
ds_uids = set()
if ds:
    need(ds.get("apiVersion") == 1, "datasources: apiVersion is not 1")
    for d in ds.get("datasources", []):
        need(d.get("type") == "prometheus" and d.get("url"), f"datasources: bad entry {d}")
        ds_uids.add(d.get("uid"))

prov = load("grafana/provisioning/dashboards/dashboards.yml")
if prov:
    need(prov.get("apiVersion") == 1, "dashboards provider: apiVersion is not 1")
    for p in prov.get("providers", []):
        path = p.get("options", {}).get("path")
        need(p.get("type") == "file", f"dashboards provider {p.get('name')}: type is not file")
        need(mounts.get(path) == "./grafana/dashboards",
             f"dashboards provider path {path} is not where compose mounts ./grafana/dashboards")
need("/etc/grafana/provisioning" in mounts, "docker-compose.yml: provisioning not mounted")

rel = "grafana/dashboards/ci-collector.json"
try:
    with open(os.path.join(here, rel)) as f:
        dash = json.load(f)
    print(f"    {rel}: parsed, {len(dash.get('panels', []))} panels")
    used = set()
    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                used.add((t.get("datasource") or p.get("datasource") or {}).get("uid"))
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            used.add((v.get("datasource") or {}).get("uid"))
    need(used <= ds_uids, f"{rel}: datasource uids {used - ds_uids} are not provisioned")
except Exception as e:  # noqa: BLE001
    errors.append(f"{rel}: {e}")

for e in errors:
    print(f"    ERROR {e}")
sys.exit(1 if errors else 0)
PY
then
    failed=1
fi

echo "==> prometheus-entrypoint.sh"
sh -n "$here/prometheus-entrypoint.sh" || failed=1
if command -v shellcheck >/dev/null; then
    shellcheck -s sh "$here/prometheus-entrypoint.sh" || failed=1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for case in "default||" "fleet|node-a:9464, node-b:9464|receiver:8080"; do
    IFS='|' read -r label collector receiver <<<"$case"
    if ! RENDER_ONLY=1 PROMETHEUS_CONFIG_TEMPLATE="$here/prometheus.yml" \
        COLLECTOR_TARGET="$collector" RECEIVER_TARGET="$receiver" \
        sh "$here/prometheus-entrypoint.sh" >"$tmp/$label.yml"; then
        echo "    ERROR rendering $label" >&2
        failed=1
        continue
    fi
    if command -v promtool >/dev/null; then
        if promtool check config "$tmp/$label.yml" >"$tmp/out" 2>&1; then
            echo "    $label targets: promtool check config passed"
        else
            sed 's/^/    /' "$tmp/out"
            failed=1
        fi
    else
        "$python" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$tmp/$label.yml" \
            && echo "    $label targets: rendered config parses (no promtool for a full check)" \
            || failed=1
    fi
done
grep -q '"node-a:9464","node-b:9464"' "$tmp/fleet.yml" \
    || { echo "    ERROR COLLECTOR_TARGET was not rendered" >&2; failed=1; }

if docker compose version >/dev/null 2>&1; then
    echo "==> docker compose config"
    (cd "$here" && docker compose config --quiet) || failed=1
else
    echo "==> docker compose not installed: compose file checked structurally only"
fi

if [[ $failed -ne 0 ]]; then
    echo "==> FAILED" >&2
    exit 1
fi
echo "==> all valid"
