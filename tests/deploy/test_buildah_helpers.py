"""deploy/buildah/: the helpers scripts/containers.sh runs around a build: pip's configuration for the build,
and the check that a source change took every dependency layer from the cache."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HELPERS = REPO / "deploy" / "buildah"

LOG = """[1/3] STEP 1/3: FROM debian:12.15-slim AS python
[1/3] STEP 2/3: RUN apt-get update && apt-get install -y python3.11 && python -m pip install pip==26.3
--> Using cache 0123
[2/3] STEP 1/2: COPY service/ service/
--> 4567
[3/3] STEP 1/2: RUN python -m pip install --no-cache-dir -r /tmp/requirements/base.txt
{outcome}
[3/3] STEP 2/2: RUN python -m pip install --no-deps /tmp/wheels/*.whl
--> 89ab
"""


def cached_steps(tmp_path: Path, outcome: str) -> subprocess.CompletedProcess[str]:
    log = tmp_path / "build.log"
    log.write_text(LOG.format(outcome=outcome), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(HELPERS / "cached_steps.py"), str(log)], capture_output=True, text=True, timeout=60
    )


def test_cached_steps_passes_when_only_source_steps_ran(tmp_path: Path) -> None:
    result = cached_steps(tmp_path, "--> Using cache cdef")
    assert result.returncode == 0, result.stderr
    assert "2 run again: COPY service/ service/; RUN python -m pip install --no-deps" in result.stdout


def test_cached_steps_fails_when_a_dependency_step_ran(tmp_path: Path) -> None:
    result = cached_steps(tmp_path, "Collecting numpy\n--> cdef")
    assert result.returncode == 1 and "-r /tmp/requirements/base.txt" in result.stderr


def test_pip_config_carries_this_machines_settings_into_the_build(tmp_path: Path) -> None:
    wheels, index, cert = tmp_path / "wheels", tmp_path / "pypi" / "simple", tmp_path / "ca.crt"
    wheels.mkdir()
    index.mkdir(parents=True)
    cert.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_CERT": str(cert),
        "PIP_FIND_LINKS": str(wheels),
        "PIP_EXTRA_INDEX_URL": f"file://{index} https://example.org/simple file:///nowhere/simple",
    }
    result = subprocess.run(
        [sys.executable, str(HELPERS / "pip_config.py"), str(out), "/etc/xdg/pip"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config = (out / "pip.conf").read_text(encoding="utf-8").splitlines()
    assert config[0] == "[global]"
    assert "cert = /etc/xdg/pip/cert-0.crt" in config and (out / "cert-0.crt").read_text() == cert.read_text()
    assert f"find-links = {wheels}" in config
    assert f"extra-index-url = file://{index} https://example.org/simple" in config  # the missing one left out
    assert sorted(result.stdout.splitlines()) == sorted([str(index.parent), str(wheels)])  # to mount
