"""A fine-tuning job as stored in Redis and answered by the API (one msgspec struct tree, JSON both ways).

Lifecycle: ``validating`` (the API checks the submission) -> ``queued`` -> ``running`` -> ``succeeded`` |
``failed`` | ``cancelled``, with ``cancelling`` between a cancel request and the worker stopping. A job
holds one trial per hyperparameter combination (one, without a sweep); each trial is a Celery task with
its own status, and the job publishes its best trial.
"""

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

JobStatus = Literal["validating", "queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
TrialStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


AutoPromote = bool | Literal["shadow"]  # "shadow": through a shadow rollout and its gate (docs/rollouts.md)


class Failure(msgspec.Struct, frozen=True):
    """Why a trial or a job failed: ``code`` for programs (see docs/api.md), ``message`` for people."""

    code: str
    message: str


class Trial(msgspec.Struct, frozen=True):
    index: int
    hyperparameters: dict[str, Any]  # this trial's; resolved in full once it starts
    status: TrialStatus = "queued"
    attempts: int = 0  # deliveries that started it (a lost worker's delivery counts)
    task_id: str | None = None  # the Celery task of the latest delivery
    started_at: str | None = None
    finished_at: str | None = None
    epochs_completed: int = 0
    epoch_seconds: float | None = None  # mean duration of its epochs so far
    metrics: dict[str, float] = {}  # when it succeeded: val_accuracy, test_accuracy, ece, ...
    error: Failure | None = None


class JobResult(msgspec.Struct, frozen=True):
    model: str
    version: int
    promoted: bool  # production names it now
    trial: int  # the trial published
    metrics: dict[str, float]


class Job(msgspec.Struct, frozen=True):
    id: str
    status: JobStatus
    created_at: str
    updated_at: str
    base_model: str
    base_version: int  # resolved when the job was accepted (an alias names a number then)
    dataset: str  # a stored dataset's id
    dataset_sha256: str
    auto_promote: AutoPromote  # "shadow": through a shadow rollout (service/rollouts/jobs.py)
    min_accuracy: float | None
    suffix: str | None  # published as <base_model>-<suffix>; None: see docs/api.md
    metadata: dict[str, str]
    hyperparameters: dict[str, Any]  # as submitted, with the defaults filled in (lists for the swept ones)
    trials: list[Trial]
    started_at: str | None = None
    finished_at: str | None = None
    estimated_finish_at: str | None = None
    result: JobResult | None = None
    error: Failure | None = None
    cancel_requested_at: str | None = None
    finishing: Literal["queued", "running"] | None = None  # publishing the best trial, once every trial ended

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class JobEvent(msgspec.Struct, frozen=True):
    """One line of a job's log: ``status`` changes, ``epoch`` metrics, ``trial`` starts and ends, ``message``."""

    id: str  # the Redis stream id: increasing; pass it as ?after= (or Last-Event-ID) to read on
    created_at: str
    type: Literal["status", "trial", "epoch", "message"]
    message: str
    data: dict[str, Any] = {}


class JobPage(msgspec.Struct, frozen=True):
    data: list[Job]
    next_cursor: str | None  # pass as ?cursor= for the next (older) page; None: this is the last


class EventPage(msgspec.Struct, frozen=True):
    data: list[JobEvent]
    next_after: str | None  # pass as ?after= to read on; None: no more events yet
    finished: bool  # the job finished: no events will follow


def encode(job: Job) -> bytes:
    return msgspec.json.encode(job)


def decode(data: bytes) -> Job:
    return msgspec.json.decode(data, type=Job)
