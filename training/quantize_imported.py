"""Int8 variants of imported versions (``imgcls quantize NAME --calibrate-on FOLDER --evaluate-on FOLDER``).

An imported version has no training dataset to calibrate on and no test split behind its metrics, so both
come from labelled folders (``<label>/<image>``), decoded and preprocessed by the service's own code. The
calibration reader feeds the model what it takes (its layout, one image at a time for a fixed batch of 1);
fp32 and int8 are then compared through the service's ``Predictor``, which serves them, on the evaluation
folder. Quantization itself is training/quantize.py's: static QDQ, per-channel int8 weights, uint8
activations, and the same accuracy gate.
"""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from service.imaging import DecodeLimits
from service.importing.evaluate import evaluation_metrics
from service.importing.folders import LabelledImages, labelled_images, model_outputs, preprocessed_batches
from service.inference.predictor import Predictor
from service.inference.providers import CPU, default_threads
from service.repository import Manifest, ModelRepository
from service.repository.store import ONNX_FILE
from training.errors import UnusableData
from training.quantize import CALIBRATION_BATCH_SIZE, VARIANT_FILE, QuantizeReport, add_int8_variant, quantize_with


def quantize_imported(
    repository: ModelRepository,
    manifest: Manifest,
    *,
    calibrate_on: Path | None,
    evaluate_on: Path | None,
    calibration_images: int,
    max_accuracy_drop: float,
) -> QuantizeReport:
    """Quantize the imported version ``manifest`` describes and add the variant, or raise and add nothing."""
    name, version = manifest.name, manifest.version
    if calibrate_on is None or evaluate_on is None:
        raise UnusableData(
            f"{name} v{version} was imported and has no dataset of its own: give --calibrate-on FOLDER and "
            "--evaluate-on FOLDER (labelled folders, <label>/<image>)"
        )
    calibration = _sample(labelled_images(calibrate_on, manifest.labels), calibration_images)
    test = labelled_images(evaluate_on, manifest.labels)
    fp32_path = repository.path(name, version) / ONNX_FILE
    with tempfile.TemporaryDirectory(prefix="imgcls-quantize-") as scratch:
        quantized = Path(scratch) / VARIANT_FILE
        quantize_with(fp32_path, quantized, _FolderReader(calibration, manifest))
        fp32_outputs = _outputs(fp32_path, manifest, test)
        int8_outputs = _outputs(quantized, manifest, test)
        fp32_predicted, int8_predicted = fp32_outputs.argmax(axis=1), int8_outputs.argmax(axis=1)
        fp32_accuracy = round(float((fp32_predicted == test.targets).mean()), 5)
        int8_accuracy = round(float((int8_predicted == test.targets).mean()), 5)
        int8_metrics = evaluation_metrics(
            int8_outputs, test.targets, manifest.labels, scores=manifest.scores, temperature=manifest.temperature
        )
        return add_int8_variant(
            repository,
            manifest,
            quantized,
            calibration=f"{len(calibration.files)} calibration images from {calibrate_on}",
            tested_on=f"{len(test.targets)} images of {evaluate_on}",
            fp32_accuracy=fp32_accuracy,
            int8_accuracy=int8_accuracy,
            agreement=round(float((fp32_predicted == int8_predicted).mean()), 5),
            ece=int8_metrics["ece"],
            test_images=len(test.targets),
            calibration_images=len(calibration.files),
            max_accuracy_drop=max_accuracy_drop,
        )


def _sample(images: LabelledImages, count: int) -> LabelledImages:
    """At most ``count`` images, drawn with a fixed seed so every class is likely among them."""
    order = np.random.default_rng(0).permutation(len(images.files))[:count]
    return LabelledImages(images.folder, [images.files[i] for i in order], images.targets[order])


def _outputs(path: Path, manifest: Manifest, images: LabelledImages) -> np.ndarray:
    predictor = Predictor.for_manifest(path, manifest, providers=[CPU], intra_op_threads=default_threads(1))
    return model_outputs(predictor, images, manifest.preprocessing, DecodeLimits())


class _FolderReader(CalibrationDataReader):
    """Feeds the calibrator the folder's images once, as the model takes them (layout, batch of 1)."""

    def __init__(self, images: LabelledImages, manifest: Manifest) -> None:
        self._batches = self._iterate(images, manifest)

    @staticmethod
    def _iterate(images: LabelledImages, manifest: Manifest) -> Iterator[dict[str, np.ndarray]]:
        size = 1 if manifest.input.shape[0] == 1 else CALIBRATION_BATCH_SIZE
        for batch in preprocessed_batches(images, manifest.preprocessing, DecodeLimits(), size):
            if manifest.preprocessing.layout == "NHWC":
                batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
            yield {manifest.input.name: batch}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)
