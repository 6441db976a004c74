"""Int8 variants of published versions (``imgcls quantize NAME``): onnxruntime static quantization.

``quantize_version`` takes the version's ``model.onnx`` and, without torch in the loop:

1. feeds ``calibration_images`` training images (the run's own training split, seeded shuffle) through
   the manifest's preprocessing into onnxruntime's calibrator (MinMax ranges per activation);
2. runs ``quant_pre_process`` (ONNX shape inference, graph optimization: a BatchNorm right after a
   Conv is folded into it, so the Conv is quantized with its final weights), then ``quantize_static``
   in QDQ format with per-channel int8 weights and uint8 activations;
3. runs fp32 and int8 with onnxruntime on the test images the fp32 metrics were measured on, and
   refuses the variant (``AccuracyDropTooLarge``) when int8 loses more than ``max_accuracy_drop``;
4. adds it to the version as ``model.int8.onnx`` (``ModelRepository.add_variant``).

Why uint8 activations and int8 weights, full range: on x86-64 onnxruntime fuses
DequantizeLinear → Conv → QuantizeLinear into ``QLinearConv`` and runs it on its u8 x s8 integer GEMM
kernels (MLAS picks AVX-512 VNNI or AMX ones where the CPU has them; the measuring CPU has both).
Measured with ``benchmarks/quantized.py --compare-formats`` (ResNet-18 at 224 px, 2 threads, batch 8):
u8/s8 fused all 20 convolutions and ran 2.9x fp32; s8/s8 fused only 9 of them, left 11 in fp32 between
Dequantize/Quantize pairs and ran 0.87x fp32; u8/u8 fused all 20 but ran 0.83x fp32 (no fast u8 x u8
path). ``reduce_range`` (7-bit weights) avoids a saturation of the pre-VNNI AVX2/AVX-512 u8 x s8
instruction; VNNI does not saturate, and reduce_range ran no faster (2.7x), so full range keeps the
precision. See docs/benchmarks.md ("Quantized int8 variant").
"""

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from tqdm import tqdm

from service.repository import Manifest, ModelRepository, Preprocessing, Variant
from service.repository.store import ONNX_FILE
from training.calibration import calibrated_probabilities, expected_calibration_error
from training.config import build_config
from training.data import load_dataset, normalize
from training.errors import AccuracyDropTooLarge, InvalidHyperparameter, UnusableData
from training.train import split_dataset

VARIANT_NAME = "int8"
VARIANT_FILE = "model.int8.onnx"
DEFAULT_CALIBRATION_IMAGES = 512
DEFAULT_MAX_ACCURACY_DROP = 0.005  # 0.5 percentage points of test accuracy
CALIBRATION_BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64  # images per onnxruntime call when testing; small, for 224 px inputs
ACTIVATION_TYPE = QuantType.QUInt8
WEIGHT_TYPE = QuantType.QInt8


@dataclass(frozen=True)
class QuantizeReport:
    name: str
    version: int
    path: Path  # the variant file inside the version folder
    variant: Variant  # as recorded in the manifest
    fp32_accuracy: float  # onnxruntime; the manifest's figure is torch's and may differ by an image or so
    int8_accuracy: float  # onnxruntime, on the same test images
    test_images: int
    agreement: float  # share of test images on which int8 and fp32 pick the same class

    @property
    def accuracy_drop(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy


@dataclass(frozen=True)
class VersionImages:
    """The images a published version was trained and tested on, as uint8 ``(N, C, H, W)`` tensors."""

    calibration: torch.Tensor  # a seeded sample of the run's training split
    test: tuple[torch.Tensor, torch.Tensor]  # exactly the images (and labels) behind the fp32 metrics


def quantize_version(
    repository_root: Path,
    name: str,
    reference: str | int | None = None,
    *,
    fashion_mnist_dir: Path,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
    progress: bool = True,
) -> QuantizeReport:
    """Quantize NAME at ``reference`` (number, alias, or None: production, else latest) and add the variant.

    ``max_accuracy_drop`` is a fraction (0.005 = 0.5 points), compared with fp32 minus int8 test accuracy,
    both measured here with onnxruntime on the same images. Raises ``AccuracyDropTooLarge`` (and adds
    nothing) when the drop is larger, ``UnusableData`` when the version's dataset cannot be loaded or no
    longer matches the manifest, and the repository's errors for a missing or corrupt version. Adding
    again replaces an earlier int8 variant of the version.
    """
    repository = ModelRepository(repository_root)
    version = repository.resolve(name, reference)
    manifest = repository.verify(name, version)
    if manifest.lineage.imported is not None:
        raise UnusableData(
            f"{name} v{version} was imported and has no dataset of its own: quantize it with --calibrate-on and "
            "--evaluate-on (labelled folders)"
        )
    fp32_path = repository.path(name, version) / ONNX_FILE
    images = version_images(manifest, fashion_mnist_dir=fashion_mnist_dir, calibration_images=calibration_images)
    test_labels = images.test[1]

    with tempfile.TemporaryDirectory(prefix="imgcls-quantize-") as scratch:
        quantized = Path(scratch) / VARIANT_FILE
        quantize_onnx(fp32_path, quantized, images.calibration, manifest, progress=progress)
        fp32_logits = onnx_logits(fp32_path, images.test[0], manifest, desc="test fp32", progress=progress)
        int8_logits = onnx_logits(quantized, images.test[0], manifest, desc="test int8", progress=progress)
        fp32_predicted, int8_predicted = fp32_logits.argmax(dim=1), int8_logits.argmax(dim=1)
        fp32_accuracy = round(float((fp32_predicted == test_labels).float().mean()), 5)
        int8_accuracy = round(float((int8_predicted == test_labels).float().mean()), 5)
        agreement = round(float((fp32_predicted == int8_predicted).float().mean()), 5)
        int8_probabilities = calibrated_probabilities(int8_logits, manifest.temperature)
        return add_int8_variant(
            repository,
            manifest,
            quantized,
            calibration=f"{len(images.calibration)} calibration images",
            tested_on=f"{len(test_labels)} test images",
            fp32_accuracy=fp32_accuracy,
            int8_accuracy=int8_accuracy,
            agreement=agreement,
            ece=round(expected_calibration_error(int8_probabilities, test_labels), 5),
            test_images=len(test_labels),
            calibration_images=len(images.calibration),
            max_accuracy_drop=max_accuracy_drop,
            advice=" Try more --calibration-images, or raise --max-accuracy-drop",
        )


def add_int8_variant(
    repository: ModelRepository,
    manifest: Manifest,
    quantized: Path,
    *,
    calibration: str,
    tested_on: str,
    fp32_accuracy: float,
    int8_accuracy: float,
    agreement: float,
    ece: float,
    test_images: int,
    calibration_images: int,
    max_accuracy_drop: float,
    advice: str = "",
) -> QuantizeReport:
    """The accuracy gate and the manifest entry, for trained and imported versions alike: raises
    ``AccuracyDropTooLarge`` (nothing added) when int8 loses more than ``max_accuracy_drop``, else adds the
    variant. ``calibration`` and ``tested_on`` say in words which images were used."""
    name, version = manifest.name, manifest.version
    drop = round(fp32_accuracy - int8_accuracy, 5)  # rounded: 0.9 - 0.895 must not exceed 0.005
    if drop > max_accuracy_drop:
        raise AccuracyDropTooLarge(
            f"{name} v{version}: int8 test accuracy {int8_accuracy:.4f} is "
            f"{100 * drop:.2f} points below fp32 {fp32_accuracy:.4f} on "
            f"{tested_on} (allowed: {100 * max_accuracy_drop:.2f}); nothing was added.{advice}"
        )
    variant = Variant(
        file=VARIANT_FILE,
        sha256="",  # stamped by add_variant
        precision="int8",
        method=(
            f"onnxruntime {ort.__version__} static QDQ, per-channel int8 weights, uint8 activations "
            f"(MinMax), {calibration}"
        ),
        metrics={
            "test_accuracy": int8_accuracy,
            "fp32_test_accuracy": fp32_accuracy,  # onnxruntime, same images
            "top1_agreement": agreement,
            "ece": ece,
            "test_images": float(test_images),
            "calibration_images": float(calibration_images),
        },
    )
    updated = repository.add_variant(name, version, VARIANT_NAME, variant, quantized)
    return QuantizeReport(
        name=name,
        version=version,
        path=repository.path(name, version) / VARIANT_FILE,
        variant=updated.variants[VARIANT_NAME],
        fp32_accuracy=fp32_accuracy,
        int8_accuracy=int8_accuracy,
        test_images=test_images,
        agreement=agreement,
    )


# ---------------------------------------------------------------------------------------------------------
# Steps (also used by benchmarks/quantized.py to compare formats)
# ---------------------------------------------------------------------------------------------------------


def version_images(manifest: Manifest, *, fashion_mnist_dir: Path, calibration_images: int) -> VersionImages:
    """Reload the version's dataset and cut it as its run did (recorded seed, split and subsets).

    Raises ``UnusableData`` when the dataset now decodes differently from the manifest (geometry,
    labels) or its test split has another size than the one the metrics were measured on.
    """
    if calibration_images < 1:
        raise InvalidHyperparameter(f"calibration_images must be at least 1, got {calibration_images}")
    config = build_config(manifest.lineage.config)
    data = load_dataset(
        manifest.lineage.dataset,
        fashion_mnist_dir=fashion_mnist_dir,
        image_size=manifest.preprocessing.input_size[0],
        seed=config.seed,  # picks the held-out test split of digits and folder datasets
    )
    if _geometry(data.preprocessing) != _geometry(manifest.preprocessing) or data.labels != manifest.labels:
        raise UnusableData(
            f"{data.name} now decodes to {len(data.labels)} classes of {data.preprocessing.input_size} "
            f"{data.preprocessing.color_mode} images; {manifest.name} v{manifest.version} was trained on "
            f"{len(manifest.labels)} classes of {manifest.preprocessing.input_size} "
            f"{manifest.preprocessing.color_mode} images"
        )
    split = split_dataset(data, config)
    recorded = manifest.metrics.get("test_images")
    if recorded is not None and int(recorded) != len(split.test[1]):
        raise UnusableData(
            f"{data.name}: the test split now has {len(split.test[1])} images, {manifest.name} v{manifest.version} "
            f"was tested on {int(recorded)}; the dataset changed since, so fp32 and int8 cannot be compared on "
            "the same images"
        )
    train_images = split.train[0]
    order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(config.seed))
    return VersionImages(calibration=train_images[order[:calibration_images]], test=split.test)


def quantize_onnx(
    source: Path,
    target: Path,
    calibration: torch.Tensor,
    manifest: Manifest,
    *,
    activation_type: QuantType = ACTIVATION_TYPE,
    weight_type: QuantType = WEIGHT_TYPE,
    reduce_range: bool = False,
    progress: bool = True,
) -> None:
    """Static QDQ quantization of ``source`` (fp32) into ``target``, calibrated on uint8 ``calibration`` images.

    Per-channel weights, MinMax calibration. The defaults are this module's choice (see its docstring);
    the others exist to compare formats.
    """
    reader = _CalibrationImages(calibration, manifest, progress=progress)
    quantize_with(
        source,
        target,
        reader,
        activation_type=activation_type,
        weight_type=weight_type,
        reduce_range=reduce_range,
    )


def quantize_with(
    source: Path,
    target: Path,
    reader: CalibrationDataReader,
    *,
    activation_type: QuantType = ACTIVATION_TYPE,
    weight_type: QuantType = WEIGHT_TYPE,
    reduce_range: bool = False,
) -> None:
    """``quantize_onnx`` with any calibration reader (imported versions feed their own layout and batch)."""
    with tempfile.TemporaryDirectory(prefix="imgcls-quantize-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX's own shape inference is enough here (only the batch axis is symbolic); onnxruntime's
        # symbolic pass fails on cnn's global max pool (ReduceMax, then Reshape), and on ResNet-18 it
        # yields the same graph and weights.
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared,
            target,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=activation_type,
            weight_type=weight_type,
            calibrate_method=CalibrationMethod.MinMax,
        )


def onnx_logits(path: Path, images: torch.Tensor, manifest: Manifest, *, desc: str, progress: bool) -> torch.Tensor:
    """float32 (N, classes) from onnxruntime on the CPU, for uint8 ``images`` preprocessed as the manifest says."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = []
    starts = range(0, len(images), EVAL_BATCH_SIZE)
    for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=not progress):
        batch = _normalized(images[start : start + EVAL_BATCH_SIZE], manifest)
        outputs.append(session.run([manifest.output.name], {manifest.input.name: batch})[0])
    return torch.from_numpy(np.concatenate(outputs))


def _geometry(preprocessing: Preprocessing) -> tuple[object, ...]:
    return preprocessing.color_mode, preprocessing.input_size, preprocessing.resize, preprocessing.interpolation


def _normalized(images: torch.Tensor, manifest: Manifest) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 network input, exactly as training's eval (and the service) do it."""
    return normalize(images, preprocessing=manifest.preprocessing).numpy()


class _CalibrationImages(CalibrationDataReader):
    """Feeds the calibrator batches of preprocessed training images, once."""

    def __init__(self, images: torch.Tensor, manifest: Manifest, *, progress: bool) -> None:
        self._batches = self._iterate(images, manifest, progress)

    @staticmethod
    def _iterate(images: torch.Tensor, manifest: Manifest, progress: bool) -> Iterator[dict[str, np.ndarray]]:
        starts = range(0, len(images), CALIBRATION_BATCH_SIZE)
        for start in tqdm(starts, desc="calibrate", unit="batch", leave=False, disable=not progress):
            yield {manifest.input.name: _normalized(images[start : start + CALIBRATION_BATCH_SIZE], manifest)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)
