"""What every request handler reaches through ``request.app.state.imgcls``: built once by create_app, with
the typed options the domain objects take, made from the settings here at the edge."""

from dataclasses import dataclass

from redis.asyncio import Redis

from service.api.auth import Authenticator
from service.api.fastpath.admission import Admission
from service.datasets import DatasetStore
from service.feedback import FeedbackStore, Keeper, KeepPolicy, PredictionIds
from service.imaging import DecodeLimits
from service.inference.classify import Classification
from service.inference.explain import Explainers
from service.inference.registry import LoadedVersion, ModelRegistry, ServingOptions
from service.jobs.queue import JobQueue
from service.jobs.store import JobStore
from service.metrics import Metrics
from service.rollouts.control import Rollouts
from service.settings import ServiceSettings


def serving_options(settings: ServiceSettings) -> ServingOptions:
    """How the registry loads and batches versions, from the settings of the same names."""
    return ServingOptions(
        max_batch_size=settings.max_batch_size,
        max_queue_size=settings.max_queue_size,
        max_queue_delay_ms=settings.max_queue_delay_ms,
        inline_compute_ms=settings.inline_compute_ms,
        warmup=settings.warmup,
        variant=settings.variant,
        providers=settings.providers,
        intra_op_threads=settings.intra_op_threads,
        workers=settings.workers,
        default_model=settings.default_model,
    )


def decode_limits(settings: ServiceSettings) -> DecodeLimits:
    """What an uploaded image may be: IMGCLS_IMAGE_FORMATS, IMGCLS_MAX_IMAGE_BYTES, IMGCLS_MAX_IMAGE_PIXELS."""
    return DecodeLimits(
        formats=frozenset(settings.image_formats),
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
    )


def feedback_store(settings: ServiceSettings) -> FeedbackStore:
    return FeedbackStore(
        settings.feedback_root,
        max_bytes=settings.keep_predictions_max_bytes,
        retention_s=settings.keep_predictions_retention_s,
    )


def keeper(settings: ServiceSettings, store: FeedbackStore, limits: DecodeLimits) -> Keeper | None:
    """The Keeper of IMGCLS_KEEP_PREDICTIONS, or None when it is off (the default)."""
    if not settings.keep_predictions:
        return None
    policy = KeepPolicy(
        threshold=settings.keep_predictions_threshold,
        thresholds=dict(settings.confidence_thresholds),
        sample_rate=settings.keep_predictions_sample_rate,
    )
    return Keeper(store, policy, limits)


@dataclass
class AppState:
    settings: ServiceSettings
    registry: ModelRegistry
    metrics: Metrics
    auth: Authenticator
    limits: DecodeLimits
    admission: Admission
    redis_url: str | None
    datasets: DatasetStore
    redis: Redis | None  # rate limits, repository notifications, job event streams
    jobs: JobStore | None  # None without Redis: the job routes answer 503
    queue: JobQueue | None
    feedback: FeedbackStore
    keeper: Keeper | None  # None: IMGCLS_KEEP_PREDICTIONS is off
    prediction_ids: PredictionIds
    explainers: Explainers  # explain graphs, opened on the first explanation asked of a version
    rollouts: Rollouts  # shadow and canary rollouts; rollouts.running is empty when none runs

    def observe_classification(
        self, loaded: LoadedVersion, answer: Classification, total_s: float, *, endpoint: str
    ) -> None:
        m = self.metrics
        tally = m.tally
        name, version = loaded.name, str(loaded.version)
        tally.observe(m.child(m.request_seconds, endpoint, name), total_s)
        tally.observe(m.child(m.queue_seconds, name), answer.queue_s)
        tally.observe(m.decode_seconds, answer.decode_s / len(answer.results))
        confidence = m.child(m.confidence, name, version)
        for result in answer.results:
            best = result.top[0]
            tally.count(m.child(m.predictions, name, version, best.label))
            tally.observe(confidence, best.probability)

    def flush_metrics(self) -> None:
        self.metrics.flush(in_flight=self.admission.in_flight)
