"""Fine-tune a Fashion-MNIST base model onto three classes it never saw, and print the figures.

    .venv/bin/python benchmarks/finetune.py                       # default hyperparameters
    .venv/bin/python benchmarks/finetune.py --set epochs=4 --set learning_rate=0.001

The base is the default recipe's ``cnn`` (``imgcls train`` defaults) trained on the seven classes that are
not ``sneaker``, ``bag`` and ``ankle-boot``, published as ``fashion-mnist-7`` under ``--root``; a later
run reuses it (training it takes about two minutes on two cores). The new dataset is 200 images of each
of those three classes from the Fashion-MNIST training set, written as 28x28 PNG files into an
ImageFolder tree, as an upload would store them. Then ``training.finetune.fine_tune`` runs the steps the
worker runs, in a process that has torch loaded already.

Figures: the fine-tune's wall time (decode, train, calibrate, test, export with its parity check,
publish), the time until the published ONNX answers one image through the service's preprocessing,
validation and test accuracy on the dataset's held-out images, and the accuracy of the published ONNX on
the 3,000 official Fashion-MNIST test images of the three classes. The 1-minute load average before and
after says how busy the machine was.
"""

import argparse
import io
import json
import time
import uuid
from pathlib import Path

import numpy as np
import onnxruntime as ort
import record
import torch
import yaml
from PIL import Image

from service.imaging import preprocess
from service.jobs.hyperparameters import build_finetune_config
from service.repository import Manifest, ModelNotFound, ModelRepository
from service.repository.run_folder import TrialFolder
from training.config import TrainConfig
from training.data import FASHION_MNIST_LABELS, DatasetBundle, load_dataset
from training.finetune import FineTuneJob, fine_tune
from training.settings import TrainingSettings
from training.train import run

NEW_CLASSES = {"sneaker": 7, "bag": 8, "ankle-boot": 9}  # folder name -> Fashion-MNIST class
PER_CLASS = 200
BASE_NAME = "fashion-mnist-7"


def seven_class_base(settings: TrainingSettings) -> tuple[int, float | None]:
    """Publish the base unless it is there: (version, training wall seconds or None when reused)."""
    repository = ModelRepository(settings.model_root)
    try:
        return repository.resolve(BASE_NAME), None
    except ModelNotFound:
        pass
    full = load_dataset("fashion-mnist", fashion_mnist_dir=settings.fashion_mnist_dir)
    old = [index for index in range(10) if index not in NEW_CLASSES.values()]
    remap = torch.full((10,), -1, dtype=torch.int64)
    remap[old] = torch.arange(len(old))
    keep_train, keep_test = remap[full.train_labels] >= 0, remap[full.test_labels] >= 0
    data = DatasetBundle(
        name="fashion-mnist-7",
        labels=tuple(FASHION_MNIST_LABELS[index] for index in old),
        train_images=full.train_images[keep_train],
        train_labels=remap[full.train_labels[keep_train]],
        test_images=full.test_images[keep_test],
        test_labels=remap[full.test_labels[keep_test]],
        preprocessing=full.preprocessing,
        flip_ok=True,
    )
    started = time.perf_counter()
    result = run(
        TrainConfig(name=BASE_NAME),
        settings=settings,
        output_dir=settings.runs_dir / f"{BASE_NAME}-base",
        data=data,
        progress=False,
        echo=False,
    )
    assert result.published is not None
    return result.published.version, round(time.perf_counter() - started, 1)


def write_dataset(settings: TrainingSettings, folder: Path) -> None:
    """200 random training images per new class, as PNG files (the same ones on every run)."""
    full = load_dataset("fashion-mnist", fashion_mnist_dir=settings.fashion_mnist_dir)
    generator = torch.Generator().manual_seed(0)
    for name, label in NEW_CLASSES.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        candidates = (full.train_labels == label).nonzero().flatten()
        chosen = candidates[torch.randperm(len(candidates), generator=generator)[:PER_CLASS]]
        for index in chosen.tolist():
            Image.fromarray(full.train_images[index, 0].numpy(), "L").save(folder / name / f"{index}.png")


def onnx_accuracy_on_official_test(settings: TrainingSettings, path: Path, manifest: Manifest) -> float:
    """The published ONNX file, fed through the service's preprocessing, on images no step has seen."""
    full = load_dataset("fashion-mnist", fashion_mnist_dir=settings.fashion_mnist_dir)
    keep = torch.isin(full.test_labels, torch.tensor(list(NEW_CLASSES.values())))
    images, targets = full.test_images[keep], full.test_labels[keep]
    to_new = {label: manifest.labels.index(name) for name, label in NEW_CLASSES.items()}
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess(Image.fromarray(image[0].numpy(), "L"), manifest.preprocessing) for image in images])
    predicted = session.run(None, {manifest.input.name: batch})[0].argmax(axis=1)
    truth = np.array([to_new[int(t)] for t in targets])
    return round(float((predicted == truth).mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("var/benchmarks/finetune"), help="models, data, runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a hyperparameter")
    record.add_arguments(parser, "finetune")
    args = parser.parse_args()
    begun = record.begin(args.result_name, args)
    settings = TrainingSettings(model_root=args.root / "models", runs_dir=args.root / "runs")
    base_version, base_seconds = seven_class_base(settings)
    folder = args.root / "data" / "fmnist-3"
    if not folder.is_dir():
        write_dataset(settings, folder)
    overrides = {key: yaml.safe_load(value) for key, _, value in (pair.partition("=") for pair in args.set)}
    config = build_finetune_config(overrides)

    job_id = f"bench-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    job = FineTuneJob(
        job_id=job_id,
        base=BASE_NAME,
        base_version=base_version,
        dataset_dir=folder,
        dataset_id=None,
        dataset_sha256=None,
        config=config,
    )
    result = fine_tune(job, TrialFolder(settings.runs_dir / job_id), settings)
    tuned = time.perf_counter() - started
    assert result.published is not None
    sample = next((folder / "bag").iterdir()).read_bytes()
    repository = ModelRepository(settings.model_root)
    manifest = repository.manifest(result.published.name, result.published.version)
    session = ort.InferenceSession(str(result.published.path / "model.onnx"), providers=["CPUExecutionProvider"])
    pixels = preprocess(Image.open(io.BytesIO(sample)), manifest.preprocessing)[None]
    answer = manifest.labels[int(session.run(None, {manifest.input.name: pixels})[0].argmax())]
    answering = time.perf_counter() - started
    figures = {
        "base": f"{BASE_NAME} v{base_version}",
        "base_training_seconds": base_seconds,
        "base_test_accuracy": repository.manifest(BASE_NAME, base_version).metrics["test_accuracy"],
        "published": f"{result.published.name} v{result.published.version}",
        "fine_tune_seconds": round(tuned, 1),
        "until_answering_seconds": round(answering, 1),
        "first_answer": answer,
        "epochs": result.epochs_completed,
        "val_accuracy": result.metrics.get("val_accuracy"),
        "test_accuracy": result.metrics["test_accuracy"],
        "test_images": int(result.metrics["test_images"]),
        "ece": result.metrics["ece"],
        "official_test_accuracy": onnx_accuracy_on_official_test(settings, result.published.path, manifest),
        "hyperparameters": result.config.to_dict(),
        "torch_threads": torch.get_num_threads(),
    }
    record.save(begun, figures, args.results_dir)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
