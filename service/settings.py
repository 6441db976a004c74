"""Settings read from the environment, all with the ``IMGCLS_`` prefix. Built explicitly, never at import.

Every field is documented in docs/operations.md; the comment beside each default says what it means.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RepositorySettings(BaseSettings):
    """Where the model repository lives; shared by the API, the CLI and the workers."""

    model_config = SettingsConfigDict(env_prefix="IMGCLS_", extra="ignore")

    model_root: Path = Path("var/models")  # IMGCLS_MODEL_ROOT: the repository (a shared volume in a cluster)
    redis_url: str | None = None  # IMGCLS_REDIS_URL: alias-change notifications, rate limits, jobs
    data_root: Path = Path("var/data")  # IMGCLS_DATA_ROOT: uploaded datasets (a shared volume in a cluster)


class JobSettings(RepositorySettings):
    """Fine-tuning jobs: read by the API (accepting jobs, recovering lost ones) and by the workers alike."""

    job_queue: str = "fine-tuning"  # the Celery queue jobs go to (GPU workers may take their own)
    job_max_seconds: int = Field(default=2 * 3600, ge=60)  # hard time limit of one trial; the task is then killed
    job_heartbeat_s: float = Field(default=5.0, gt=0)  # a running trial's worker says it is alive this often
    job_lost_after_s: float = Field(default=30.0, gt=0)  # no heartbeat this long: the worker is gone; requeue
    job_max_attempts: int = Field(default=3, ge=1)  # deliveries of a trial (lost workers included) before it fails
    job_max_trials: int = Field(default=16, ge=1)  # trials one job's sweep may hold
    job_cancel_grace_s: float = Field(default=60.0, gt=0)  # a cancelled trial still running then is terminated
    job_recovery_interval_s: float = Field(default=5.0, gt=0)  # how often the API looks for lost and stuck jobs

    @model_validator(mode="after")
    def _lost_after_several_heartbeats(self) -> "JobSettings":
        if self.job_lost_after_s < 3 * self.job_heartbeat_s:
            raise ValueError(
                f"IMGCLS_JOB_LOST_AFTER_S ({self.job_lost_after_s}) must be at least three heartbeats "
                f"(3 x IMGCLS_JOB_HEARTBEAT_S = {3 * self.job_heartbeat_s}), or one slow beat reads as a lost worker"
            )
        return self


class ApiKey(BaseModel, frozen=True):
    """One configured key. Only the sha256 of the key is stored; make one with ``imgcls api-key new``."""

    name: str  # who holds it; shown in logs, never the key itself
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: frozenset[Literal["classify", "admin", "train"]]  # train: datasets and fine-tuning jobs


class ServiceSettings(JobSettings):
    """The inference API (``imgcls serve``)."""

    # ---- process
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)  # server processes; each loads its own sessions (one per GPU on GPU hosts)
    cpu_slots_dir: Path | None = None  # set by imgcls serve --workers N: each process pins itself to its own core
    default_model: str | None = None  # readiness waits for this one; None: every model found at start-up

    # ---- runtime
    providers: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when it really works, else CPU
    intra_op_threads: int = Field(default=0, ge=0)  # onnxruntime threads per session; 0: cores / workers
    variant: str = "fp32"  # "fp32" or a variant from the manifest ("int8"); requests may choose another
    warmup: bool = True  # run a few batches through every session before it serves

    # ---- batching
    max_batch_size: int = Field(default=32, ge=1)  # images per onnxruntime call
    max_queue_delay_ms: float = Field(default=0.0, ge=0)  # extra wait to fill a batch once the runtime is free
    max_queue_size: int = Field(default=256, ge=1)  # images waiting per version; beyond it: 503 with Retry-After
    inline_compute_ms: float = Field(default=5.0, ge=0)  # batches expected to take this long run on the event loop
    max_concurrent_requests: int = Field(default=32, ge=1)  # inference requests per process; beyond: 503
    refusal_delay_ms: float = Field(default=100.0, ge=0)  # hold such a 503 this long: paces clients that retry at once

    # ---- requests
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1)  # whole request body
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1)  # one encoded image
    max_image_pixels: int = Field(default=40_000_000, ge=1)  # width x height, checked from the header before decoding
    max_images_per_request: int = Field(default=64, ge=1)
    image_formats: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP"})  # allow-list of decoded formats
    default_top_k: int = Field(default=5, ge=1)
    confidence_thresholds: dict[str, float] = {}  # model name -> below this top-1 probability: low_confidence

    # ---- datasets (POST /v1/datasets); every cap is checked before anything is extracted
    dataset_max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1)  # the zip as sent; counted while streaming
    dataset_max_files: int = Field(default=50_000, ge=1)  # entries in the zip (files and folders)
    dataset_max_uncompressed_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=1)  # sum of declared sizes
    dataset_max_compression_ratio: float = Field(default=100.0, gt=1)  # unpacked / packed, per entry and overall
    dataset_min_images_per_class: int = Field(default=5, ge=2)  # readable images; training needs 2 (train + test)

    # ---- feedback (docs/feedback.md): corrections of predictions, and inputs kept for review
    feedback_root: Path = Path("var/feedback")  # beside the data root (a shared volume in a cluster)
    keep_predictions: bool = False  # keep the input of low-confidence predictions (and a sample of the others)
    keep_predictions_threshold: float = Field(default=0.5, ge=0, le=1)  # top-1 under this: low confidence; a
    # model's IMGCLS_CONFIDENCE_THRESHOLDS entry, when it has one, is used instead
    keep_predictions_sample_rate: float = Field(default=0.01, ge=0, le=1)  # share of the other predictions kept
    keep_predictions_max_bytes: int = Field(default=1024**3, ge=1)  # the whole store; the oldest kept go first
    keep_predictions_retention_s: float = Field(default=30 * 24 * 3600, gt=0)  # kept inputs expire after this

    # ---- model imports (POST /v1/models/{name}/versions)
    import_max_upload_bytes: int = Field(default=1024**3, ge=1)  # the ONNX file as sent; counted while streaming

    # ---- security
    auth_enabled: bool = True  # off only for local use; every deploy configuration turns it on
    api_keys: tuple[ApiKey, ...] = ()  # JSON list of {"name", "sha256", "scopes"}
    rate_limit_per_minute: int = Field(default=0, ge=0)  # requests per key per minute; 0: unlimited

    # ---- repository changes made by other processes
    watch_interval_s: float = Field(default=2.0, gt=0)  # poll aliases and new versions this often

    # ---- rollouts (docs/rollouts.md)
    rollout_max_in_flight: int = Field(default=8, ge=1)  # comparisons running per process; beyond: dropped


class UpSettings(ServiceSettings):
    """``imgcls up``: the API (the settings above), its fine-tuning workers and, without IMGCLS_REDIS_URL, Redis."""

    var_dir: Path = Path("var")  # IMGCLS_VAR_DIR: imgcls up's own files: redis/ (the embedded Redis), logs/


class NoApiKeys(ValueError):
    """Auth is on and no key is configured: the server would refuse every request."""


def check_keys(*, auth_enabled: bool, api_keys: tuple[ApiKey, ...]) -> None:
    """Refuse to serve with auth on and no key; the API (``Authenticator``) and ``imgcls serve`` both ask."""
    if auth_enabled and not api_keys:
        raise NoApiKeys(
            "auth is on but IMGCLS_API_KEYS is empty: create a key with 'imgcls api-key new', "
            "or turn auth off for local use (imgcls serve --no-auth, IMGCLS_AUTH_ENABLED=false)"
        )


def describe_invalid(error: ValidationError) -> str:
    """One line naming every bad ``IMGCLS_`` variable, for a process that cannot start with them."""
    problems = []
    for item in error.errors():
        name = f"IMGCLS_{str(item['loc'][0]).upper()}" if item["loc"] else "settings"
        given = "" if item["type"] == "value_error" else f" (got {item.get('input')!r})"
        problems.append(f"{name}: {item['msg'].removeprefix('Value error, ')}{given}")
    return "invalid settings: " + "; ".join(problems)
