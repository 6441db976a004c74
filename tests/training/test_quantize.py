"""int8 variants of a small trained model: recorded accuracy, the file runs as int8, the accuracy gate."""

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.repository import ModelRepository
from tests.conftest import FASHION_MNIST
from training.config import TrainConfig
from training.data import load_fashion_mnist
from training.errors import AccuracyDropTooLarge, InvalidHyperparameter
from training.quantize import quantize_version
from training.settings import TrainingSettings
from training.train import run

TEST_IMAGES = 300
MAX_DROP = 0.02  # 6 of 300 images: room for another CPU's kernels; the benchmark holds the 0.5-point target


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding one cnn trained for a few seconds on 1,024 Fashion-MNIST images.

    cnn, not lenet5: its BatchNorm after a max-pool (not foldable) and its global max pool (ReduceMax,
    where onnxruntime's symbolic shape inference gives up) are the harder case.
    """
    root = tmp_path_factory.mktemp("quantize")
    config = TrainConfig(
        model="cnn",
        epochs=1,
        batch_size=64,
        train_subset=1024,
        test_subset=TEST_IMAGES,
        optimizer="adam",
        learning_rate=0.01,
        lr_policy="fixed",
        threads=2,
    )
    run(config, settings=settings_for(root), output_dir=root / "run", progress=False, echo=False)
    return root


def settings_for(root: Path) -> TrainingSettings:
    return TrainingSettings(model_root=root / "models", runs_dir=root / "runs", fashion_mnist_dir=FASHION_MNIST)


@pytest.fixture
def settings(trained_root: Path, tmp_path: Path) -> TrainingSettings:
    """A copy of the trained repository per test, so tests do not see each other's variants."""
    shutil.copytree(trained_root / "models", tmp_path / "models")
    return settings_for(tmp_path)


def test_quantize_records_an_int8_variant_that_agrees_with_fp32(settings: TrainingSettings, tmp_path: Path) -> None:
    report = quantize_version(
        settings.model_root,
        "fashion-mnist",
        fashion_mnist_dir=settings.fashion_mnist_dir,
        calibration_images=128,
        max_accuracy_drop=MAX_DROP,
        progress=False,
    )
    repo = ModelRepository(settings.model_root)
    manifest = repo.verify("fashion-mnist", 1)  # re-hashes model.int8.onnx too
    variant = manifest.variants["int8"]
    assert variant == report.variant
    assert (variant.file, variant.precision) == ("model.int8.onnx", "int8")
    assert "static QDQ" in variant.method and "128 calibration images" in variant.method
    assert variant.metrics["test_images"] == TEST_IMAGES == manifest.metrics["test_images"]
    fp32_accuracy = variant.metrics["fp32_test_accuracy"]  # onnxruntime; the manifest's is torch's
    assert fp32_accuracy == pytest.approx(manifest.metrics["test_accuracy"], abs=1 / TEST_IMAGES)
    assert fp32_accuracy - variant.metrics["test_accuracy"] <= MAX_DROP
    assert variant.metrics["top1_agreement"] >= 0.95

    # The file runs on its own in onnxruntime, as fused int8 kernels, and agrees with fp32 on most images.
    images, _ = load_fashion_mnist(settings.fashion_mnist_dir, "test")
    mean, std = manifest.preprocessing.mean[0], manifest.preprocessing.std[0]
    batch = (images[:64].numpy().astype(np.float32) / 255 - mean) / std
    fp32 = ort.InferenceSession(str(report.path.with_name("model.onnx")), providers=["CPUExecutionProvider"])
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    int8 = ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
    agree = fp32.run(None, {"input": batch})[0].argmax(1) == int8.run(None, {"input": batch})[0].argmax(1)
    assert agree.mean() >= 0.9
    events = json.loads(Path(int8.end_profiling()).read_text())
    kernels = collections.Counter(
        event["args"]["op_name"]
        for event in events
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
    )
    assert kernels["QLinearConv"] == 5 and kernels["Conv"] == 0  # cnn's five convolutions, all int8


def test_the_accuracy_gate_refuses_and_adds_nothing(settings: TrainingSettings) -> None:
    version_folder = settings.model_root / "fashion-mnist" / "1"
    manifest_bytes = (version_folder / "manifest.json").read_bytes()
    with pytest.raises(AccuracyDropTooLarge, match=r"points below fp32 .* \(allowed: -100.00\); nothing was added"):
        quantize_version(
            settings.model_root,
            "fashion-mnist",
            fashion_mnist_dir=settings.fashion_mnist_dir,
            calibration_images=16,
            max_accuracy_drop=-1.0,
            progress=False,
        )
    assert (version_folder / "manifest.json").read_bytes() == manifest_bytes
    assert sorted(p.name for p in version_folder.iterdir()) == [
        "explain.onnx",
        "manifest.json",
        "model.onnx",
        "report.json",
        "weights.pt",
    ]


def test_no_calibration_images_is_refused(settings: TrainingSettings) -> None:
    with pytest.raises(InvalidHyperparameter, match="calibration_images must be at least 1"):
        quantize_version(
            settings.model_root, "fashion-mnist", fashion_mnist_dir=settings.fashion_mnist_dir, calibration_images=0
        )
