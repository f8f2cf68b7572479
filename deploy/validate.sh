#!/usr/bin/env bash
# Validates every manifest under deploy/kubernetes against the Kubernetes OpenAPI schemas of one
# pinned Kubernetes version, in strict mode (unknown fields are errors), with the PyPI package
# kubernetes-validate; and checks deploy/docker/Dockerfile parses (dockerfile-parse).
#
# Both tools live in a venv at <repo>/target/deploy-venv, installed on the first run only; later
# runs start in well under a second plus the validation itself.
#
#   deploy/validate.sh                 # validate against the pinned version below
#   K8S_VERSION=1.35.0 deploy/validate.sh
#
# Exit status: 0 when everything is valid, 1 on any invalid file, 2 on set-up errors.
set -euo pipefail

# The newest minor released as stable that kubernetes-validate 1.37.0 ships schemas for.
# (`kubernetes-validate --help` shows its default; the installed package lists the rest.)
K8S_VERSION="${K8S_VERSION:-1.36.0}"
KV_PACKAGE="kubernetes-validate==1.37.0"
DP_PACKAGE="dockerfile-parse==2.0.1"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/target/deploy-venv"
stamp="$venv/.installed-$KV_PACKAGE-$DP_PACKAGE"

if [[ ! -f "$stamp" ]]; then
    echo "==> installing $KV_PACKAGE and $DP_PACKAGE into ${venv#"$root"/}"
    command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 2; }
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || exit 2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "$KV_PACKAGE" "$DP_PACKAGE" || exit 2
    touch "$stamp"
fi

kv="$venv/bin/kubernetes-validate"
echo "==> kubernetes-validate $("$kv" --version), Kubernetes $K8S_VERSION, strict"

mapfile -t manifests < <(find "$here/kubernetes" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
if [[ ${#manifests[@]} -eq 0 ]]; then
    echo "no manifests under deploy/kubernetes" >&2
    exit 2
fi

failed=0
for manifest in "${manifests[@]}"; do
    rel="${manifest#"$root"/}"
    # One line per resource: "INFO <file> passed for resource <kind>/<name>" or the error.
    if ! out="$("$kv" --strict --kubernetes-version "$K8S_VERSION" "$manifest" 2>&1)"; then
        failed=1
    fi
    # kubernetes-validate exits 0 on some failures (e.g. a kind unknown to that version), so
    # its output is checked as well.
    if grep -qE '^(ERROR|WARN)' <<<"$out"; then
        failed=1
    fi
    while IFS= read -r line; do
        [[ -n "$line" ]] && echo "    ${line//$root\//}"
    done <<<"$out"
    n="$(grep -c 'passed for resource' <<<"$out" || true)"
    echo "  $rel: $n resources checked"
done

echo "==> Dockerfile syntax (dockerfile-parse)"
for dockerfile in "$here"/docker/Dockerfile; do
    rel="${dockerfile#"$root"/}"
    if ! "$venv/bin/python" - "$dockerfile" <<'PY'
import sys
from dockerfile_parse import DockerfileParser

KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
         "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
         "SHELL", "COMMENT"}
path = sys.argv[1]
with open(path) as f:
    parser = DockerfileParser(fileobj=f)
    structure = parser.structure
bad = [i for i in structure if i["instruction"] not in KNOWN]
for i in bad:
    print(f"    line {i['startline'] + 1}: unknown instruction {i['instruction']}")
if not structure or structure[0]["instruction"] not in {"FROM", "ARG", "COMMENT"}:
    print("    the first instruction must be FROM (or ARG)")
    sys.exit(1)
stages = [i["value"].split()[-1] for i in structure
          if i["instruction"] == "FROM" and " AS " in i["value"].upper()]
count = sum(1 for i in structure if i["instruction"] != "COMMENT")
print(f"    {count} instructions, stages: {', '.join(stages)}")
sys.exit(1 if bad else 0)
PY
    then
        failed=1
    fi
    echo "  $rel: parsed"
done

if [[ $failed -ne 0 ]]; then
    echo "==> FAILED" >&2
    exit 1
fi
echo "==> all valid"
