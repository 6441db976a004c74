"""``import_onnx``: an ONNX classifier trained elsewhere becomes a new version of a model, or nothing does.

Every check (checks.py) runs before anything is written; then, when asked, the temperature is fitted on a
labelled folder (``calibrate_on``, logits only) and the version is measured on another (``evaluate_on``: its
metrics, and its evaluation report ``report.json``); last, ``ModelRepository.publish`` stages the files and
renames the version into place. A failure at any step leaves the repository as it was. The manifest says
how it was imported (``lineage.imported``), how its output is served (``scores``, ``calibration``) and how
it is batched (``input.shape[0]``).
"""

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec
import onnx

from service.evaluation.report import EvaluationReport, encode_report, evaluation_report
from service.imaging import DecodeLimits
from service.importing.calibrate import expected_calibration_error, fit_temperature, softmax
from service.importing.checks import BatchMode, CheckedModel, inspect_model, trial_run
from service.importing.errors import InvalidImportOptions
from service.importing.evaluate import evaluation_metrics, probabilities_of
from service.importing.folders import labelled_images, model_outputs
from service.importing.labels import check_labels
from service.importing.options import ImportOptions, resolve_preprocessing
from service.inference.predictor import Predictor
from service.inference.providers import CPU, default_threads
from service.repository import Imported, Lineage, Manifest, ModelRepository, Preprocessing, TensorSpec
from service.repository.notify import announce_change, promote
from service.repository.store import PRODUCTION, check_name, sha256_file
from service.version import code_version

ARCHITECTURE = "onnx"  # not a name from training's registry: an imported graph, served as it is
CHECKS_PASSED = (
    "onnx file",
    "external data",
    "domains",
    "opset",
    "onnx checker",
    "input",
    "output",
    "trial inference",
)


@dataclass(frozen=True)
class ImportReport:
    manifest: Manifest  # as published, with its version number
    batch_mode: BatchMode
    checks: tuple[str, ...]  # the checks it passed, in order


def import_onnx(
    repository: ModelRepository,
    model_path: Path,
    *,
    name: str,
    labels: list[str] | tuple[str, ...],
    options: ImportOptions,
    source: str,
    command: str,
    calibrate_on: Path | None = None,
    evaluate_on: Path | None = None,
    limits: DecodeLimits | None = None,
    redis_url: str | None = None,
) -> ImportReport:
    """Check the ONNX file at ``model_path`` and publish it as the next version of ``name``.

    ``source`` is the file name to record (an upload's, or the path's), ``command`` how it was imported.
    Raises ``ImportRejected`` (and its kinds) naming the failed check or option, ``RepositoryError`` for an
    invalid model name; nothing is published then. As with training, a model's first version becomes its
    production version; running servers are told through ``redis_url`` (None: they notice by polling).
    """
    check_name("model name", name)
    labels = check_labels(list(labels))
    checked = inspect_model(model_path, len(labels))
    preprocessing = resolve_preprocessing(options, checked.dims)
    scores = options.output or ("probabilities" if checked.ends_in_softmax else "logits")
    if calibrate_on is not None and scores == "probabilities":
        raise InvalidImportOptions(
            "calibrate",
            "the model outputs probabilities (a softmax in its graph), served as they are; temperature scaling "
            "needs logits: leave --calibrate-on out",
        )
    batch_mode = trial_run(checked, preprocessing, len(labels), scores)
    manifest = _manifest(
        checked,
        name=name,
        labels=labels,
        preprocessing=preprocessing,
        scores=scores,
        batch_mode=batch_mode,
        options=options,
        imported=Imported(
            kind="onnx",
            source=Path(source).name,
            sha256=sha256_file(model_path),
            imported_at=datetime.now(UTC).isoformat(timespec="seconds"),
            command=command,
        ),
        evaluate_on=evaluate_on,
    )
    with tempfile.TemporaryDirectory(prefix="imgcls-import-") as scratch:
        onnx_path = model_path
        if checked.had_external_data:  # published as one file: its external data is read in by now
            onnx_path = Path(scratch) / "model.onnx"
            onnx.save_model(checked.model, onnx_path, save_as_external_data=False)
        report_path = None
        if calibrate_on is not None or evaluate_on is not None:
            manifest, report = _measured(manifest, onnx_path, calibrate_on, evaluate_on, limits or DecodeLimits())
            if report is not None:
                report_path = Path(scratch) / "report.json"
                report_path.write_bytes(encode_report(report))
        published = repository.publish(manifest, onnx_path, None, report_path)
    if PRODUCTION not in repository.aliases(name):
        promote(repository, name, published.version, redis_url=redis_url)
    else:
        announce_change(redis_url, name)  # a new version to list
    return ImportReport(repository.manifest(name, published.version), batch_mode, CHECKS_PASSED)


def _manifest(
    checked: CheckedModel,
    *,
    name: str,
    labels: tuple[str, ...],
    preprocessing: Preprocessing,
    scores: Literal["logits", "probabilities"],
    batch_mode: BatchMode,
    options: ImportOptions,
    imported: Imported,
    evaluate_on: Path | None,
) -> Manifest:
    """The manifest before any measurement: temperature 1.0, uncalibrated, no metrics."""
    batch = -1 if batch_mode == "dynamic" else 1
    height, width = preprocessing.input_size
    channels = preprocessing.channels
    image = (channels, height, width) if preprocessing.layout == "NCHW" else (height, width, channels)
    config = {
        **msgspec.to_builtins(options),
        "batch_mode": batch_mode,
        "opset": checked.opset,
        "external_data": checked.had_external_data,
    }
    return Manifest(
        name=name,
        architecture=ARCHITECTURE,
        labels=labels,
        input=TensorSpec(name=checked.input_name, datatype="FP32", shape=(batch, *image)),
        output=TensorSpec(name=checked.output_name, datatype="FP32", shape=(batch, len(labels))),
        preprocessing=preprocessing,
        temperature=1.0,
        metrics={},
        lineage=Lineage(
            dataset=f"folder:{evaluate_on.resolve()}" if evaluate_on is not None else "none",
            config=config,
            imported=imported,
        ),
        onnx_sha256="",  # stamped by publish
        weights_sha256=None,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        code_version=code_version(),
        scores=scores,
        calibration="uncalibrated",
    )


def _measured(
    manifest: Manifest, onnx_path: Path, calibrate_on: Path | None, evaluate_on: Path | None, limits: DecodeLimits
) -> tuple[Manifest, EvaluationReport | None]:
    """``manifest`` with the temperature fitted on ``calibrate_on`` and the metrics measured on ``evaluate_on``,
    and the evaluation report of ``evaluate_on`` (None without it)."""
    predictor = Predictor.for_manifest(onnx_path, manifest, providers=[CPU], intra_op_threads=default_threads(1))
    metrics: dict[str, float] = {}
    if calibrate_on is not None:
        images = labelled_images(calibrate_on, manifest.labels)
        logits = model_outputs(predictor, images, manifest.preprocessing, limits)
        temperature = fit_temperature(logits, images.targets)
        metrics["calibration_images"] = float(len(images.files))
        metrics["calibration_ece_before"] = round(expected_calibration_error(softmax(logits), images.targets), 5)
        after = expected_calibration_error(softmax(logits, temperature), images.targets)
        metrics["calibration_ece_after"] = round(after, 5)
        manifest = msgspec.structs.replace(manifest, temperature=temperature, calibration="temperature")
    report = None
    if evaluate_on is not None:
        images = labelled_images(evaluate_on, manifest.labels)
        outputs = model_outputs(predictor, images, manifest.preprocessing, limits)
        metrics.update(
            evaluation_metrics(
                outputs, images.targets, manifest.labels, scores=manifest.scores, temperature=manifest.temperature
            )
        )
        report = evaluation_report(
            probabilities_of(outputs, manifest.scores, manifest.temperature),
            images.targets,
            manifest.labels,
            dataset=manifest.lineage.dataset,
        )
    return msgspec.structs.replace(manifest, metrics=metrics), report
