"""Response bodies of the /v1 API (msgspec structs: they are also the OpenAPI schema)."""

import msgspec

from service.evaluation.report import EvaluationReport
from service.inference.classify import ImageResult


class Timings(msgspec.Struct):
    decode_ms: float  # decode and preprocess, all images of the request
    queue_ms: float  # waiting for a batch
    compute_ms: float  # the onnxruntime call of that batch
    total_ms: float
    batch_size: int  # images in the batch this request ran in


class ClassifiedImage(ImageResult, frozen=True):
    """One image's answer: its top-k labels and its id, for feedback on it (POST /v1/feedback)."""

    prediction_id: str  # pr_<24+ hex>: unique per image classified, whether or not its input is kept


class ClassifyResponse(msgspec.Struct):
    model: str
    version: int
    variant: str
    results: list[ClassifiedImage]  # one per image, in request order
    timings: Timings


class LoadedInfo(msgspec.Struct):
    version: int
    variant: str
    provider: str  # the execution provider actually running, e.g. CPUExecutionProvider
    pinned: bool  # loaded by an admin (stays until unloaded)
    in_flight: int
    queued_images: int


class LineageInfo(msgspec.Struct):
    """Where a version came from (the manifest's lineage, without server paths or the whole config)."""

    dataset: str  # "fashion-mnist", "digits", "folder:/path", "dataset:<id>"
    base_model: str | None = None  # set for fine-tuned versions
    base_version: int | None = None
    job_id: str | None = None  # the fine-tuning job that published it
    dataset_sha256: str | None = None
    imported: str | None = None  # imported versions: the file they came from ("model.onnx")


class VersionInfo(msgspec.Struct):
    version: int
    aliases: list[str]
    architecture: str
    metrics: dict[str, float]
    variants: dict[str, dict[str, float]]  # variant -> its metrics
    created_at: str
    lineage: LineageInfo | None = None
    code_version: str | None = None  # of the code that made it


class ModelSummary(msgspec.Struct):
    name: str
    serving_version: int | None  # what requests without version or alias get
    aliases: dict[str, int]
    loaded: list[LoadedInfo]


class ModelDetail(ModelSummary):
    labels: list[str]
    input_size: tuple[int, int]
    color_mode: str
    versions: list[VersionInfo]
    confidence_threshold: float | None
    rollout: str | None = None  # the running rollout's id (GET /v1/models/{name}/rollout for its figures)


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    alias: str = "production"
    reason: str = ""  # recorded in the model's history (GET /v1/models/{name}/history)


class ImportedVersion(msgspec.Struct):
    """The answer to POST /v1/models/{name}/versions: the version just published from an ONNX file."""

    name: str
    version: int
    aliases: list[str]  # production when it is the model's first version
    checks_passed: list[str]  # in the order they ran (docs/models.md says what each means)
    batch_mode: str  # "dynamic", or "one at a time" (a fixed batch of 1: served image by image)
    input: list[int]  # the model's input shape; -1 or 1 first
    layout: str  # NCHW or NHWC
    scores: str  # logits (softmax applied by the server) or probabilities (served as they are)
    calibration: str  # uncalibrated (temperature 1.0) over HTTP; --calibrate-on is the CLI's
    labels: list[str]
    metrics: dict[str, float]  # empty over HTTP; --evaluate-on is the CLI's
    source: str  # the uploaded file's name
    sha256: str  # of the uploaded file
    fine_tunable: bool  # false: an imported ONNX file has no torch weights


class VersionReport(msgspec.Struct):
    """The answer to GET /v1/models/{name}/versions/{version}/report (docs/evaluation.md reads it)."""

    name: str
    version: int
    attached: bool  # false: published with the version; true: attached later (imgcls evaluate --attach-report)
    report: EvaluationReport


class ImageExplanation(msgspec.Struct, frozen=True):
    """Where in one image the answer for one class came from (docs/explanations.md)."""

    label: str  # the class explained: the image's top-1, or ?class=
    index: int
    probability: float  # of that class, calibrated
    map: list[list[float]]  # rows of the map at its own resolution (cam: the last feature map's; occlusion: 7x7), 0-1
    range: tuple[float, float]  # the raw values 0 and 1 stand for: logit units (cam), probability drops (occlusion)
    peak: tuple[int, int]  # (y, x) in the model's input pixels: the centre of the hottest cell


class ExplainedImage(ImageResult, frozen=True):
    """One image's top-k labels, as classify answers them, and the explanation of one class."""

    explanation: ImageExplanation


class ExplainTimings(msgspec.Struct):
    decode_ms: float
    compute_ms: float  # the explain graph (cam), or the batches of occluded copies (occlusion)
    total_ms: float


class ExplainResponse(msgspec.Struct):
    model: str
    version: int
    method: str  # "cam" or "occlusion"
    model_runs_per_image: int  # the cost: 1 (cam), 50 (occlusion)
    input_size: tuple[int, int]  # (height, width) the maps cover: the preprocessed image
    results: list[ExplainedImage]  # one per image, in request order
    timings: ExplainTimings
