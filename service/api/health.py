"""Liveness, readiness and the Prometheus scrape endpoint (no API key: probes and scrapers need none)."""

import asyncio

from litestar import MediaType, Request, Response, get
from litestar.openapi import ResponseSpec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.api.state import AppState
from service.jobs.errors import JobStoreUnavailable
from service.jobs.store import JobStore


@get("/healthz/live", tags=["health"])
async def live() -> dict[str, str]:
    """The process answers. Restart it when this fails."""
    return {"status": "live"}


@get(
    "/healthz/ready",
    tags=["health"],
    responses={
        503: ResponseSpec(
            dict[str, object], description="not ready yet: the reason and each model's state", generate_examples=False
        )
    },
)
async def ready(request: Request) -> Response[dict[str, object]]:
    """200 once the default model is loaded and warm; 503 (with the reason) until then. With Redis: whether it
    answers (``redis``) and how many fine-tuning workers run (``job_workers``; 0: jobs wait in the queue)."""
    state: AppState = request.app.state.imgcls
    is_ready, reason = state.registry.ready()
    models = {
        status.name: {
            "serving_version": status.serving_version,
            "providers": sorted({v.predictor.provider for v in status.loaded}),
        }
        for status in state.registry.status()
    }
    body: dict[str, object] = {"status": "ready" if is_ready else "not ready", "reason": reason, "models": models}
    if state.redis is not None:  # jobs need it, classification does not: shown here, readiness unchanged
        body["redis"] = await redis_status(state.redis)
        if body["redis"] == "ok" and state.jobs is not None:
            body["job_workers"] = await job_workers(state.jobs)
    return Response(body, status_code=200 if is_ready else 503, media_type=MediaType.JSON)


async def redis_status(redis: Redis) -> str:
    try:
        await asyncio.wait_for(redis.ping(), timeout=1.0)
    except (RedisError, TimeoutError, OSError) as exc:
        return f"unreachable: {exc or 'no answer within 1 s'} (fine-tuning jobs answer 503 until it is back)"
    return "ok"


async def job_workers(jobs: JobStore) -> int | str:
    try:
        return len(await asyncio.to_thread(jobs.live_workers))
    except JobStoreUnavailable as exc:
        return f"unknown: {exc}"


@get("/metrics", tags=["health"], media_type="text/plain; version=0.0.4; charset=utf-8")
async def metrics(request: Request) -> bytes:
    state: AppState = request.app.state.imgcls
    state.flush_metrics()
    return state.metrics.exposition()
