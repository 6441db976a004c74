"""Prometheus metrics of one server process, exposed at /metrics. Labels stay low-cardinality: model,
version, variant, endpoint, reason and (for predictions) the class label from the manifest.

With several server processes, ``imgcls serve`` sets PROMETHEUS_MULTIPROC_DIR before the workers start and
/metrics aggregates every process's values (prometheus_client's multiprocess mode).
"""

import os
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from service.api.fastpath.tally import Tally

if TYPE_CHECKING:
    from service.inference.registry import LoadedVersion

LATENCY_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075),  # fine where the p99 of small models lies
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series would double the exposition for no use here
        self.registry = CollectorRegistry()
        self.tally = Tally()  # per-request and per-batch observations, written in bulk (service/api/fastpath/tally.py)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.request_seconds = Histogram(
            "imgcls_request_duration_seconds",
            "Whole request, received to answered.",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "imgcls_queue_duration_seconds",
            "Waiting for a batch to start.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_seconds = Histogram(
            "imgcls_compute_duration_seconds",
            "One onnxruntime call (a whole batch).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decode_seconds = Histogram(
            "imgcls_decode_duration_seconds",
            "Decoding and preprocessing one image.",
            [],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "imgcls_batch_size", "Images per onnxruntime call.", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.rejects = Counter("imgcls_rejects", "Requests refused, by reason.", ["reason"], registry=r)
        self.in_flight = Gauge(
            "imgcls_in_flight_requests",
            "Inference requests being handled (sampled every second).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "imgcls_model_info",
            "1 for each loaded version.",
            ["model", "version", "variant", "provider"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.predictions = Counter(
            "imgcls_predictions",
            "Top-1 predictions, by class (watch for drift).",
            ["model", "version", "label"],
            registry=r,
        )
        self.confidence = Histogram(
            "imgcls_confidence",
            "Top-1 calibrated probability (watch for drift).",
            ["model", "version"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )

        self.jobs_submitted = Counter("imgcls_jobs_submitted", "Fine-tuning jobs accepted by this API.", registry=r)
        self.jobs = Gauge(
            "imgcls_jobs",
            "Fine-tuning jobs not finished yet, by status (from Redis, every recovery pass).",
            ["status"],
            registry=r,
            multiprocess_mode="livemax",
        )

        self.jobs_finished = Gauge(  # a count kept in Redis, read every recovery pass: one value for every replica
            "imgcls_jobs_finished_total",
            "Fine-tuning jobs that ended, by status (counted in Redis).",
            ["status"],
            registry=r,
            multiprocess_mode="livemax",
        )

        # rollouts (service/rollouts): role is "serving" or "candidate"
        self.rollout_images = Counter(
            "imgcls_rollout_images", "Images a rollout ran on both versions, by role.", ["model", "role"], registry=r
        )
        self.rollout_agreed = Counter(
            "imgcls_rollout_agreed_images", "Images of a rollout whose two top-1 labels agreed.", ["model"], registry=r
        )
        self.rollout_latency = Histogram(
            "imgcls_rollout_latency_seconds",
            "Time in each version's batcher (queue + compute) per compared request, by role.",
            ["model", "role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rollout_confidence = Histogram(
            "imgcls_rollout_confidence",
            "Top-1 calibrated probability of each version on the compared images, by role.",
            ["model", "role"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.rollout_failures = Counter(
            "imgcls_rollout_failures",
            "Errors of a version during a rollout, by role (never shown to the user).",
            ["model", "role"],
            registry=r,
        )
        self.rollout_dropped = Counter(
            "imgcls_rollout_dropped", "Comparisons skipped under load (shadow work goes first).", ["model"], registry=r
        )

    def observe_jobs(self, active: dict[str, int], finished: dict[str, int]) -> None:
        for status in ("validating", "queued", "running", "cancelling"):
            self.jobs.labels(status).set(active.get(status, 0))
        for status in ("succeeded", "failed", "cancelled"):
            self.jobs_finished.labels(status).set(finished.get(status, 0))

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: the hot path observes several series per request."""
        key = (id(metric), labels)
        series = self._children.get(key)
        if series is None:
            series = self._children[key] = metric.labels(*labels)
        return series

    def observe_batch(self, loaded: "LoadedVersion", size: int, seconds: float) -> None:
        self.tally.observe(self.child(self.compute_seconds, loaded.name), seconds)
        self.tally.observe(self.child(self.batch_size, loaded.name), size)

    def flush(self, in_flight: int) -> None:
        """Write the tally, and the number of inference requests in flight in this process now."""
        self.tally.flush()
        self.in_flight.set(in_flight)

    def observe_load(self, loaded: "LoadedVersion", present: bool) -> None:
        labels = (loaded.name, str(loaded.version), loaded.variant, loaded.predictor.provider)
        if present:
            self.model_info.labels(*labels).set(1)
        else:
            self.model_info.remove(*labels)

    def exposition(self) -> bytes:
        """The Prometheus text of every process; /metrics flushes this one's tally first (AppState.flush_metrics)."""
        if multiprocess_enabled():
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
