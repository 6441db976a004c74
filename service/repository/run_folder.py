"""The folders training writes, by name: a run folder, and a fine-tuning job's trial folder around one.

Every path of a run is spelled here and nowhere else, so training, fine-tuning, the worker, the CLI and
the API (which names a trial's checkpoint without importing training) agree. Torch-free: only paths and
the typed ``result.json``.

Run folder (``imgcls train --output-dir``, default ``<runs_dir>/<name>-<model>-<UTC time>``)::

    config.yaml               the resolved config
    checkpoints/last.pt       after every epoch (resume from here)
    checkpoints/best.pt       best validation accuracy so far
    metrics.jsonl, tensorboard/, curves.png
    report.json, classes.csv, confusion_matrix.png, reliability.png, thresholds.png
                              the evaluation report on the test set (service/evaluation) and its pictures
                              (training/report_files.py); report.json is published with the version
    model.onnx, weights.pt, result.json    (when the run completes)
    explain.onnx              the explain graph (class activation maps), for architectures that have one
    published.json            the version ``imgcls publish`` (or ``train``) made of it

Trial folder of a fine-tuning job (``<runs_dir>/jobs/<job id>/trial-<n>``, the same on every delivery)::

    job.json         the job as it started: base version (an alias is resolved once), dataset, name,
                     hyperparameters as given and resolved
    run/             the run folder above
    published.json   the version this job published, then whether it was promoted
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from service.files import write_json_atomic
from service.repository.errors import UnfinishedRun
from service.repository.manifest import Explanation, Lineage, Manifest, Preprocessing, TensorSpec
from service.repository.store import EXPLAIN_FILE, ONNX_FILE, REPORT_FILE, WEIGHTS_FILE

PUBLISHED_FILE = "published.json"


class SkippedFile(msgspec.Struct, frozen=True):
    path: str
    reason: str  # why the image could not be decoded


class ExportCheck(msgspec.Struct, frozen=True):
    opset: int
    max_abs_diff: float  # onnxruntime against torch on a sample batch


class EarlyStop(msgspec.Struct, frozen=True):
    """Why a run ended before its last epoch: ``patience`` epochs after ``best_epoch`` brought no better
    validation accuracy, so it stopped after ``epoch``."""

    epoch: int
    best_epoch: int
    patience: int

    @property
    def reason(self) -> str:
        return (
            f"stopped early after epoch {self.epoch}: no better validation accuracy in the {self.patience} "
            f"epoch(s) after epoch {self.best_epoch} (early_stopping_patience {self.patience})"
        )


class FinishedRun(msgspec.Struct, frozen=True):
    """``result.json``: what a completed run made, and what its manifest will say."""

    name: str  # the repository name it publishes under by default
    architecture: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    temperature: float  # fitted on the validation split
    # test_accuracy, test_loss, ece, ece_uncalibrated, epochs (trained), best_epoch (the one kept: its weights
    # are model.onnx and weights.pt), accuracy/<label>, ...
    metrics: dict[str, float]
    dataset: str
    skipped_files: tuple[SkippedFile, ...]
    config: dict[str, Any]  # the resolved TrainConfig
    export: ExportCheck
    created_at: str  # ISO 8601, UTC
    code_version: str
    early_stop: EarlyStop | None = None  # None: every epoch ran (or a result.json older than early stopping)
    explain: Explanation | None = None  # explain.onnx in the run folder; None: the architecture has none

    @property
    def epochs(self) -> int:
        return int(self.metrics.get("epochs", 0))

    def manifest(self, *, name: str, run_dir: Path, lineage: Lineage | None = None) -> Manifest:
        """The manifest of a version made from this run (hashes and version are stamped by ``publish``);
        ``lineage``: the default one (dataset, config, run folder) with more said (a fine-tuning job's)."""
        return Manifest(
            name=name,
            architecture=self.architecture,
            labels=self.labels,
            input=TensorSpec(
                name="input", datatype="FP32", shape=(-1, self.preprocessing.channels, *self.preprocessing.input_size)
            ),
            output=TensorSpec(name="logits", datatype="FP32", shape=(-1, len(self.labels))),
            preprocessing=self.preprocessing,
            temperature=self.temperature,
            metrics=self.metrics,
            lineage=lineage or Lineage(dataset=self.dataset, config=self.config, run_dir=str(run_dir.resolve())),
            onnx_sha256="",  # stamped by ModelRepository.publish
            weights_sha256=None,
            created_at=self.created_at,
            code_version=self.code_version,
            explain=self.explain,
        )


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """Saved after every epoch: where a stopped run resumes."""
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        """The epoch with the best validation accuracy so far."""
        return self.checkpoints / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def report(self) -> Path:
        """The evaluation report on the test set; written before ``result.json``, so every finished run has one
        (except runs finished before reports existed)."""
        return self.path / REPORT_FILE

    @property
    def model(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def explain(self) -> Path:
        """The explain graph, when ``result.json``'s ``explain`` says there is one."""
        return self.path / EXPLAIN_FILE

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    @property
    def published(self) -> Path:
        return self.path / PUBLISHED_FILE

    @property
    def finished(self) -> bool:
        """Training, calibration and the export completed (``result.json`` is written last)."""
        return self.result.is_file()

    def read_result(self) -> FinishedRun:
        """Raises ``UnfinishedRun`` for a run that did not finish (or a result.json that is not one)."""
        if not self.result.is_file() or not self.model.is_file():
            raise UnfinishedRun(
                f"{self.path} holds no finished run ({self.result.name} and {self.model.name} are written when a "
                f"run completes); resume it with imgcls train --resume {self.path}"
            )
        try:
            return msgspec.json.decode(self.result.read_bytes(), type=FinishedRun)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UnfinishedRun(f"{self.result} is not a run's result: {exc}") from exc

    def write_result(self, result: FinishedRun) -> None:
        write_json_atomic(self.result, msgspec.to_builtins(result))


@dataclass(frozen=True)
class TrialFolder:
    """One trial of a fine-tuning job: the job's record, its run folder and what it published."""

    path: Path

    @classmethod
    def of(cls, runs_dir: Path, job_id: str, index: int) -> "TrialFolder":
        """Where the worker runs trial ``index`` of job ``job_id`` (``runs_dir`` relative: a path under it)."""
        return cls(runs_dir / "jobs" / job_id / f"trial-{index}")

    @property
    def job(self) -> Path:
        return self.path / "job.json"

    @property
    def run(self) -> RunFolder:
        return RunFolder(self.path / "run")

    @property
    def published(self) -> Path:
        return self.path / PUBLISHED_FILE

    @property
    def lock(self) -> Path:
        return self.path / ".lock"
