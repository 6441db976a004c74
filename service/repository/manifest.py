"""manifest.json: everything a server needs to run a published version without asking training.

A manifest is decoded with msgspec, so a file with a missing field or a wrong type fails loudly
(``msgspec.ValidationError`` names the path of the bad field).
"""

from typing import Any, Literal

import msgspec

MANIFEST_SCHEMA_VERSION = 1
CAM_OUTPUT = "cam"  # the explain graph's output of class activation maps, beside "logits"


class Preprocessing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The eval transform, completely. The service applies exactly these steps, in this order:

    1. convert to ``color_mode`` ("L" grayscale, "RGB" colour): ``service.imaging.color.to_color_mode``
       (16-bit grayscale scaled to 8 bits, then PIL's conversion);
    2. if ``resize`` is set, resize so the shorter side is ``resize`` pixels (PIL, ``interpolation``);
    3. center-crop to ``input_size`` (height, width) when the image is larger;
    4. scale pixels to [0, 1] (divide by 255), then ``(x - mean) / std`` per channel;
    5. lay out as ``layout``, float32: "NCHW" (every model imgcls trains) or "NHWC" (channels last, as
       Keras and TensorFlow export; imported models only).

    Before step 1, a photo with transparency is composited on ``background`` when it is set; older
    manifests (``None``) leave it to PIL's conversion, which drops the alpha channel.
    """

    color_mode: Literal["L", "RGB"]
    input_size: tuple[int, int]  # (height, width) fed to the network
    mean: tuple[float, ...]  # one per channel, on the [0, 1] scale
    std: tuple[float, ...]
    resize: int | None = None  # shorter side before the crop; None (older manifests): no scaling, only the crop
    interpolation: Literal["nearest", "box", "bilinear", "bicubic"] = "bilinear"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    background: tuple[int, int, int] | None = None  # RGB 0-255 behind transparent pixels; None: alpha dropped

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
        if self.background is not None and not all(0 <= value <= 255 for value in self.background):
            raise ValueError("preprocessing: background values must be 0-255")


class TensorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    datatype: Literal["FP32"]
    shape: tuple[int, ...]  # -1 marks the dynamic batch axis


class Imported(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A version that imgcls did not train: an ONNX file or torchvision weights brought by a user."""

    kind: Literal["onnx", "torchvision"]
    source: str  # the file name as given (no directories)
    sha256: str  # of that file
    imported_at: str  # ISO 8601, UTC
    command: str  # how: "imgcls models import ..." or "POST /v1/models/{name}/versions"


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
    imported: Imported | None = None  # set for imported versions; absent (None) for trained ones


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


class Explanation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``explain.onnx``, published with a version whose classifier is a global pool and one linear layer.

    Its input is the model's; its outputs are ``logits`` (batch, classes) and ``CAM_OUTPUT`` (batch, classes,
    *map_size*): each class's activation map, ``W[k] . F`` over the last feature map F (training/explain_export.py).
    The service picks a class's map, upsamples it to the input and draws it (service/inference/explain.py).
    """

    file: str  # inside the version folder: "explain.onnx"
    sha256: str  # stamped by ModelRepository.publish
    # "average": exact, the map's mean is the logit less its bias; "max": where the evidence is (docs/explanations.md)
    pooling: Literal["average", "max"]
    map_size: tuple[int, int]  # (height, width) of each map, before upsampling to the input size
    max_abs_diff: float  # onnxruntime against torch, logits and maps, on a sample batch


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    architecture: str  # a name from training's model registry
    labels: tuple[str, ...]
    # shape[0] is -1 for a dynamic batch axis, or 1 for a model that takes one image at a time (some
    # imported models): the service then runs such a model image by image.
    input: TensorSpec
    output: TensorSpec  # (batch, len(labels)): what ``scores`` says
    preprocessing: Preprocessing
    temperature: float  # fitted on the validation split; 1.0 when ``calibration`` is "uncalibrated"
    # Trained versions: at least test_accuracy, ece (calibrated) and ece_uncalibrated. Imported versions
    # carry what was measured on import (--evaluate-on, --calibrate-on), possibly nothing.
    metrics: dict[str, float]
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
    # What the output holds: "logits" (probabilities are softmax(logits / temperature)) or
    # "probabilities" (a softmax already in the graph; served as they are). Older manifests: logits.
    scores: Literal["logits", "probabilities"] = "logits"
    # "temperature": ``temperature`` was fitted on held-out data; "uncalibrated": it is 1.0 (imported
    # models without --calibrate-on, and every model whose output is already probabilities).
    calibration: Literal["temperature", "uncalibrated"] = "temperature"
    # sha256 of report.json, the evaluation report published with the version (service/evaluation); None for
    # versions without one (published before reports existed, imported without --evaluate-on).
    report_sha256: str | None = None
    # The explain graph (class activation maps) published with the version; None for architectures without
    # them, imported ONNX files, and versions published before explanations existed.
    explain: Explanation | None = None

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"manifest: temperature must be positive, got {self.temperature}")
        if len(self.labels) < 2:
            raise ValueError("manifest: a classifier needs at least two labels")
        if len(set(self.labels)) != len(self.labels) or not all(label.strip() for label in self.labels):
            raise ValueError("manifest: labels must be unique and not empty")
        if self.calibration == "uncalibrated" and self.temperature != 1.0:
            raise ValueError("manifest: an uncalibrated model has temperature 1.0")
        if self.scores == "probabilities" and self.calibration != "uncalibrated":
            raise ValueError("manifest: a model that outputs probabilities is served uncalibrated")
        if self.lineage.imported is None:
            missing = {"test_accuracy", "ece", "ece_uncalibrated"} - self.metrics.keys()
            if missing:
                raise ValueError(f"manifest: metrics lack {', '.join(sorted(missing))}")

    @property
    def fine_tunable(self) -> bool:
        """A fine-tuning job needs the torch weights and an architecture from training's registry."""
        return self.weights_sha256 is not None


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    return msgspec.json.decode(data, type=Manifest)
