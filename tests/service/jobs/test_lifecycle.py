from datetime import UTC, datetime

import pytest

from service.jobs import lifecycle
from service.jobs.errors import JobNotCancellable
from service.jobs.record import Failure, Job, JobResult
from tests.service.jobs.conftest import make_job


def started(job: Job, *indexes: int) -> Job:
    for index in indexes:
        changed = lifecycle.start_trial(job, index, f"task-{index}")
        assert changed is not None
        job = changed
    return job


def test_a_trial_starts_once_and_the_job_runs() -> None:
    job = started(make_job(), 0)
    assert job.status == "running" and job.started_at is not None
    assert (job.trials[0].status, job.trials[0].attempts, job.trials[0].task_id) == ("running", 1, "task-0")
    assert lifecycle.start_trial(job, 0, "another") is None  # a second delivery does nothing


def test_the_last_trial_to_end_claims_publishing_and_the_best_trial_wins() -> None:
    job = started(make_job(trials=3), 0, 1, 2)
    job = lifecycle.end_trial(job, 0, "succeeded", metrics={"val_accuracy": 0.8}) or job
    job = lifecycle.end_trial(job, 1, "failed", error=Failure("training_error", "diverged")) or job
    assert job.finishing is None and job.status == "running"
    job = lifecycle.end_trial(job, 2, "succeeded", metrics={"val_accuracy": 0.9}) or job
    assert job.finishing == "running"
    best = lifecycle.best_trial(job)
    assert best is not None and best.index == 2
    assert lifecycle.end_trial(job, 2, "succeeded") is None  # ended already

    done = lifecycle.succeed(job, JobResult("m", 1, True, 2, {"val_accuracy": 0.9}))
    assert done is not None and done.status == "succeeded" and done.finishing is None and done.finished_at
    assert lifecycle.succeed(done, JobResult("m", 2, True, 2, {})) is None  # published once


def test_a_job_whose_trials_all_failed_fails_with_their_error() -> None:
    job = started(make_job(trials=2), 0, 1)
    job = lifecycle.end_trial(job, 0, "failed", error=Failure("dataset_error", "no images")) or job
    job = lifecycle.end_trial(job, 1, "failed", error=Failure("dataset_error", "no images")) or job
    assert job.status == "failed" and job.error == Failure("dataset_error", "all 2 trials failed; first: no images")


def test_cancel_ends_queued_work_at_once_and_waits_for_running_work() -> None:
    queued = lifecycle.cancel(make_job(trials=2))
    assert queued is not None and queued.status == "cancelled" and {t.status for t in queued.trials} == {"cancelled"}

    job = lifecycle.cancel(started(make_job(trials=2), 0))
    assert job is not None and job.status == "cancelling"
    assert [t.status for t in job.trials] == ["running", "cancelled"]
    assert lifecycle.cancel(job) is None
    job = lifecycle.end_trial(job, 0, "cancelled") or job
    assert job.status == "cancelled" and job.finished_at is not None

    with pytest.raises(JobNotCancellable, match="already cancelled"):
        lifecycle.cancel(job)


def test_a_lost_trial_is_requeued_until_its_attempts_run_out() -> None:
    job = started(make_job(), 0)
    requeued = lifecycle.requeue_lost_trial(job, 0, max_attempts=2)
    assert requeued is not None and requeued.trials[0].status == "queued" and requeued.status == "running"
    job = started(requeued, 0)
    failed = lifecycle.requeue_lost_trial(job, 0, max_attempts=2)
    assert failed is not None and failed.status == "failed" and failed.error is not None
    assert failed.error.code == "worker_lost" and "lost 2 times" in failed.error.message


def test_the_estimate_counts_the_epochs_left() -> None:
    job = started(make_job(trials=2), 0)  # 4 epochs each
    job = lifecycle.record_epoch(job, 0, epochs_completed=1, epoch_seconds=10.0)
    assert job.estimated_finish_at is not None
    left = (datetime.fromisoformat(job.estimated_finish_at) - datetime.now(UTC)).total_seconds()
    assert 65 < left <= 70  # 3 + 4 epochs of 10 s
