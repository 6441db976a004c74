"""/v1/fine-tuning/jobs: submit, list, read and cancel fine-tuning jobs; their events (JSON pages or a live
server-sent-events stream), per-epoch metrics and checkpoints. Every route needs the ``train`` scope.

The job store is Redis: when it does not answer, these routes answer 503 and classification carries on.
"""

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from redis.asyncio import Redis

from service.api.auth import authorized
from service.api.errors import BadRequest, problems
from service.api.openapi import EventStreamOperation
from service.api.state import AppState
from service.jobs import commands
from service.jobs.commands import JobRequest
from service.jobs.errors import JobStoreUnavailable
from service.jobs.record import FINISHED, EventPage, Job, JobPage, JobStatus
from service.jobs.store import JobStore, current_status, wait_for_events
from service.repository import ModelRepository
from service.repository.run_folder import TrialFolder

BLOCK_MS = 2_000  # one wait for new events; under redis-py's 5 s socket timeout
KEEPALIVE_S = 15.0
EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # a Redis stream id
CursorQuery = Annotated[str | None, Parameter(description="next_cursor of the previous page")]
LimitQuery = Annotated[int, Parameter(ge=1, le=100, description="jobs per page")]
MetadataQuery = Annotated[
    list[str] | None, Parameter(description="key:value; repeat it to require several (all must match)")
]
AfterQuery = Annotated[str | None, Parameter(description="an event id: only later events")]


class EpochRows(msgspec.Struct, frozen=True):
    data: list[dict[str, Any]]  # one row per trial and epoch: trial, epoch, train_loss, val_accuracy, ...


class TrialCheckpoint(msgspec.Struct, frozen=True):
    """Where a trial's training stands on the worker: its latest checkpoint (``training.checkpoint`` holds
    the checkpoint itself)."""

    trial: int
    epoch: int  # the last epoch saved: a redelivered trial resumes from it
    step: int
    metrics: dict[str, Any]
    path: str  # on the worker, under IMGCLS_RUNS_DIR


async def job_store(request: Request) -> tuple[AppState, JobStore]:
    state = await authorized(request, "train")
    if state.jobs is None:
        raise JobStoreUnavailable("fine-tuning jobs need Redis: set IMGCLS_REDIS_URL (see docs/operations.md)")
    return state, state.jobs


@post("/v1/fine-tuning/jobs", status_code=201, tags=["fine-tuning"], responses=problems(404, 413, 422, 503))
async def submit_job(request: Request, data: JSONBody[JobRequest]) -> Job:
    """Check a job (base model, dataset, hyperparameters) and queue it; 4xx with the reason when it cannot run."""
    state, store = await job_store(request)
    if state.queue is None:
        raise JobStoreUnavailable("fine-tuning jobs need Redis: set IMGCLS_REDIS_URL")
    settings = state.settings
    job = await asyncio.to_thread(
        commands.submit,
        data,
        repository=ModelRepository(settings.model_root),
        datasets=state.datasets,
        store=store,
        queue=state.queue,
        max_trials=settings.job_max_trials,
    )
    state.metrics.jobs_submitted.inc()
    return job


@get("/v1/fine-tuning/jobs", tags=["fine-tuning"], responses=problems(503))
async def list_jobs(
    request: Request,
    cursor: CursorQuery = None,
    limit: LimitQuery = 20,
    status: Annotated[JobStatus | None, Parameter(description="only jobs in this status")] = None,
    metadata: MetadataQuery = None,
) -> JobPage:
    """Jobs, newest first, a page at a time."""
    _, store = await job_store(request)
    wanted: dict[str, str] = {}
    for pair in metadata or []:
        key, sep, value = pair.partition(":")
        if not sep:
            raise BadRequest(f"metadata filter {pair[:100]!r} is not key:value")
        wanted[key] = value
    return await asyncio.to_thread(store.page, cursor=cursor, limit=limit, status=status, metadata=wanted)


@get("/v1/fine-tuning/jobs/{job_id:str}", tags=["fine-tuning"], responses=problems(404, 503))
async def job_detail(request: Request, job_id: FromPath[str]) -> Job:
    _, store = await job_store(request)
    return await asyncio.to_thread(store.get, job_id)


@post(
    "/v1/fine-tuning/jobs/{job_id:str}/cancel",
    status_code=200,
    tags=["fine-tuning"],
    responses=problems(404, 409, 503),
)
async def cancel_job(request: Request, job_id: FromPath[str]) -> Job:
    """Cancel a job: ``cancelled`` at once when nothing runs yet, else ``cancelling`` until the worker stops
    (within a second or two). 409 for a job that already finished."""
    _, store = await job_store(request)
    return await asyncio.to_thread(commands.cancel, store, job_id)


@get(
    "/v1/fine-tuning/jobs/{job_id:str}/events",
    tags=["fine-tuning"],
    # the return annotation's ServerSentEvent would make the page's schema "EventPage or anything"
    responses={
        200: ResponseSpec(EventPage, description="a page of events", generate_examples=False),
        **problems(404, 503),
    },
    operation_class=EventStreamOperation,
)
async def job_events(
    request: Request, job_id: FromPath[str], after: AfterQuery = None, limit: LimitQuery = 100
) -> EventPage | ServerSentEvent:
    """The job's log, oldest first: a JSON page, or with ``Accept: text/event-stream`` a live stream that
    ends after the job finishes (resume it with ``Last-Event-ID`` or ``?after=``)."""
    state, store = await job_store(request)
    start = request.headers.get("last-event-id") or after
    if start is not None and not EVENT_ID.fullmatch(start):
        raise BadRequest(f"{start[:40]!r} is not an event id (they look like 1795842260905-0); pass an id from the log")
    if "text/event-stream" not in request.headers.get("accept", ""):
        return await asyncio.to_thread(store.events, job_id, after=start, limit=limit)
    job = await asyncio.to_thread(store.get, job_id)
    assert state.redis is not None, "a job store implies Redis"
    # Content-Type given explicitly: Litestar would let the handler's JSON media type win over the stream's
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    return ServerSentEvent(stream_events(state.redis, job, start), headers=headers)


async def stream_events(redis: Redis, job: Job, after: str | None) -> AsyncIterator[ServerSentEventMessage]:
    """Events as they are added; a comment every KEEPALIVE_S keeps proxies from closing an idle stream."""
    last = after or "0-0"
    finished, quiet_since = job.finished, time.monotonic()
    try:
        while True:
            events = await wait_for_events(
                redis, job.id, after=last, count=100, block_ms=None if finished else BLOCK_MS
            )
            if not events:
                if finished:
                    return
                finished = await current_status(redis, job.id) in FINISHED
                if time.monotonic() - quiet_since > KEEPALIVE_S:
                    quiet_since = time.monotonic()
                    yield ServerSentEventMessage(data=None, comment="waiting")
                continue
            quiet_since = time.monotonic()
            for event in events:
                last = event.id
                yield ServerSentEventMessage(data=json.dumps(msgspec.to_builtins(event)), event=event.type, id=event.id)
                if event.type == "status" and event.data.get("status") in FINISHED:
                    finished = True
    except JobStoreUnavailable as exc:  # the client reconnects with Last-Event-ID once Redis is back
        yield ServerSentEventMessage(data=json.dumps({"message": str(exc)}), event="unavailable")


@get("/v1/fine-tuning/jobs/{job_id:str}/metrics", tags=["fine-tuning"], responses=problems(404, 503))
async def job_metrics(request: Request, job_id: FromPath[str]) -> EpochRows:
    """Every trial's per-epoch metrics: losses, accuracies, learning rate, images per second."""
    _, store = await job_store(request)
    return EpochRows(await asyncio.to_thread(store.epochs, job_id))


@get("/v1/fine-tuning/jobs/{job_id:str}/checkpoints", tags=["fine-tuning"], responses=problems(404, 503))
async def job_checkpoints(request: Request, job_id: FromPath[str]) -> list[TrialCheckpoint]:
    """Each trial's latest checkpoint (saved after every epoch): where a redelivered trial resumes."""
    _, store = await job_store(request)
    latest: dict[int, dict[str, Any]] = {}
    for row in await asyncio.to_thread(store.epochs, job_id):
        latest[int(row["trial"])] = row
    return [
        TrialCheckpoint(
            trial,
            int(row["epoch"]),
            int(row["step"]),
            {k: v for k, v in row.items() if k not in ("trial", "epoch", "step")},
            str(TrialFolder.of(Path(), job_id, trial).run.last_checkpoint),  # relative to IMGCLS_RUNS_DIR
        )
        for trial, row in sorted(latest.items())
    ]
