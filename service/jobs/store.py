"""Job records, their event logs and per-epoch metrics in Redis; the one place that knows the keys.

Keys (``<id>`` is a job id, ``ft_<12 hex of the creation time in ms><10 hex>``, so ids sort by age):
    imgcls:job:<id>                 the Job as JSON; changed only through ``update`` (WATCH/MULTI)
    imgcls:jobs                     sorted set of every id (score 0: ordered by id, newest last)
    imgcls:jobs:active              set of the ids not finished yet (what recovery scans)
    imgcls:jobs:finished            hash: status -> jobs that ended so (for the metrics)
    imgcls:job:<id>:events          stream of JobEvents; capped at EVENTS_KEPT
    imgcls:job:<id>:epochs          list of per-epoch metric rows (JSON), every trial's
    imgcls:job:<id>:cancel          present once a cancel was asked for (the training loop polls it)
    imgcls:job:<id>:alive:<name>    a worker's heartbeat for the trial (its index) or "finish" it runs; expires after
                                    job_lost_after_s
    imgcls:workers                  set of the names of the workers that said they run (``worker_name``)
    imgcls:worker:<name>            a running worker's presence; expires after job_lost_after_s (readiness counts them)

A status change and the events that tell it are written in one transaction, so the log and the record
never disagree. Every Redis failure surfaces as ``JobStoreUnavailable``.

``JobStore`` is synchronous (the worker, and the API through ``asyncio.to_thread``); ``wait_for_events``
and ``current_status`` are the two reads the API's live event stream makes on its asynchronous client.
"""

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec
import redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, TimeoutError, WatchError

from service.jobs.errors import JobNotFound, JobStoreUnavailable
from service.jobs.record import EventPage, Job, JobEvent, JobPage, JobStatus, decode, encode, now

PREFIX = "imgcls:job:"
INDEX = "imgcls:jobs"
ACTIVE = "imgcls:jobs:active"
FINISHED_COUNTS = "imgcls:jobs:finished"
WORKERS = "imgcls:workers"
EVENTS_KEPT = 10_000
ID_CHARS = 3 + 12 + 10


def new_job_id() -> str:
    return f"ft_{int(time.time() * 1000):012x}{secrets.token_hex(5)}"


def is_job_id(value: str) -> bool:
    return len(value) == ID_CHARS and value.startswith("ft_") and all(c in "0123456789abcdef" for c in value[3:])


def worker_name(pid: int | None = None) -> str:
    """How a worker process is named in Redis (its heartbeats and its presence): host and process id."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def job_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}"


def events_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}:events"


@contextlib.contextmanager
def talking_to_redis(url: str) -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, TimeoutError) as exc:
        raise JobStoreUnavailable(
            f"the job store (Redis at {redact(url)}) does not answer: {exc}; fine-tuning jobs are unavailable "
            "until it is back (classification is not affected)"
        ) from exc


def redact(url: str) -> str:
    """The URL without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


def changes(before: Job | None, after: Job) -> list[tuple[str, str, dict[str, Any]]]:
    """The events that tell what changed between two versions of a job (``before`` None: it was just created):
    (type, message, data)."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    old_status = {trial.index: trial.status for trial in before.trials} if before else {}
    for trial in after.trials if before else []:
        if old_status.get(trial.index) == trial.status:
            continue
        message = f"trial {trial.index} {trial.status}"
        if trial.status == "running":
            message += f" (attempt {trial.attempts}): " + ", ".join(
                f"{k}={trial.hyperparameters[k]}" for k in ("optimizer", "learning_rate", "lr_policy", "batch_size")
            )
        elif trial.status == "succeeded":
            message += f": validation accuracy {trial.metrics.get('val_accuracy', float('nan')):.4f}"
        elif trial.error is not None:
            message += f": {trial.error.message}"
        data = {
            "trial": trial.index,
            "status": trial.status,
            "metrics": trial.metrics,
            "error": msgspec.to_builtins(trial.error),
        }
        events.append(("trial", message, data))
    if before is None or before.status != after.status:
        message = after.status
        if after.status == "succeeded" and after.result is not None:
            r = after.result
            message += f": published {r.model} v{r.version}" + (" (production)" if r.promoted else "")
        elif after.error is not None:
            message += f": {after.error.message}"
        data = {
            "status": after.status,
            "error": msgspec.to_builtins(after.error),
            "result": msgspec.to_builtins(after.result),
        }
        events.append(("status", message, data))
    return events


class JobStore:
    def __init__(self, redis_url: str) -> None:
        self.url = redis_url
        # Any: redis-py types each reply as the union of its sync and async forms
        self.client: Any = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)

    def close(self) -> None:
        self.client.close()

    # ---------------------------------------------------------------- records

    def create(self, job: Job) -> None:
        with talking_to_redis(self.url):
            pipe = self.client.pipeline()
            pipe.set(job_key(job.id), encode(job), nx=True)
            pipe.zadd(INDEX, {job.id: 0})
            pipe.sadd(ACTIVE, job.id)
            for kind, message, data in changes(None, job):
                self._event(pipe, job.id, kind, message, data)
            pipe.execute()

    def get(self, job_id: str) -> Job:
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        with talking_to_redis(self.url):
            raw = self.client.get(job_key(job_id))
        if raw is None:
            raise JobNotFound(job_id)
        return decode(raw)

    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> tuple[Job, bool]:
        """Apply ``change`` atomically (retried when another process changed the job meanwhile).

        ``change`` gets the stored job and returns the new one, or None to leave it; it may raise to refuse.
        Returns the job as stored now and whether ``change`` changed it.
        """
        key = job_key(job_id)
        with talking_to_redis(self.url), self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise JobNotFound(job_id)
                    before = decode(raw)
                    after = change(before)
                    if after is None or after == before:
                        pipe.unwatch()
                        return before, False
                    after = msgspec.structs.replace(after, updated_at=now())
                    pipe.multi()
                    pipe.set(key, encode(after))
                    if after.finished:
                        pipe.srem(ACTIVE, job_id)
                        if not before.finished:
                            pipe.hincrby(FINISHED_COUNTS, after.status, 1)
                    for kind, message, data in changes(before, after):
                        self._event(pipe, job_id, kind, message, data)
                    pipe.execute()
                    return after, True
                except WatchError:
                    continue

    def delete_unaccepted(self, job_id: str) -> None:
        """Remove a job whose submission failed before it was queued (nothing was accepted)."""
        with talking_to_redis(self.url):
            pipe = self.client.pipeline()
            pipe.delete(job_key(job_id), events_key(job_id))
            pipe.zrem(INDEX, job_id)
            pipe.srem(ACTIVE, job_id)
            pipe.execute()

    def page(
        self, *, cursor: str | None, limit: int, status: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> JobPage:
        """Jobs newest first, ``limit`` at most, older than ``cursor`` (a job id), filtered by status and by
        metadata (every given key must hold the given value)."""
        wanted = dict(metadata or {})
        found: list[Job] = []
        upper = f"({cursor}" if cursor else "+"
        with talking_to_redis(self.url):
            while len(found) < limit:
                ids = self.client.zrevrangebylex(INDEX, upper, "-", start=0, num=max(100, limit))
                if not ids:
                    return JobPage(found, None)
                for raw in self.client.mget([job_key(i.decode()) for i in ids]):
                    if raw is None:
                        continue
                    job = decode(raw)
                    if (status is None or job.status == status) and all(
                        job.metadata.get(k) == v for k, v in wanted.items()
                    ):
                        found.append(job)
                        if len(found) == limit:
                            return JobPage(found, job.id)
                upper = f"({ids[-1].decode()}"
        return JobPage(found, found[-1].id if found else None)

    def active_ids(self) -> list[str]:
        with talking_to_redis(self.url):
            return sorted(member.decode() for member in self.client.smembers(ACTIVE))

    def finished_counts(self) -> dict[str, int]:
        """Jobs that ended, by status, since this Redis began keeping them."""
        with talking_to_redis(self.url):
            return {key.decode(): int(value) for key, value in self.client.hgetall(FINISHED_COUNTS).items()}

    def active_jobs(self) -> list[Job]:
        """The jobs that have not finished."""
        ids = self.active_ids()
        with talking_to_redis(self.url):
            raws = self.client.mget([job_key(job_id) for job_id in ids]) if ids else []
        return [decode(raw) for raw in raws if raw is not None]

    # ---------------------------------------------------------------- events and metrics

    @staticmethod
    def _event(pipe: Any, job_id: str, kind: str, message: str, data: Mapping[str, Any]) -> None:
        fields = {"created_at": now(), "type": kind, "message": message, "data": json.dumps(data)}
        pipe.xadd(events_key(job_id), fields, maxlen=EVENTS_KEPT, approximate=True)

    def add_event(self, job_id: str, kind: str, message: str, data: Mapping[str, Any] | None = None) -> None:
        with talking_to_redis(self.url):
            self._event(self.client, job_id, kind, message, data or {})

    def add_epoch(self, job_id: str, row: Mapping[str, Any], message: str) -> None:
        """A trial's epoch: its metrics row in the list, and an ``epoch`` event, together."""
        with talking_to_redis(self.url):
            pipe = self.client.pipeline()
            pipe.rpush(f"{job_key(job_id)}:epochs", json.dumps(row))
            self._event(pipe, job_id, "epoch", message, row)
            pipe.execute()

    def events(self, job_id: str, *, after: str | None, limit: int) -> EventPage:
        job = self.get(job_id)
        with talking_to_redis(self.url):
            entries = self.client.xrange(events_key(job_id), f"({after}" if after else "-", "+", count=limit)
        events = [parse_event(entry_id, fields) for entry_id, fields in entries]
        return EventPage(events, events[-1].id if events else after, job.finished and len(events) < limit)

    def epochs(self, job_id: str) -> list[dict[str, Any]]:
        self.get(job_id)
        with talking_to_redis(self.url):
            rows = self.client.lrange(f"{job_key(job_id)}:epochs", 0, -1)
        return [json.loads(row) for row in rows]

    # ---------------------------------------------------------------- cancel flag and heartbeats

    def request_cancel(self, job_id: str) -> None:
        with talking_to_redis(self.url):
            self.client.set(f"{job_key(job_id)}:cancel", now())

    def cancel_requested(self, job_id: str) -> bool:
        with talking_to_redis(self.url):
            return bool(self.client.exists(f"{job_key(job_id)}:cancel"))

    def beat(self, job_id: str, name: str, worker: str, ttl_s: float) -> None:
        """``name``: a trial index, or "finish" for the publishing step."""
        with talking_to_redis(self.url):
            self.client.set(f"{job_key(job_id)}:alive:{name}", worker, px=int(ttl_s * 1000))

    def alive(self, job_id: str, name: str) -> bool:
        with talking_to_redis(self.url):
            return bool(self.client.exists(f"{job_key(job_id)}:alive:{name}"))

    # ---------------------------------------------------------------- which workers run

    def worker_present(self, name: str, ttl_s: float) -> None:
        """Worker ``name`` runs (said again before ``ttl_s`` runs out, or it counts as gone)."""
        with talking_to_redis(self.url):
            pipe = self.client.pipeline()
            pipe.sadd(WORKERS, name)
            pipe.set(f"imgcls:worker:{name}", now(), px=int(ttl_s * 1000))
            pipe.execute()

    def worker_left(self, name: str) -> None:
        with talking_to_redis(self.url):
            pipe = self.client.pipeline()
            pipe.srem(WORKERS, name)
            pipe.delete(f"imgcls:worker:{name}")
            pipe.execute()

    def live_workers(self) -> list[str]:
        """The names of the workers whose presence has not expired (forgetting those that vanished)."""
        with talking_to_redis(self.url):
            names = sorted(member.decode() for member in self.client.smembers(WORKERS))
            present = self.client.mget([f"imgcls:worker:{name}" for name in names]) if names else []
            gone = [name for name, value in zip(names, present, strict=True) if value is None]
            if gone:
                self.client.srem(WORKERS, *gone)
        return [name for name, value in zip(names, present, strict=True) if value is not None]

    def ping(self) -> None:
        with talking_to_redis(self.url):
            self.client.ping()


def parse_event(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> JobEvent:
    def text(name: str) -> str:
        return fields[name.encode()].decode()

    return JobEvent(
        id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        created_at=text("created_at"),
        type=text("type"),  # type: ignore[arg-type]
        message=text("message"),
        data=json.loads(text("data")),
    )


# ---------------------------------------------------------------- the live event stream (asynchronous)


async def wait_for_events(
    client: AsyncRedis, job_id: str, *, after: str, count: int, block_ms: int | None
) -> list[JobEvent]:
    """Up to ``count`` events of the job later than event id ``after`` (``"0-0"``: from the start), waiting
    up to ``block_ms`` for the first when there is none yet (None: do not wait)."""
    try:
        replies: Any = await client.xread({events_key(job_id): after}, count=count, block=block_ms)
    except RedisError as exc:
        raise JobStoreUnavailable(f"the job store does not answer: {exc}") from exc
    entries = replies[0][1] if replies else []
    return [parse_event(entry_id, fields) for entry_id, fields in entries]


async def current_status(client: AsyncRedis, job_id: str) -> JobStatus | None:
    """The job's status as stored now; None for a job that is gone."""
    try:
        raw: Any = await client.get(job_key(job_id))  # bytes: the client does not decode responses
    except RedisError as exc:
        raise JobStoreUnavailable(f"the job store does not answer: {exc}") from exc
    return None if raw is None else decode(raw).status
