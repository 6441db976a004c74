"""What every request handler reaches through ``request.app.state.imgcls``: built once by create_app."""

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from service.api.admission import Admission
from service.api.auth import Authenticator
from service.datasets import DatasetStore
from service.imaging import DecodeLimits
from service.inference.classify import Classification
from service.inference.loaded import LoadedVersion
from service.inference.registry import ModelRegistry
from service.jobs.queue import JobQueue
from service.jobs.store import JobStore
from service.metrics import Metrics
from service.repository.notify import announce_change
from service.settings import ServiceSettings


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

    async def notify_repository_change(self, name: str) -> None:
        """Tell the other server processes and replicas at once (they would notice by polling too)."""
        await asyncio.to_thread(announce_change, self.redis_url, name)

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
