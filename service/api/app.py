"""``create_app(settings)``: the one composition root of the API process.

Start-up returns at once: models load and warm in the background, /healthz/live answers immediately and
/healthz/ready turns 200 when the default model serves. Each server process builds its own app, so each
holds its own onnxruntime sessions (one process per GPU on GPU hosts).
"""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.affinity import claim_core
from service.api import health, web
from service.api.auth import Authenticator, RateLimiter
from service.api.errors import problem_response
from service.api.fastpath.admission import Admission
from service.api.fastpath.tally import FLUSH_INTERVAL_S
from service.api.state import AppState, decode_limits, feedback_store, keeper, serving_options
from service.api.v1 import (
    classify,
    datasets,
    explain,
    feedback,
    hyperparameters,
    imports,
    jobs,
    models,
    reports,
    rollouts,
)
from service.api.v2 import infer as v2_infer
from service.api.v2 import routes as v2
from service.datasets import DatasetLimits, DatasetStore
from service.feedback import PredictionIds
from service.inference.explain import Explainers
from service.inference.registry import ModelRegistry
from service.inference.watch import listen_for_changes, poll_repository
from service.jobs.queue import JobQueue
from service.jobs.recovery import keep_recovering
from service.jobs.store import JobStore
from service.metrics import Metrics
from service.repository import ModelRepository
from service.rollouts.control import Rollouts
from service.settings import ServiceSettings
from service.version import code_version

log = logging.getLogger(__name__)


def quiet_garbage_collector() -> None:
    """Fewer, shorter garbage collections: their pauses showed as the p99 of small-model requests.

    Each request allocates thousands of short-lived objects, so the default gen-0 threshold (700) runs a
    collection every request or two, and older generations, which hold the whole loaded app, get scanned
    often. Freezing what start-up built takes it out of every future scan; a higher gen-0 threshold
    collects young garbage less often. Memory stays flat: the young objects die anyway.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def create_app(settings: ServiceSettings) -> Litestar:
    """The API, built from ``settings`` alone (``imgcls serve`` builds and validates them once per server)."""
    # connects on first use; a connection Redis closed (it restarted) is replaced and the command sent again
    redis = Redis.from_url(settings.redis_url, retry_on_error=[RedisConnectionError]) if settings.redis_url else None
    limiter = RateLimiter(settings.rate_limit_per_minute, redis)
    auth = Authenticator(enabled=settings.auth_enabled, keys=settings.api_keys, limiter=limiter)
    metrics = Metrics()
    registry = ModelRegistry(
        ModelRepository(settings.model_root),
        serving_options(settings),
        on_batch=metrics.observe_batch,
        on_load=metrics.observe_load,
    )
    limits = decode_limits(settings)
    dataset_limits = DatasetLimits(
        max_upload_bytes=settings.dataset_max_upload_bytes,
        max_files=settings.dataset_max_files,
        max_uncompressed_bytes=settings.dataset_max_uncompressed_bytes,
        max_compression_ratio=settings.dataset_max_compression_ratio,
        min_images_per_class=settings.dataset_min_images_per_class,
        decode=limits,
    )
    feedback_items = feedback_store(settings)
    state = AppState(
        settings=settings,
        registry=registry,
        metrics=metrics,
        auth=auth,
        limits=limits,
        admission=Admission(settings.max_concurrent_requests, settings.refusal_delay_ms / 1000),
        redis_url=settings.redis_url,
        datasets=DatasetStore(settings.data_root, dataset_limits),
        redis=redis,
        jobs=JobStore(settings.redis_url) if settings.redis_url else None,
        queue=(
            JobQueue(settings.redis_url, queue=settings.job_queue, max_seconds=settings.job_max_seconds)
            if settings.redis_url
            else None
        ),
        feedback=feedback_items,
        keeper=keeper(settings, feedback_items, limits),
        prediction_ids=PredictionIds(),
        explainers=Explainers(registry.repository, providers=registry.providers, intra_op_threads=registry.threads),
        rollouts=Rollouts(
            registry,
            feedback_items,
            metrics,
            limits,
            redis_url=settings.redis_url,
            max_in_flight=settings.rollout_max_in_flight,
        ),
    )

    async def follow_repository() -> None:
        """Aliases and new versions, then rollouts: what another process changed."""
        await registry.refresh()
        await state.rollouts.refresh()

    async def start() -> None:
        if settings.cpu_slots_dir is not None:
            claim_core(settings.cpu_slots_dir)
        await registry.start()
        await state.rollouts.refresh()  # a rollout running before a restart goes on
        quiet_garbage_collector()

    async def sweep_feedback() -> None:
        """Expired kept predictions go at start-up too, even when no process keeps new ones."""
        await asyncio.to_thread(feedback_items.sweep)

    async def flush_metrics_every_second() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            state.flush_metrics()

    async def ask_rollout_gates_every_second() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await state.rollouts.tick()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(start(), name="load-models")]
        tasks.append(asyncio.create_task(sweep_feedback(), name="sweep-feedback"))
        tasks.append(asyncio.create_task(flush_metrics_every_second(), name="flush-metrics"))
        tasks.append(asyncio.create_task(ask_rollout_gates_every_second(), name="rollout-gates"))
        tasks.append(asyncio.create_task(poll_repository(follow_repository, settings.watch_interval_s), name="poll"))
        if redis is not None:
            tasks.append(asyncio.create_task(listen_for_changes(follow_repository, redis), name="listen"))
        if state.jobs is not None and state.queue is not None:
            tasks.append(
                asyncio.create_task(
                    keep_recovering(
                        state.jobs,
                        state.queue,
                        interval_s=settings.job_recovery_interval_s,
                        max_attempts=settings.job_max_attempts,
                        cancel_grace_s=settings.job_cancel_grace_s,
                        observe=metrics.observe_jobs,
                    ),
                    name="recover-jobs",
                )
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.rollouts.stop()
            await registry.stop()
            if state.keeper is not None:
                await asyncio.to_thread(state.keeper.close)
            state.flush_metrics()
            if redis is not None:
                await redis.aclose()
            if state.jobs is not None:
                state.jobs.close()

    return Litestar(
        route_handlers=[
            classify.classify_images,
            explain.explain_images,
            models.list_models,
            models.model_detail,
            models.load_version,
            models.unload_version,
            models.promote_version,
            *rollouts.ROUTES,
            reports.version_report,
            imports.import_version,
            datasets.upload_dataset,
            datasets.list_datasets,
            datasets.dataset_detail,
            datasets.delete_dataset,
            *feedback.ROUTES,
            hyperparameters.job_hyperparameters,
            jobs.submit_job,
            jobs.list_jobs,
            jobs.job_detail,
            jobs.cancel_job,
            jobs.job_events,
            jobs.job_metrics,
            jobs.job_checkpoints,
            health.live,
            health.ready,
            health.metrics,
            v2.live,
            v2.ready,
            v2.server_metadata,
            v2.model_metadata,
            v2.model_ready,
            v2.model_config,
            v2.repository_index,
            v2.load_model,
            v2.unload_model,
            v2_infer.infer,
            *web.routes(),
        ],
        lifespan=[lifespan],
        state=State({"imgcls": state}),
        exception_handlers={Exception: problem_response},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="imgcls", version=code_version(), path="/schema", render_plugins=[SwaggerRenderPlugin()]
        ),
        debug=False,
    )
