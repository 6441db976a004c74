"""Recovery against a real Redis and the real Celery producer: what it requeues lands in the queue."""

import base64
import json
import time

import msgspec

from service.jobs import lifecycle
from service.jobs.queue import FINISH_JOB, RUN_TRIAL, JobQueue
from service.jobs.recovery import recover
from service.jobs.store import JobStore
from tests.service.jobs.conftest import make_job

QUEUE = "fine-tuning"


def queued_tasks(store: JobStore) -> list[tuple[str, list[object]]]:
    """(task name, args) of the messages waiting in the Celery queue (a Redis list)."""
    messages = [json.loads(raw) for raw in store.client.lrange(QUEUE, 0, -1)]
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages]


def queue_of(store: JobStore) -> JobQueue:
    return JobQueue(store.url, queue=QUEUE, max_seconds=600)


def recover_once(store: JobStore, queue: JobQueue) -> list[str]:
    """A pass with two deliveries per trial and half a second's grace for a cancel."""
    return recover(store, queue, max_attempts=2, cancel_grace_s=0.5)


def test_a_running_trial_without_a_heartbeat_is_requeued_then_failed(store: JobStore) -> None:
    queue = queue_of(store)
    job = make_job(trials=2)
    store.create(job)
    store.update(job.id, lambda j: lifecycle.start_trial(j, 0, "a"))
    store.update(job.id, lambda j: lifecycle.start_trial(j, 1, "b"))
    store.beat(job.id, "1", "worker", ttl_s=30)  # trial 1's worker is alive, trial 0's is not

    assert recover_once(store, queue) == [f"{job.id}: trial 0's worker was lost; trial queued"]
    assert queued_tasks(store) == [(RUN_TRIAL, [job.id, 0])]
    assert [t.status for t in store.get(job.id).trials] == ["queued", "running"]
    assert recover_once(store, queue) == []  # queued now: nothing more to do

    store.update(job.id, lambda j: lifecycle.start_trial(j, 0, "c"))  # the second attempt is lost too
    recover_once(store, queue)
    trial = store.get(job.id).trials[0]
    assert trial.status == "failed" and trial.error is not None and trial.error.code == "worker_lost"


def test_a_lost_publishing_step_is_queued_again(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    store.update(job.id, lambda j: lifecycle.start_trial(j, 0, "a"))
    store.beat(job.id, "0", "worker", ttl_s=30)
    job, _ = store.update(job.id, lambda j: lifecycle.end_trial(j, 0, "succeeded", metrics={"val_accuracy": 1.0}))
    assert job.finishing == "running"

    recover_once(store, queue_of(store))
    assert store.get(job.id).finishing == "queued" and queued_tasks(store) == [(FINISH_JOB, [job.id])]


def test_a_cancel_ignored_past_the_grace_period_ends_the_job(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    store.update(job.id, lambda j: lifecycle.start_trial(j, 0, "task-0"))
    store.beat(job.id, "0", "worker", ttl_s=30)
    store.update(job.id, lifecycle.cancel)
    assert recover_once(store, queue_of(store)) == []  # within the grace period
    time.sleep(0.6)
    assert "tasks terminated" in recover_once(store, queue_of(store))[0]
    stored = store.get(job.id)
    assert stored.status == "cancelled" and stored.trials[0].status == "cancelled"
    assert msgspec.structs.asdict(stored)["finished_at"] is not None
