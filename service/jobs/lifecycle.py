"""Every change of a job's state, as pure functions from the stored job to the new one.

``JobStore.update(job_id, change)`` applies them atomically; each returns None when the change does not
apply (the job moved on meanwhile), so two processes racing (a worker and the API's recovery, or two
workers) cannot both win. The rules:

- A job is ``running`` from its first trial's start until it finishes; it ``succeeded`` once its best trial
  (by validation accuracy) is published, ``failed`` when no trial succeeded, ``cancelled`` once a cancel
  stopped every trial (``cancelling`` while one still runs).
- The update that ends the last trial also claims ``finishing``; whoever holds it publishes. A lost
  finisher is found by recovery and the publishing requeued (publishing is idempotent by job id).
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from service.jobs.errors import JobNotCancellable
from service.jobs.record import Failure, Job, JobResult, Trial, now

replace = msgspec.structs.replace
TRIAL_ENDED = frozenset({"succeeded", "failed", "cancelled"})


def _with_trial(job: Job, index: int, **changes: Any) -> Job:
    return replace(job, trials=[replace(t, **changes) if t.index == index else t for t in job.trials])


def all_ended(job: Job) -> bool:
    return all(trial.status in TRIAL_ENDED for trial in job.trials)


def best_trial(job: Job) -> Trial | None:
    """The succeeded trial with the best validation accuracy (the lowest index on a tie)."""
    done = [trial for trial in job.trials if trial.status == "succeeded"]
    return max(done, key=lambda t: (t.metrics.get("val_accuracy", 0.0), -t.index), default=None)


def estimated_finish(job: Job) -> str | None:
    """Now plus the epochs left times the mean epoch duration measured so far (trials run one at a time per
    worker, so this is the estimate for one worker)."""
    durations = [t.epoch_seconds for t in job.trials if t.epoch_seconds]
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    left = sum(
        max(0, int(t.hyperparameters["epochs"]) - t.epochs_completed)
        for t in job.trials
        if t.status in ("queued", "running")
    )
    return (datetime.now(UTC) + timedelta(seconds=left * mean)).isoformat(timespec="milliseconds")


def _ended(job: Job) -> Job:
    """After a trial ended: claim publishing, or fail, or finish a cancel, as the trials now say."""
    if not all_ended(job) or job.finishing is not None:
        return job
    if job.status == "cancelling":
        return replace(job, status="cancelled", finished_at=now(), estimated_finish_at=None)
    if best_trial(job) is None:
        failed = [t.error for t in job.trials if t.error is not None]
        first = failed[0] if failed else Failure("failed", "no trial succeeded")
        message = (
            first.message if len(job.trials) == 1 else f"all {len(job.trials)} trials failed; first: {first.message}"
        )
        return replace(
            job, status="failed", finished_at=now(), error=Failure(first.code, message), estimated_finish_at=None
        )
    return replace(job, finishing="running")


# ---------------------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------------------


def cancel(job: Job) -> Job | None:
    """Queued trials end at once; running ones are asked to stop (the worker polls the flag)."""
    if job.finished:
        raise JobNotCancellable(f"job {job.id} already {job.status}; only a job that has not finished can be cancelled")
    if job.status == "cancelling":
        return None
    trials = [replace(t, status="cancelled", finished_at=now()) if t.status == "queued" else t for t in job.trials]
    running = any(t.status == "running" for t in trials) or job.finishing is not None
    return replace(
        job,
        trials=trials,
        status="cancelling" if running else "cancelled",
        cancel_requested_at=now(),
        finished_at=None if running else now(),
        estimated_finish_at=None,
    )


# ---------------------------------------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------------------------------------


def start_trial(job: Job, index: int, task_id: str | None) -> Job | None:
    """A delivery takes a queued trial (None: the trial is not queued, or the job is ending)."""
    trial = job.trials[index]
    if job.status not in ("validating", "queued", "running") or trial.status != "queued":
        return None
    job = _with_trial(
        job,
        index,
        status="running",
        attempts=trial.attempts + 1,
        task_id=task_id,
        started_at=trial.started_at or now(),
        error=None,
    )
    return replace(job, status="running", started_at=job.started_at or now())


def record_resolved(job: Job, index: int, hyperparameters: dict[str, Any]) -> Job:
    return _with_trial(job, index, hyperparameters=hyperparameters)


def record_epoch(job: Job, index: int, epochs_completed: int, epoch_seconds: float) -> Job:
    job = _with_trial(job, index, epochs_completed=epochs_completed, epoch_seconds=round(epoch_seconds, 3))
    return replace(job, estimated_finish_at=estimated_finish(job))


def end_trial(
    job: Job, index: int, status: str, *, metrics: dict[str, float] | None = None, error: Failure | None = None
) -> Job | None:
    """A trial succeeded, failed or stopped for a cancel (None: it had already ended)."""
    if job.trials[index].status in TRIAL_ENDED or job.finished:
        return None
    job = _with_trial(job, index, status=status, finished_at=now(), metrics=metrics or {}, error=error)
    return _ended(job)


def claim_finishing(job: Job) -> Job | None:
    """A FINISH_JOB task takes the publishing that recovery requeued."""
    if job.finished or job.finishing != "queued":
        return None
    return replace(job, finishing="running")


def succeed(job: Job, result: JobResult) -> Job | None:
    if job.finished:
        return None
    return replace(job, status="succeeded", result=result, finishing=None, finished_at=now(), estimated_finish_at=None)


def fail(job: Job, failure: Failure) -> Job | None:
    if job.finished:
        return None
    trials = [
        replace(t, status="failed", finished_at=now(), error=failure) if t.status not in TRIAL_ENDED else t
        for t in job.trials
    ]
    return replace(
        job, status="failed", trials=trials, error=failure, finishing=None, finished_at=now(), estimated_finish_at=None
    )


def cancelled_while_finishing(job: Job) -> Job | None:
    if job.finished:
        return None
    return replace(job, status="cancelled", finishing=None, finished_at=now(), estimated_finish_at=None)


# ---------------------------------------------------------------------------------------------------------
# Recovery (service/jobs/recovery.py)
# ---------------------------------------------------------------------------------------------------------


def requeue_lost_trial(job: Job, index: int, max_attempts: int) -> Job | None:
    """A running trial whose worker stopped beating: back to the queue, or failed after ``max_attempts``."""
    trial = job.trials[index]
    if trial.status != "running" or job.finished:
        return None
    if job.status == "cancelling":
        return end_trial(job, index, "cancelled")
    if trial.attempts >= max_attempts:
        failure = Failure(
            "worker_lost",
            f"the worker running trial {index} was lost {trial.attempts} times "
            f"(the job allows {max_attempts} attempts)",
        )
        return end_trial(job, index, "failed", error=failure)
    return _with_trial(job, index, status="queued")


def requeue_finishing(job: Job) -> Job | None:
    if job.finished or job.finishing != "running":
        return None
    return replace(job, finishing="queued")


def terminate_cancelled(job: Job) -> Job | None:
    """A cancel the running trials ignored past the grace period: they are ended (their tasks killed)."""
    if job.status != "cancelling":
        return None
    trials = [replace(t, status="cancelled", finished_at=now()) if t.status == "running" else t for t in job.trials]
    return replace(job, trials=trials, status="cancelled", finishing=None, finished_at=now())
