"""Faults in the repository while a server runs: a corrupt file or a manifest that lies is refused at load
with the reason, and the version already serving keeps serving."""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import onnx
import pytest

from service.settings import ServiceSettings
from tests.service.api.server import running_server
from tests.service.api.test_classify import assert_problem

MODEL = "fashion-mnist"


@pytest.fixture
def server(service_settings: ServiceSettings) -> Iterator[str]:
    with running_server(service_settings) as url:
        yield url


def classify_version(server: str, png: bytes) -> int:
    answer = httpx.post(f"{server}/v1/models/{MODEL}/classify", content=png, headers={"Content-Type": "image/png"})
    assert answer.status_code == 200, answer.text
    version: int = answer.json()["version"]
    return version


def restamp(version_dir: Path) -> None:
    """Write the ONNX file's true sha256 into the manifest: a file that matches its manifest yet is broken."""
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["onnx_sha256"] = hashlib.sha256((version_dir / "model.onnx").read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


def break_by_bytes(version_dir: Path) -> None:
    with (version_dir / "model.onnx").open("ab") as handle:
        handle.write(b"tampered")


def break_the_manifest(version_dir: Path) -> None:
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["onnx_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))


def break_the_graph(version_dir: Path) -> None:
    model = onnx.load(version_dir / "model.onnx")
    model.graph.node[0].op_type = "NoSuchOperator"
    onnx.save(model, version_dir / "model.onnx")
    restamp(version_dir)


def truncate(version_dir: Path) -> None:
    path = version_dir / "model.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    restamp(version_dir)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (break_by_bytes, "sha256"),
        (break_the_manifest, "sha256"),
        (break_the_graph, "cannot be loaded by onnxruntime"),
        (truncate, "cannot be loaded by onnxruntime"),
    ],
)
def test_a_broken_version_is_refused_and_the_serving_one_stays(
    server: str, model_root: Path, png: bytes, damage: object, reason: str
) -> None:
    assert classify_version(server, png) == 1
    damage(model_root / MODEL / "2")  # type: ignore[operator]

    assert_problem(httpx.post(f"{server}/v1/models/{MODEL}/promote", json={"version": 2}), 422, reason)
    assert classify_version(server, png) == 1
    assert httpx.get(f"{server}/healthz/ready").status_code == 200
    assert json.loads((model_root / MODEL / "aliases.json").read_text())["production"] == 1
