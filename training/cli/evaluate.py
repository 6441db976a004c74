"""``imgcls evaluate``: a published ONNX version, run by onnxruntime, on a dataset's test split."""

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import onnxruntime as ort
import torch

from service.evaluation.report import evaluation_report
from service.imaging import DecodeLimits
from service.importing.calibrate import expected_calibration_error
from service.importing.evaluate import evaluation_metrics, probabilities_of
from service.importing.folders import LabelledImages, labelled_images, model_outputs
from service.inference.predictor import Predictor
from service.inference.providers import CPU, default_threads
from service.repository import Manifest, ModelRepository
from service.repository.store import ONNX_FILE
from training.calibration import calibrated_probabilities
from training.cli.options import DATA_DIR_OPTION, settings_from
from training.data import load_dataset
from training.errors import UnusableData
from training.report_files import write_report_files
from training.reporting import confusion_matrix, plot_confusion
from training.settings import TrainingSettings

BATCH_SIZE = 500

# What a measurement gives: the JSON summary printed, and the (N, classes) probabilities as served with the
# (N,) true label indices, from which the evaluation report is made.
Measured = tuple[dict[str, Any], np.ndarray, np.ndarray]


@click.command()
@click.argument("name")
@click.argument("version", required=False)
@click.option("--dataset", help="Dataset spec (default: the one the version was trained on).")
@DATA_DIR_OPTION
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N test images.")
@click.option("--confusion-png", type=click.Path(path_type=Path), help="Also draw the confusion matrix here.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the evaluation report here: report.json, classes.csv, confusion_matrix.png, reliability.png, "
    "thresholds.png (made when missing, files replaced).",
)
@click.option(
    "--attach-report",
    is_flag=True,
    help="Attach the evaluation report to a version published without one, so the API and the web page show it "
    "(stored as <model>/reports/<version>.json; the version itself does not change).",
)
def evaluate(
    name: str,
    version: str | None,
    dataset: str | None,
    data_dir: Path | None,
    model_root: Path | None,
    limit: int | None,
    confusion_png: Path | None,
    report_dir: Path | None,
    attach_report: bool,
) -> None:
    """Accuracy, per-class accuracy, confusion matrix and ECE of NAME at VERSION (number or alias).

    Runs the exported ONNX file with onnxruntime on the CPU, with the manifest's preprocessing and
    temperature, so it measures exactly what the service serves. Prints one JSON object. An imported
    version (imgcls models import) is evaluated on a labelled folder (--dataset folder:PATH, default the
    folder it was evaluated on when imported), through the service's own decoding and predictor.
    --report DIR and --attach-report add the evaluation report (per-class precision, recall and F1,
    reliability, coverage and accuracy per confidence threshold: docs/evaluation.md).
    """
    settings = settings_from(data_dir=data_dir, model_root=model_root)
    repo = ModelRepository(settings.model_root)
    number = repo.resolve(name, version)
    manifest = repo.verify(name, number)
    if manifest.lineage.imported is not None:
        summary, probabilities, targets = evaluate_imported(repo, manifest, dataset, limit)
    else:
        summary, probabilities, targets = evaluate_trained(repo, manifest, dataset, limit, settings)
    title = f"{name} v{number} · {summary['dataset']}"
    if confusion_png is not None:
        plot_confusion(torch.tensor(summary["confusion_matrix"]), manifest.labels, confusion_png, title=title)
    if report_dir is not None or attach_report:
        report = evaluation_report(probabilities, targets, manifest.labels, dataset=summary["dataset"])
        if report_dir is not None:
            summary["report_files"] = str(write_report_files(report, report_dir, title=title).folder)
        if attach_report:
            summary["attached_report"] = str(repo.attach_report(name, number, report))
    click.echo(json.dumps(summary))


def evaluate_trained(
    repo: ModelRepository, manifest: Manifest, dataset: str | None, limit: int | None, settings: TrainingSettings
) -> Measured:
    """A trained version on its dataset's test split (or ``dataset``'s), as the export runs it."""
    name, number = manifest.name, manifest.version
    data = load_dataset(
        dataset or manifest.lineage.dataset,
        fashion_mnist_dir=settings.fashion_mnist_dir,
        image_size=manifest.preprocessing.input_size[0],
        seed=int(manifest.lineage.config.get("seed", 0)),
    )
    if data.preprocessing.input_size != manifest.preprocessing.input_size or len(data.labels) != len(manifest.labels):
        raise UnusableData(
            f"{data.name} has {len(data.labels)} classes of {data.preprocessing.input_size} images; "
            f"{name} v{number} expects {len(manifest.labels)} classes of {manifest.preprocessing.input_size}"
        )
    images, labels = data.test_images[:limit], data.test_labels[:limit]
    session = ort.InferenceSession(str(repo.path(name, number) / ONNX_FILE), providers=["CPUExecutionProvider"])
    mean = np.asarray(manifest.preprocessing.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(manifest.preprocessing.std, dtype=np.float32).reshape(1, -1, 1, 1)
    outputs = []
    for start in range(0, len(labels), BATCH_SIZE):
        batch = images[start : start + BATCH_SIZE].numpy().astype(np.float32) / np.float32(255)
        outputs.append(session.run([manifest.output.name], {manifest.input.name: (batch - mean) / std})[0])
    logits = torch.from_numpy(np.concatenate(outputs))
    predicted = logits.argmax(dim=1)
    matrix = confusion_matrix(predicted, labels, len(manifest.labels))
    per_class = (matrix.diag().double() / matrix.sum(dim=1).clamp(min=1).double()).tolist()
    probabilities = calibrated_probabilities(logits, manifest.temperature).double().numpy()
    uncalibrated = calibrated_probabilities(logits, 1.0).double().numpy()
    summary = {
        "name": name,
        "version": number,
        "dataset": data.name,
        "images": len(labels),
        "accuracy": round(float((predicted == labels).float().mean()), 5),
        "ece": round(expected_calibration_error(probabilities, labels.numpy()), 5),
        "ece_uncalibrated": round(expected_calibration_error(uncalibrated, labels.numpy()), 5),
        "per_class_accuracy": {label: round(a, 5) for label, a in zip(manifest.labels, per_class, strict=True)},
        "confusion_matrix": matrix.tolist(),
    }
    return summary, probabilities, labels.numpy()


def evaluate_imported(repo: ModelRepository, manifest: Manifest, dataset: str | None, limit: int | None) -> Measured:
    """An imported version on a labelled folder, measured as on import: the service's decoding and predictor.

    An imported version has no training dataset; ``folder:PATH`` (``<label>/<image>``) names the images,
    by default the folder it was evaluated on when imported (``--evaluate-on``).
    """
    spec = dataset or manifest.lineage.dataset
    if not spec.startswith("folder:"):
        raise UnusableData(
            f"{manifest.name} v{manifest.version} was imported, not trained here, and has no dataset of its own: "
            "give --dataset folder:PATH, a labelled folder (<label>/<image>)"
        )
    images = labelled_images(Path(spec.removeprefix("folder:")), manifest.labels)
    if limit is not None:
        images = LabelledImages(images.folder, images.files[:limit], images.targets[:limit])
    onnx_path = repo.path(manifest.name, manifest.version) / ONNX_FILE
    predictor = Predictor.for_manifest(onnx_path, manifest, providers=[CPU], intra_op_threads=default_threads(1))
    outputs = model_outputs(predictor, images, manifest.preprocessing, DecodeLimits())
    metrics = evaluation_metrics(
        outputs, images.targets, manifest.labels, scores=manifest.scores, temperature=manifest.temperature
    )
    predicted = outputs.argmax(axis=1)
    matrix = np.zeros((len(manifest.labels), len(manifest.labels)), dtype=np.int64)
    np.add.at(matrix, (images.targets, predicted), 1)
    summary = {
        "name": manifest.name,
        "version": manifest.version,
        "dataset": spec,
        "images": len(images.targets),
        "accuracy": metrics["test_accuracy"],
        "ece": metrics["ece"],
        "ece_uncalibrated": metrics["ece_uncalibrated"],
        "per_class_accuracy": {
            label: metrics[f"accuracy/{label}"] for label in manifest.labels if f"accuracy/{label}" in metrics
        },
        "confusion_matrix": matrix.tolist(),
    }
    return summary, probabilities_of(outputs, manifest.scores, manifest.temperature), images.targets
