"""What the worker's tasks do: run one trial of a job (``training.finetune``'s ``prepare`` and
``train_trial``), and publish a job's best trial (``publish_trial``: job.json and the run's result only).
Every state change goes through ``service.jobs.lifecycle``.

Idempotent by job id: a trial's folder (``TrialFolder.of(runs_dir, job id, index)``) is the same on every
delivery, so a redelivered trial resumes from its last checkpoint, and publishing goes through
``publish_trial``'s publish-once record. A delivery that finds its trial ended, or running on a live
worker, does nothing.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from service.datasets import DatasetError, DatasetStore
from service.jobs import lifecycle
from service.jobs.errors import JobStoreUnavailable
from service.jobs.hyperparameters import FineTuneConfig
from service.jobs.record import Failure, Job, JobResult
from service.jobs.recovery import FINISHING
from service.jobs.store import JobStore
from service.repository import ModelRepository, RepositoryError
from service.repository.errors import UnfinishedRun
from service.repository.run_folder import TrialFolder
from training.errors import InvalidHyperparameter, TrainingError, UnknownName, UnusableData
from training.finetune import (
    FineTuneJob,
    IncompatibleBase,
    JobRunning,
    TrialOutcome,
    job_lock,
    prepare,
    publish_trial,
    train_trial,
)
from training.settings import TrainingSettings
from training.worker.heartbeat import Heartbeat

log = logging.getLogger(__name__)
T = TypeVar("T")
STORE_RETRY_S = 600  # how long an outcome waits for Redis to come back before the task gives up
CANCEL_POLL_S = 0.5


def failure_for(error: BaseException) -> Failure:
    """The structured error a job shows for what stopped its trial (codes listed in docs/api.md)."""
    table: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str]] = [
        ((InvalidHyperparameter, UnknownName), "invalid_hyperparameters"),
        (IncompatibleBase, "incompatible_base"),
        (UnfinishedRun, "training_error"),
        (RepositoryError, "base_unavailable"),
        (DatasetError, "dataset_unavailable"),
        (UnusableData, "dataset_error"),
        (SoftTimeLimitExceeded, "time_limit"),
        (TrainingError, "training_error"),
    ]
    for kinds, code in table:
        if isinstance(error, kinds):
            message = str(error) if code != "time_limit" else "the trial ran past IMGCLS_JOB_MAX_SECONDS"
            return Failure(code, message)
    return Failure("internal", f"{type(error).__name__}: {error} (the worker's log has the traceback)")


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics a job shows: without the per-class ones (``accuracy/<label>``)."""
    return {key: value for key, value in metrics.items() if "/" not in key}


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
        self.repository = ModelRepository(settings.model_root)

    def heartbeat(self, job_id: str, name: str) -> Heartbeat:
        s = self.settings
        return Heartbeat(self.store, job_id, name, interval_s=s.job_heartbeat_s, ttl_s=s.job_lost_after_s)

    def trial_folder(self, job_id: str, index: int) -> TrialFolder:
        return TrialFolder.of(self.settings.runs_dir, job_id, index)

    # ---------------------------------------------------------------- tasks

    def run_trial(self, job_id: str, index: int, task_id: str | None) -> None:
        job = self.store.get(job_id)
        if job.finished or job.trials[index].status != "queued":
            log.info(
                "job %s trial %d is %s (job %s): nothing to do", job_id, index, job.trials[index].status, job.status
            )
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
                outcome = ("failed", {}, failure_for(error))
            status, metrics, failure = outcome
            job, changed = until_stored(
                lambda: self.store.update(
                    job_id, lambda j: lifecycle.end_trial(j, index, status, metrics=metrics, error=failure)
                ),
                what=f"the end of job {job_id}'s trial {index}",
            )
            if changed and job.finishing == "running":  # this update ended the last trial: publish
                self.publish(job_id)

    def finish_job(self, job_id: str) -> None:
        """The publishing step that recovery requeued after its worker was lost."""
        _, claimed = self.store.update(job_id, lifecycle.claim_finishing)
        if claimed:
            self.publish(job_id)

    # ---------------------------------------------------------------- steps

    def fine_tune_job(self, job: Job, index: int) -> FineTuneJob:
        """Trial ``index`` of ``job`` as ``training.finetune`` takes it."""
        return FineTuneJob(
            job_id=job.id,
            base=job.base_model,
            base_version=job.base_version,
            dataset_dir=self.datasets.images_path(job.dataset),
            dataset_id=job.dataset,
            dataset_sha256=job.dataset_sha256,
            config=FineTuneConfig(**job.trials[index].hyperparameters),
            publish_name=f"{job.base_model}-{job.suffix}" if job.suffix else None,
        )

    def train(self, job: Job, index: int) -> tuple[str, dict[str, float], Failure | None]:
        job_id = job.id
        started = time.monotonic()
        done_here = 0  # epochs this delivery trained (a resumed trial starts past 0)

        def on_epoch(row: dict[str, Any]) -> None:
            nonlocal done_here
            epochs = int(row["epoch"])
            done_here += 1
            seconds = (time.monotonic() - started) / done_here  # wall time per epoch, validation included
            message = f"trial {index} epoch {epochs}: train loss {row['train_loss']:.4f}, validation accuracy " + (
                "n/a" if row["val_accuracy"] is None else f"{row['val_accuracy']:.4f}"
            )
            self.tolerant(lambda: self.store.add_epoch(job_id, {"trial": index, **row}, message))
            self.tolerant(
                lambda: self.store.update(job_id, lambda j: lifecycle.record_epoch(j, index, epochs, seconds))
            )

        folder = self.trial_folder(job_id, index)
        with job_lock(folder, job_id):  # one delivery at a time; a second one raises JobRunning
            trial = prepare(self.fine_tune_job(job, index), folder, self.repository)
            resolved = trial.resolved.to_dict()
            self.tolerant(lambda: self.store.update(job_id, lambda j: lifecycle.record_resolved(j, index, resolved)))
            outcome: TrialOutcome = train_trial(
                trial,
                self.repository,
                self.settings,
                should_stop=CancelFlag(self.store, job_id),
                on_epoch=on_epoch,
                echo=False,
            )
        if outcome.status == "stopped":
            return "cancelled", {}, None
        early_stop = folder.run.read_result().early_stop
        if early_stop is not None:  # the log says why a trial ran fewer epochs than asked
            message = f"trial {index} {early_stop.reason}"
            data = {"trial": index, "epoch": early_stop.epoch, "best_epoch": early_stop.best_epoch}
            self.tolerant(lambda: self.store.add_event(job_id, "message", message, data))
        return "succeeded", headline(outcome.metrics), None

    def publish(self, job_id: str) -> None:
        with self.heartbeat(job_id, FINISHING):
            job = self.store.get(job_id)
            best = lifecycle.best_trial(job)
            assert best is not None, "publishing is claimed only when a trial succeeded"
            folder = self.trial_folder(job_id, best.index)
            try:
                with job_lock(folder, job_id):
                    published = publish_trial(
                        folder,
                        self.repository,
                        auto_promote=job.auto_promote,
                        min_accuracy=job.min_accuracy,
                        redis_url=self.settings.redis_url,
                        should_stop=CancelFlag(self.store, job_id),
                    )
            except Exception as error:
                log.exception("job %s: publishing trial %d failed", job_id, best.index)
                failure = failure_for(error)
                until_stored(
                    lambda: self.store.update(job_id, lambda j: lifecycle.fail(j, failure)),
                    what=f"job {job_id}'s failure",
                )
                return
            if published is None:  # cancelled before publishing
                until_stored(
                    lambda: self.store.update(job_id, lifecycle.cancelled_while_finishing),
                    what=f"job {job_id}'s cancel",
                )
                return
            outcome = JobResult(
                model=published.version.name,
                version=published.version.version,
                promoted=published.promoted,
                trial=best.index,
                metrics=headline(published.metrics),
            )
            until_stored(
                lambda: self.store.update(job_id, lambda j: lifecycle.succeed(j, outcome)),
                what=f"job {job_id}'s success",
            )

    @staticmethod
    def tolerant(write: Callable[[], object]) -> None:
        """Progress (epoch rows, estimates) is not worth stopping training for while Redis restarts."""
        try:
            write()
        except JobStoreUnavailable as exc:
            log.warning("progress not recorded (Redis does not answer): %s", exc)
