import threading
import time

import msgspec
import pytest

from service.jobs import lifecycle
from service.jobs.errors import JobNotFound, JobStoreUnavailable
from service.jobs.record import Job
from service.jobs.store import JobStore
from tests.redis_server import free_port
from tests.service.jobs.conftest import make_job


def test_a_job_is_stored_read_and_changed_with_its_events(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    assert store.get(job.id) == job and store.active_ids() == [job.id]

    running, changed = store.update(job.id, lambda j: lifecycle.start_trial(j, 0, "task"))
    assert changed and running.status == "running" and store.get(job.id) == running
    assert store.update(job.id, lambda j: lifecycle.start_trial(j, 0, "task")) == (running, False)
    store.update(job.id, lambda j: lifecycle.end_trial(j, 0, "failed"))
    assert store.active_ids() == []  # finished: recovery no longer looks at it

    events = store.events(job.id, after=None, limit=100)
    assert [(e.type, e.message) for e in events.data] == [
        ("status", "queued"),
        ("trial", "trial 0 running (attempt 1): optimizer=adamw, learning_rate=0.003, lr_policy=cosine, batch_size=32"),
        ("status", "running"),
        ("trial", "trial 0 failed"),
        ("status", "failed: no trial succeeded"),
    ]
    page = store.events(job.id, after=None, limit=2)
    rest = store.events(job.id, after=page.next_after, limit=10)
    assert [e.id for e in page.data + rest.data] == [e.id for e in events.data] and rest.finished
    assert not page.finished


def test_concurrent_changes_are_never_lost(store: JobStore) -> None:
    job = make_job(trials=8)
    store.create(job)

    def start(index: int) -> None:
        store.update(job.id, lambda j: lifecycle.start_trial(j, index, f"task-{index}"))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [t.status for t in store.get(job.id).trials] == ["running"] * 8


def test_pages_run_newest_first_and_filter_by_status_and_metadata(store: JobStore) -> None:
    jobs = []
    for i in range(5):
        time.sleep(0.002)  # ids order jobs by their creation millisecond
        jobs.append(make_job(metadata={"team": "shoes" if i % 2 else "bags"}))
        store.create(jobs[-1])
    store.update(jobs[4].id, lambda j: msgspec.structs.replace(j, status="cancelled"))
    newest_first = [job.id for job in reversed(jobs)]

    first = store.page(cursor=None, limit=2)
    second = store.page(cursor=first.next_cursor, limit=2)
    third = store.page(cursor=second.next_cursor, limit=2)
    assert [j.id for j in first.data + second.data + third.data] == newest_first and third.next_cursor is None
    assert [j.id for j in store.page(cursor=None, limit=10, status="cancelled").data] == [jobs[4].id]
    shoes = store.page(cursor=None, limit=10, metadata={"team": "shoes"}).data
    assert [j.id for j in shoes] == [jobs[3].id, jobs[1].id]


def test_unknown_ids_and_a_silent_redis_are_named(store: JobStore) -> None:
    with pytest.raises(JobNotFound, match="no fine-tuning job 'ft_000000000000aaaaaaaaaa'"):
        store.get("ft_000000000000aaaaaaaaaa")
    with pytest.raises(JobNotFound):
        store.get("../../etc/passwd")
    dead = JobStore(f"redis://:secret@127.0.0.1:{free_port()}/0")
    with pytest.raises(JobStoreUnavailable, match=r"Redis at redis://127.0.0.1:\d+/0\) does not answer") as error:
        dead.get(make_job().id)
    assert "secret" not in str(error.value)


def test_epoch_rows_and_the_cancel_flag(store: JobStore) -> None:
    job: Job = make_job()
    store.create(job)
    store.add_epoch(job.id, {"trial": 0, "epoch": 1, "val_accuracy": 0.5}, "trial 0 epoch 1")
    assert store.epochs(job.id) == [{"trial": 0, "epoch": 1, "val_accuracy": 0.5}]
    assert store.events(job.id, after=None, limit=10).data[-1].type == "epoch"
    assert not store.cancel_requested(job.id)
    store.request_cancel(job.id)
    assert store.cancel_requested(job.id)
