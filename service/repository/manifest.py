"""manifest.json: everything a server needs to run a published version without asking training.

A manifest is decoded with msgspec, so a file with a missing field or a wrong type fails loudly
(``msgspec.ValidationError`` names the path of the bad field).
"""

from typing import Any, Literal

import msgspec

MANIFEST_SCHEMA_VERSION = 1


class Preprocessing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The eval transform, completely. The service applies exactly these steps, in this order:

    1. convert to ``color_mode`` ("L" grayscale, "RGB" colour) with PIL;
    2. if ``resize`` is set, resize so the shorter side is ``resize`` pixels (PIL, ``interpolation``);
    3. center-crop to ``input_size`` (height, width) when the image is larger;
    4. scale pixels to [0, 1] (divide by 255), then ``(x - mean) / std`` per channel;
    5. lay out as ``layout`` (always "NCHW", float32).
    """

    color_mode: Literal["L", "RGB"]
    input_size: tuple[int, int]  # (height, width) fed to the network
    mean: tuple[float, ...]  # one per channel, on the [0, 1] scale
    std: tuple[float, ...]
    resize: int | None = None  # shorter side before the crop; None: the image must already be input_size
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    layout: Literal["NCHW"] = "NCHW"

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "L" else 3

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"preprocessing: color_mode {self.color_mode} needs {self.channels} mean/std values, "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError("preprocessing: every std value must be positive")
        if min(self.input_size) < 1 or (self.resize is not None and self.resize < 1):
            raise ValueError("preprocessing: sizes must be positive")


class TensorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    datatype: Literal["FP32"]
    shape: tuple[int, ...]  # -1 marks the dynamic batch axis


class Lineage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a version came from: enough to reproduce it."""

    dataset: str  # "fashion-mnist", "digits", "folder:/path", "dataset:<id>"
    config: dict[str, Any]  # the resolved training config
    run_dir: str | None = None
    base_model: str | None = None  # set for fine-tuned versions
    base_version: int | None = None
    # Fine-tuned versions only; absent in manifests written before fine-tuning existed, which decode with None.
    dataset_sha256: str | None = None  # of the uploaded dataset archive ("dataset:<id>")
    job_id: str | None = None  # the fine-tuning job that published this version (at most one version per job)
    fine_tune: dict[str, Any] | None = None  # the job's resolved hyperparameters, by the job API's names


class Variant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A derived model file added to a published version, e.g. an int8 quantization of ``model.onnx``.

    It takes the same input and gives the same logits (same labels, preprocessing and temperature) as
    the fp32 model; only the arithmetic differs, so its accuracy is measured and recorded here.
    """

    file: str  # inside the version folder, e.g. "model.int8.onnx"
    sha256: str  # stamped by ModelRepository.add_variant
    precision: Literal["int8"]
    method: str  # how it was made, e.g. "onnxruntime static QDQ, per-channel weights, 512 calibration images"
    metrics: dict[str, float]  # at least test_accuracy, on the same test images as the fp32 metrics

    def __post_init__(self) -> None:
        if "test_accuracy" not in self.metrics:
            raise ValueError(f"variant {self.file}: metrics lack test_accuracy")


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    architecture: str  # a name from training's model registry
    labels: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec  # logits; probabilities are softmax(logits / temperature)
    preprocessing: Preprocessing
    temperature: float  # fitted on the validation split
    metrics: dict[str, float]  # at least test_accuracy, ece (calibrated) and ece_uncalibrated
    lineage: Lineage
    onnx_sha256: str
    weights_sha256: str | None
    created_at: str  # ISO 8601, UTC
    code_version: str
    version: int = 0  # set by ModelRepository.publish
    schema_version: int = MANIFEST_SCHEMA_VERSION
    # name ("int8") -> derived model file; added after publishing by ModelRepository.add_variant.
    # Absent in manifests written before variants existed; they decode with none.
    variants: dict[str, Variant] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"manifest: temperature must be positive, got {self.temperature}")
        if len(self.labels) < 2:
            raise ValueError("manifest: a classifier needs at least two labels")
        missing = {"test_accuracy", "ece", "ece_uncalibrated"} - self.metrics.keys()
        if missing:
            raise ValueError(f"manifest: metrics lack {', '.join(sorted(missing))}")


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    return msgspec.json.decode(data, type=Manifest)
