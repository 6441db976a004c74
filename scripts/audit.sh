#!/usr/bin/env bash
# Dependency audit: pip-audit over every package installed in .venv (the set the service, the workers and the
# tests run on; the project itself, installed editable, is left out).
#
#   scripts/audit.sh                  # against PyPI's vulnerability data (pip-audit's default service)
#   AUDIT_SERVICE=osv scripts/audit.sh    # against OSV (api.osv.dev)
#
# Exit status: 0 no known vulnerability in any package; 1 vulnerabilities found (listed); 2 pip-audit is not
# installed; 3 the vulnerability database could not be reached, or answered for no package (then nothing was
# audited, whatever pip-audit itself says). It needs the network; the test suite never runs it.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
SERVICE=${AUDIT_SERVICE:-pypi}
if [ ! -x "$VENV/bin/pip-audit" ]; then
    echo "audit: pip-audit is not installed in $VENV; install the dev extra: $VENV/bin/pip install -e '.[dev]'" >&2
    exit 2
fi
report=$(mktemp)
errors=$(mktemp)
trap 'rm -f "$report" "$errors"' EXIT

echo "audit: pip-audit ($SERVICE) over the packages installed in $VENV ..." >&2
"$VENV/bin/pip-audit" --local --skip-editable --vulnerability-service "$SERVICE" --format json --desc off \
    --progress-spinner off --timeout 20 --output "$report" 2>"$errors"
status=$?

"$VENV/bin/python" - "$report" "$errors" "$status" "$SERVICE" <<'PY'
import json
import sys
from pathlib import Path

report_path, errors_path, status, service = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
where = {"pypi": "the PyPI JSON API (https://pypi.org/pypi/<name>/<version>/json)", "osv": "OSV (https://api.osv.dev)"}
source = where.get(service, service)
text = report_path.read_text() if report_path.exists() else ""
try:
    dependencies = json.loads(text)["dependencies"] if text.strip() else None
except (ValueError, KeyError):
    dependencies = None
if dependencies is None:
    last = [line for line in Path(errors_path).read_text().splitlines() if line.strip()][-1:] or ["no output"]
    print(f"audit: NOT AUDITED: pip-audit could not reach {source} (exit {status}): {last[0][:300]}")
    print("audit: run scripts/audit.sh where that service is reachable, or try AUDIT_SERVICE=osv / pypi")
    sys.exit(3)
audited = [d for d in dependencies if "skip_reason" not in d]
skipped = [d for d in dependencies if "skip_reason" in d]
vulnerable = [d for d in audited if d.get("vulns")]
if not audited:
    print(f"audit: NOT AUDITED: {source} answered for none of the {len(skipped)} packages "
          f"(e.g. {skipped[0]['skip_reason'] if skipped else 'no packages found'}).")
    print("audit: the vulnerability database is not reachable from here (a registry mirror without that API?); "
          "run scripts/audit.sh where it is, or try AUDIT_SERVICE=osv / pypi")
    sys.exit(3)
for dependency in vulnerable:
    for vuln in dependency["vulns"]:
        fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
        print(f"audit: {dependency['name']} {dependency['version']}: {vuln['id']} (fixed in: {fixed})")
if skipped:
    names = ", ".join(d["name"] for d in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
    print(f"audit: {len(skipped)} package(s) could not be audited: {names}")
print(f"audit: {len(audited)} packages audited against {source}: "
      f"{len(vulnerable)} with known vulnerabilities")
sys.exit(1 if vulnerable else 0)
PY
