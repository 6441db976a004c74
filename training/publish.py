"""Publish a finished run folder into the model repository (``imgcls publish RUN_DIR`` and ``train``).

The run's ``result.json`` says what the manifest says; the repository (service/) stamps the version
and the sha256 of each file and renames the version into place atomically. The first version of a
model also becomes its ``production`` alias; later ones are promoted explicitly
(``imgcls models promote``), so a new training run never changes what is served by surprise.
"""

import json
from pathlib import Path
from typing import Any

import msgspec

from service.repository import Lineage, Manifest, ModelRepository, Preprocessing, TensorSpec, VersionRef
from service.repository.store import ONNX_FILE, PRODUCTION, WEIGHTS_FILE
from training.errors import TrainingError

RESULT_FILE = "result.json"
PUBLISHED_FILE = "published.json"


def read_result(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RESULT_FILE
    if not path.is_file() or not (run_dir / ONNX_FILE).is_file():
        raise TrainingError(
            f"{run_dir} holds no finished run ({RESULT_FILE} and {ONNX_FILE} are written when a run completes); "
            f"resume it with imgcls train --resume {run_dir}"
        )
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def manifest_from_result(result: dict[str, Any], *, name: str, run_dir: Path) -> Manifest:
    preprocessing = msgspec.convert(result["preprocessing"], Preprocessing)
    base = result.get("base") or {}
    return Manifest(
        name=name,
        architecture=result["architecture"],
        labels=tuple(result["labels"]),
        input=TensorSpec(name="input", datatype="FP32", shape=(-1, preprocessing.channels, *preprocessing.input_size)),
        output=TensorSpec(name="logits", datatype="FP32", shape=(-1, len(result["labels"]))),
        preprocessing=preprocessing,
        temperature=float(result["temperature"]),
        metrics={key: float(value) for key, value in result["metrics"].items()},
        lineage=Lineage(
            dataset=result["dataset"],
            config=result["config"],
            run_dir=str(run_dir.resolve()),
            base_model=base.get("model"),
            base_version=base.get("version"),
        ),
        onnx_sha256="",  # stamped by ModelRepository.publish
        weights_sha256=None,
        created_at=result["created_at"],
        code_version=result["code_version"],
    )


def publish_run(run_dir: Path, *, repository_root: Path, name: str | None = None) -> VersionRef:
    result = read_result(run_dir)
    name = name or result["name"]
    repository = ModelRepository(repository_root)
    weights = run_dir / WEIGHTS_FILE
    published = repository.publish(
        manifest_from_result(result, name=name, run_dir=run_dir),
        run_dir / ONNX_FILE,
        weights if weights.is_file() else None,
    )
    if PRODUCTION not in repository.aliases(name):
        repository.set_alias(name, PRODUCTION, published.version)
    record = {"name": published.name, "version": published.version, "path": str(published.path)}
    (run_dir / PUBLISHED_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return published
