"""``imgcls evaluate``: a published ONNX version, run by onnxruntime, on a dataset's test split."""

import json
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
import torch

from service.repository import ModelRepository
from service.repository.store import ONNX_FILE
from training.calibration import calibrated_probabilities, expected_calibration_error
from training.cli.options import DATA_DIR_OPTION, settings_from
from training.data import load_dataset
from training.errors import UnusableData
from training.reporting import confusion_matrix, plot_confusion

BATCH_SIZE = 500


@click.command()
@click.argument("name")
@click.argument("version", required=False)
@click.option("--dataset", help="Dataset spec (default: the one the version was trained on).")
@DATA_DIR_OPTION
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N test images.")
@click.option("--confusion-png", type=click.Path(path_type=Path), help="Also draw the confusion matrix here.")
def evaluate(
    name: str,
    version: str | None,
    dataset: str | None,
    data_dir: Path | None,
    model_root: Path | None,
    limit: int | None,
    confusion_png: Path | None,
) -> None:
    """Accuracy, per-class accuracy, confusion matrix and ECE of NAME at VERSION (number or alias).

    Runs the exported ONNX file with onnxruntime on the CPU, with the manifest's preprocessing and
    temperature, so it measures exactly what the service serves. Prints one JSON object.
    """
    settings = settings_from(data_dir=data_dir, model_root=model_root)
    repo = ModelRepository(settings.model_root)
    number = repo.resolve(name, version)
    manifest = repo.verify(name, number)
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
    report = {
        "name": name,
        "version": number,
        "dataset": data.name,
        "images": len(labels),
        "accuracy": round(float((predicted == labels).float().mean()), 5),
        "ece": round(expected_calibration_error(calibrated_probabilities(logits, manifest.temperature), labels), 5),
        "ece_uncalibrated": round(expected_calibration_error(calibrated_probabilities(logits, 1.0), labels), 5),
        "per_class_accuracy": {label: round(a, 5) for label, a in zip(manifest.labels, per_class, strict=True)},
        "confusion_matrix": matrix.tolist(),
    }
    if confusion_png is not None:
        plot_confusion(matrix, manifest.labels, confusion_png, title=f"{name} v{number} · {data.name}")
    click.echo(json.dumps(report))
