"""deploy/compose.yaml: valid under the Compose Specification's JSON schema (the copy check-jsonschema ships,
from github.com/compose-spec/compose-spec, schema/compose-spec.json), and what it promises holds: one volume
for the repository, auth on, Redis persistent, GPUs reserved by the gpu profile only."""

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.yaml"
IMGCLS_SERVICES = {"api": "api", "worker": "worker", "api-gpu": "api-gpu", "worker-gpu": "worker-gpu"}
GPU_SERVICES = {"api-gpu", "worker-gpu"}
API_SERVICES = {"api", "api-gpu"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # resolves the << merges
    return document


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = get_builtin_schema("vendor.compose-spec")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def errors(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


# ---- the schema


def test_compose_file_validates_against_the_compose_spec(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    assert errors(validator, compose) == []


def test_check_jsonschema_accepts_it_too() -> None:
    """The same schema through the command line a developer or a pre-commit hook would run."""
    cli = shutil.which("check-jsonschema", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert cli is not None, "check-jsonschema is not installed: pip install -e '.[dev]'"
    result = subprocess.run(
        [cli, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "api", "ports"), "8000:8000"),
        (("services", "api", "depends_on", "redis", "condition"), "service_happy"),
        (("services", "api", "helthcheck"), {"test": ["CMD", "true"]}),
        (("services", "worker-gpu", "deploy", "resources", "reservations", "devices"), "all"),
    ],
)
def test_the_schema_catches_mistakes(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator, path: tuple[str, ...], value: object
) -> None:
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert errors(validator, broken)


# ---- what the stack promises


def test_services_and_their_targets(compose: dict[str, Any]) -> None:
    found = services(compose)
    assert set(found) == {*IMGCLS_SERVICES, "redis", "flower"}
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", dockerfile, re.MULTILINE | re.IGNORECASE))
    for name, target in IMGCLS_SERVICES.items():
        build = found[name]["build"]
        assert build["target"] == target and target in stages
        assert (COMPOSE.parent / build["context"]).resolve() == REPO
    assert found["flower"]["image"] == found["worker"]["image"], "Flower runs from the worker image (not the API's)"
    assert found["flower"]["build"]["target"] == "worker"
    assert "healthcheck" in found["flower"], "Flower replaces the worker image's check (a Celery ping) with its own"


def test_every_service_with_the_repository_mounts_the_same_volume(compose: dict[str, Any]) -> None:
    mounts = set()
    for name, service in services(compose).items():
        env = environment(service)
        if "IMGCLS_MODEL_ROOT" not in env:
            continue
        for setting in ("IMGCLS_MODEL_ROOT", "IMGCLS_DATA_ROOT", "IMGCLS_RUNS_DIR"):
            if setting not in env:
                assert setting == "IMGCLS_RUNS_DIR" and name in API_SERVICES, f"{name} lacks {setting}"
                continue  # the API reads no runs folder (test_images.py checks the names against the images)
            path = env[setting]
            holding = [
                v for v in service["volumes"] if path == v.split(":")[1] or path.startswith(v.split(":")[1] + "/")
            ]
            assert len(holding) == 1, f"{name}: {setting}={path} is on no volume (or on several)"
            mounts.add(holding[0].split(":")[0])
    assert len(mounts) == 1, f"the repository is on different volumes: {mounts}"
    (volume,) = mounts
    assert volume in compose["volumes"], "a named volume, declared at the top level"
    assert {name for name, s in services(compose).items() if "IMGCLS_MODEL_ROOT" in environment(s)} == set(
        IMGCLS_SERVICES
    )


def test_auth_is_on(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        assert environment(service).get("IMGCLS_AUTH_ENABLED", "true").lower() not in {"false", "0", "no", "off"}
        assert "--no-auth" not in str(service.get("command", "")), name
    for name in API_SERVICES:
        keys = environment(services(compose)[name])["IMGCLS_API_KEYS"]
        assert re.fullmatch(r"\$\{IMGCLS_API_KEYS:\?.+\}", keys), f"{name}: IMGCLS_API_KEYS must be required: {keys}"
    flower = services(compose)["flower"]
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?.+\}", environment(flower)["FLOWER_BASIC_AUTH"])
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"]), "Flower only from this machine"


def test_redis_is_persistent_private_and_checked(compose: dict[str, Any]) -> None:
    redis = services(compose)["redis"]
    image, _, tag = redis["image"].partition(":")
    assert image == "redis" and re.fullmatch(r"7\.\d+\.\d+(-[a-z0-9.]+)?", tag), redis["image"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    (volume,) = redis["volumes"]
    assert volume.split(":")[1] == "/data" and volume.split(":")[0] in compose["volumes"]
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    assert "ports" not in redis, "Redis has no password: it stays inside the stack's network"
    for service in services(compose).values():
        for url in (v for k, v in environment(service).items() if k.endswith("REDIS_URL")):
            assert url == "redis://redis:6379/0"


def test_start_order_and_restarts(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        assert service.get("restart") in {"unless-stopped", "always"}, name
        if name != "redis":
            assert service["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_the_gpu_profile_reserves_nvidia_gpus(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if name in GPU_SERVICES:
            assert service["profiles"] == ["gpu"]
            assert devices and all(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
            assert service["build"]["target"].endswith("-gpu")
        else:
            assert "profiles" not in service and not devices, f"{name} starts by default and needs no GPU"
    gpu_queues = {environment(services(compose)[name]).get("IMGCLS_JOB_QUEUE") for name in GPU_SERVICES}
    assert len(gpu_queues) == 1 and None not in gpu_queues, "jobs sent to api-gpu go to worker-gpu's queue"
