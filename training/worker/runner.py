"""What the worker's tasks do: run one trial of a job, and publish a job's best trial. Thin around
``training.finetune.fine_tune``; every state change goes through ``service.jobs.lifecycle``.

Idempotent by job id: a trial's folder (``<runs_dir>/jobs/<job id>/trial-<n>``) is the same on every
delivery, so a redelivered trial resumes from its last checkpoint, and publishing goes through
``fine_tune``'s publish-once record. A delivery that finds its trial ended, or running on a live worker,
does nothing.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from service.datasets import DatasetError, DatasetStore
from service.jobs import lifecycle
from service.jobs.errors import JobStoreUnavailable
from service.jobs.hyperparameters import FineTuneConfig
from service.jobs.record import Job, JobResult, Problem
from service.jobs.recovery import FINISHING
from service.jobs.store import JobStore
from service.repository import RepositoryError
from training.errors import DatasetError as TrainingDatasetError
from training.errors import InvalidHyperparameter, TrainingError, UnknownName
from training.finetune import FineTuneResult, IncompatibleBase, JobRunning, fine_tune
from training.settings import TrainingSettings
from training.worker.heartbeat import Heartbeat

log = logging.getLogger(__name__)
T = TypeVar("T")
STORE_RETRY_S = 600  # how long an outcome waits for Redis to come back before the task gives up
CANCEL_POLL_S = 0.5


def problem_for(error: BaseException) -> Problem:
    """The structured error a job shows for what stopped its trial (codes listed in docs/api.md)."""
    table: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str]] = [
        ((InvalidHyperparameter, UnknownName), "invalid_hyperparameters"),
        (IncompatibleBase, "incompatible_base"),
        (RepositoryError, "base_unavailable"),
        (DatasetError, "dataset_unavailable"),
        (TrainingDatasetError, "dataset_error"),
        (SoftTimeLimitExceeded, "time_limit"),
        (TrainingError, "training_error"),
    ]
    for kinds, code in table:
        if isinstance(error, kinds):
            message = str(error) if code != "time_limit" else "the trial ran past IMGCLS_JOB_MAX_SECONDS"
            return Problem(code, message)
    return Problem("internal", f"{type(error).__name__}: {error} (the worker's log has the traceback)")


def until_stored(write: Callable[[], T], *, what: str) -> T:
    """An outcome must reach Redis: retried while it restarts, for up to STORE_RETRY_S."""
    deadline = time.monotonic() + STORE_RETRY_S
    while True:
        try:
            return write()
        except JobStoreUnavailable:
            if time.monotonic() > deadline:
                raise
            log.warning("Redis does not answer; retrying to record %s", what)
            time.sleep(1.0)


class CancelFlag:
    """``should_stop`` for the training loop: True once the job's cancel flag is set (Redis read at most
    every CANCEL_POLL_S; while Redis is away, training goes on)."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self.checked, self.cancelled = 0.0, False

    def __call__(self) -> bool:
        if not self.cancelled and time.monotonic() - self.checked >= CANCEL_POLL_S:
            self.checked = time.monotonic()
            with contextlib.suppress(JobStoreUnavailable):
                self.cancelled = self.store.cancel_requested(self.job_id)
        return self.cancelled


class JobRunner:
    def __init__(self, settings: TrainingSettings) -> None:
        if not settings.redis_url:
            raise JobStoreUnavailable("the worker needs Redis: set IMGCLS_REDIS_URL")
        self.settings = settings
        self.store = JobStore(settings.redis_url)
        self.datasets = DatasetStore(settings.data_root)

    def heartbeat(self, job_id: str, name: str) -> Heartbeat:
        s = self.settings
        return Heartbeat(self.store, job_id, name, interval_s=s.job_heartbeat_s, ttl_s=s.job_lost_after_s)

    def trial_dir(self, job_id: str, index: int) -> Path:
        return self.settings.runs_dir / "jobs" / job_id / f"trial-{index}"

    # ---------------------------------------------------------------- tasks

    def run_trial(self, job_id: str, index: int, task_id: str | None) -> None:
        job = self.store.get(job_id)
        if job.finished or job.trials[index].status != "queued":
            log.info("job %s trial %d is %s (job %s): nothing to do", job_id, index, job.trials[index].status,
                     job.status)  # fmt: skip
            return
        with self.heartbeat(job_id, str(index)):
            job, started = self.store.update(job_id, lambda j: lifecycle.start_trial(j, index, task_id))
            if not started:
                return
            try:
                outcome = self.train(job, index)
            except JobRunning:
                log.warning("job %s trial %d runs in another process; leaving it to that one", job_id, index)
                return
            except Exception as error:  # every failure becomes the trial's structured error
                log.exception("job %s trial %d failed", job_id, index)
                outcome = ("failed", {}, problem_for(error))
            status, metrics, problem = outcome
            job, changed = until_stored(
                lambda: self.store.update(job_id, lambda j: lifecycle.end_trial(j, index, status, metrics=metrics,
                                                                                error=problem)),
                what=f"the end of job {job_id}'s trial {index}",
            )  # fmt: skip
            if changed and job.finishing == "running":  # this update ended the last trial: publish
                self.publish(job_id)

    def finish_job(self, job_id: str) -> None:
        """The publishing step that recovery requeued after its worker was lost."""
        _, claimed = self.store.update(job_id, lifecycle.claim_finishing)
        if claimed:
            self.publish(job_id)

    # ---------------------------------------------------------------- steps

    def fine_tune(self, job: Job, index: int, **options: Any) -> FineTuneResult:
        trial = job.trials[index]
        return fine_tune(
            base=job.base_model,
            base_version=job.base_version,
            dataset_dir=self.datasets.images_path(job.dataset),
            dataset_id=job.dataset,
            dataset_sha256=job.dataset_sha256,
            job_id=job.id,
            config=FineTuneConfig(**trial.hyperparameters),
            output_dir=self.trial_dir(job.id, index),
            settings=self.settings,
            publish_name=f"{job.base_model}-{job.suffix}" if job.suffix else None,
            should_stop=CancelFlag(self.store, job.id),
            **options,
        )

    def train(self, job: Job, index: int) -> tuple[str, dict[str, float], Problem | None]:
        job_id = job.id
        started = time.monotonic()

        def on_start(config: FineTuneConfig) -> None:
            resolved = config.to_dict()
            self.tolerant(lambda: self.store.update(job_id, lambda j: lifecycle.record_resolved(j, index, resolved)))

        def on_epoch(row: dict[str, Any]) -> None:
            epochs = int(row["epoch"])
            done_here[0] += 1
            seconds = (time.monotonic() - started) / done_here[0]  # wall time per epoch, validation included
            message = f"trial {index} epoch {epochs}: train loss {row['train_loss']:.4f}, validation accuracy " + (
                "n/a" if row["val_accuracy"] is None else f"{row['val_accuracy']:.4f}"
            )
            self.tolerant(lambda: self.store.add_epoch(job_id, {"trial": index, **row}, message))
            self.tolerant(
                lambda: self.store.update(job_id, lambda j: lifecycle.record_epoch(j, index, epochs, seconds))
            )

        done_here = [0]  # epochs this delivery trained (a resumed trial starts past 0)
        result = self.fine_tune(job, index, on_start=on_start, on_epoch=on_epoch, publish=False)
        if result.status == "stopped":
            return "cancelled", {}, None
        metrics = {key: value for key, value in result.metrics.items() if "/" not in key}
        return "succeeded", metrics, None

    def publish(self, job_id: str) -> None:
        with self.heartbeat(job_id, FINISHING):
            job = self.store.get(job_id)
            best = lifecycle.best_trial(job)
            assert best is not None, "publishing is claimed only when a trial succeeded"
            try:
                result = self.fine_tune(job, best.index, publish=True, auto_promote=job.auto_promote,
                                        min_accuracy=job.min_accuracy)  # fmt: skip
            except Exception as error:
                log.exception("job %s: publishing trial %d failed", job_id, best.index)
                problem = problem_for(error)
                until_stored(lambda: self.store.update(job_id, lambda j: lifecycle.fail(j, problem)),
                             what=f"job {job_id}'s failure")  # fmt: skip
                return
            if result.published is None:  # cancelled before publishing
                until_stored(lambda: self.store.update(job_id, lifecycle.cancelled_while_finishing),
                             what=f"job {job_id}'s cancel")  # fmt: skip
                return
            outcome = JobResult(
                model=result.published.name,
                version=result.published.version,
                promoted=result.promoted,
                trial=best.index,
                metrics={key: value for key, value in result.metrics.items() if "/" not in key},
            )
            until_stored(lambda: self.store.update(job_id, lambda j: lifecycle.succeed(j, outcome)),
                         what=f"job {job_id}'s success")  # fmt: skip

    @staticmethod
    def tolerant(write: Callable[[], object]) -> None:
        """Progress (epoch rows, estimates) is not worth stopping training for while Redis restarts."""
        try:
            write()
        except JobStoreUnavailable as exc:
            log.warning("progress not recorded (Redis does not answer): %s", exc)
