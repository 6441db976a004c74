"""Importing the ONNX files users bring: what the published version says about itself, and the temperature
and metrics measured on labelled folders."""

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from service.imaging import DecodeLimits
from service.importing.calibrate import expected_calibration_error, fit_temperature, softmax
from service.importing.folders import labelled_images
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.inference.classify import prepare
from service.repository import ModelRepository, ReportNotFound
from service.repository.store import sha256_file
from tests.service.importing.onnx_models import LABELS, OnnxFiles


def photo(seed: int, size: tuple[int, int], image_format: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()


def labelled_folder(folder: Path, per_label: int = 4) -> Path:
    """<folder>/<label>/<n>.png|jpg: random photos of several sizes (their labels are arbitrary)."""
    sizes = [(40, 30), (64, 64), (100, 75), (33, 90)]
    for index, label in enumerate(LABELS):
        (folder / label).mkdir(parents=True)
        for n in range(per_label):
            image_format = "PNG" if n % 2 else "JPEG"
            data = photo(10 * index + n, sizes[n % len(sizes)], image_format)
            (folder / label / f"{n}.{image_format.lower()}").write_bytes(data)
    return folder


def direct_outputs(onnx_path: Path, folder: Path, manifest_preprocessing: object, layout: str) -> np.ndarray:
    """onnxruntime run directly, image by image, on the service's own preprocessed tensors."""
    images = labelled_images(folder, LABELS)
    batch = prepare([p.read_bytes() for p in images.files], manifest_preprocessing, DecodeLimits())  # type: ignore[arg-type]
    if layout == "NHWC":
        batch = batch.transpose(0, 2, 3, 1)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: np.ascontiguousarray(batch[i : i + 1])})[0] for i in range(len(batch))]
    )


def test_a_torchvision_model_is_published_with_its_lineage_and_becomes_production(
    tmp_path: Path, onnx_files: OnnxFiles
) -> None:
    repository = ModelRepository(tmp_path / "models")
    report = import_onnx(
        repository,
        onnx_files.torchvision,
        name="pets",
        labels=list(LABELS),
        options=ImportOptions(),
        source=str(onnx_files.torchvision),
        command="imgcls models import mobilenet.onnx --name pets --labels labels.txt",
    )
    manifest = report.manifest
    assert (manifest.version, report.batch_mode) == (1, "dynamic")
    assert repository.aliases("pets") == {"production": 1}
    assert manifest.input.shape == (-1, 3, 64, 64) and manifest.output.shape == (-1, 3)
    assert (manifest.input.name, manifest.output.name) == ("pixels", "scores")
    assert (manifest.scores, manifest.calibration, manifest.temperature) == ("logits", "uncalibrated", 1.0)
    p = manifest.preprocessing
    assert (p.color_mode, p.input_size, p.resize, p.layout) == ("RGB", (64, 64), 73, "NCHW")
    assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)
    imported = manifest.lineage.imported
    assert imported is not None and imported.kind == "onnx" and imported.source == "mobilenet.onnx"
    assert imported.sha256 == sha256_file(onnx_files.torchvision) == manifest.onnx_sha256
    assert imported.command.startswith("imgcls models import")
    assert manifest.metrics == {} and not manifest.fine_tunable and manifest.weights_sha256 is None
    assert repository.verify("pets", 1) == manifest
    second = import_onnx(
        repository, onnx_files.torchvision, name="pets", labels=LABELS, options=ImportOptions(), source="m", command="t"
    )
    assert second.manifest.version == 2 and repository.aliases("pets") == {"production": 1}


def test_an_nhwc_model_with_a_softmax_is_read_as_such(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    report = import_onnx(
        ModelRepository(tmp_path),
        onnx_files.nhwc_softmax,
        name="k",
        labels=LABELS,
        options=ImportOptions(),
        source="k",
        command="t",
    )
    manifest = report.manifest
    assert manifest.preprocessing.layout == "NHWC" and manifest.input.shape == (-1, 32, 32, 3)
    assert (manifest.scores, manifest.calibration) == ("probabilities", "uncalibrated")


def test_a_fixed_batch_of_one_is_served_one_image_at_a_time(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    report = import_onnx(
        ModelRepository(tmp_path),
        onnx_files.fixed_batch,
        name="f",
        labels=LABELS,
        options=ImportOptions(),
        source="f",
        command="t",
    )
    assert report.batch_mode == "one at a time" and report.manifest.input.shape == (1, 3, 32, 32)
    assert report.manifest.report_sha256 is None  # nothing to measure an evaluation report on
    with pytest.raises(ReportNotFound, match="f v1 has no evaluation report"):
        ModelRepository(tmp_path).report("f", 1)


def test_calibrate_and_evaluate_on_labelled_folders(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    calibration = labelled_folder(tmp_path / "calibration")
    evaluation = labelled_folder(tmp_path / "evaluation", per_label=3)
    report = import_onnx(
        ModelRepository(tmp_path / "models"),
        onnx_files.fixed_batch,
        name="f",
        labels=LABELS,
        options=ImportOptions(),
        source="f",
        command="t",
        calibrate_on=calibration,
        evaluate_on=evaluation,
    )
    manifest = report.manifest
    targets = labelled_images(calibration, LABELS).targets
    logits = direct_outputs(onnx_files.fixed_batch, calibration, manifest.preprocessing, "NCHW")
    temperature = fit_temperature(logits, targets)
    assert manifest.calibration == "temperature" and manifest.temperature == pytest.approx(temperature, rel=1e-6)
    assert manifest.metrics["calibration_images"] == 12
    assert manifest.metrics["calibration_ece_before"] == round(expected_calibration_error(softmax(logits), targets), 5)
    assert manifest.metrics["calibration_ece_after"] <= manifest.metrics["calibration_ece_before"]

    test_targets = labelled_images(evaluation, LABELS).targets
    test_logits = direct_outputs(onnx_files.fixed_batch, evaluation, manifest.preprocessing, "NCHW")
    predicted = test_logits.argmax(axis=1)
    assert manifest.metrics["test_images"] == 9
    assert manifest.metrics["test_accuracy"] == round(float((predicted == test_targets).mean()), 5)
    probabilities = softmax(test_logits, temperature)
    assert manifest.metrics["ece"] == pytest.approx(expected_calibration_error(probabilities, test_targets), abs=1e-5)
    for index, label in enumerate(LABELS):
        mine = test_targets == index
        assert manifest.metrics[f"accuracy/{label}"] == round(float((predicted[mine] == index).mean()), 5)
    assert manifest.lineage.dataset == f"folder:{evaluation.resolve()}"
    # the evaluation report of the same images is published with the version (and its hash checked)
    repository = ModelRepository(tmp_path / "models")
    repository.verify("f", 1)
    stored, attached = repository.report("f", 1)
    assert not attached and manifest.report_sha256 is not None
    assert (stored.dataset, stored.images, stored.accuracy) == (
        manifest.lineage.dataset,
        9,
        manifest.metrics["test_accuracy"],
    )
    assert stored.ece == manifest.metrics["ece"]
    assert stored.confusion_matrix == tuple(
        tuple(int(((test_targets == t) & (predicted == p)).sum()) for p in range(3)) for t in range(3)
    )


def test_a_folder_with_a_class_that_is_not_a_label_is_refused(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    folder = labelled_folder(tmp_path / "photos", per_label=1)
    (folder / "hamster").mkdir()
    with pytest.raises(ValueError, match="'hamster' is not one of the labels"):
        import_onnx(
            ModelRepository(tmp_path / "models"),
            onnx_files.fixed_batch,
            name="f",
            labels=LABELS,
            options=ImportOptions(),
            source="f",
            command="t",
            evaluate_on=folder,
        )
    assert not (tmp_path / "models").exists() or ModelRepository(tmp_path / "models").models() == []
