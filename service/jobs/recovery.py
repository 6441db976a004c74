"""Finding jobs whose worker vanished, so no job stays ``running`` (or ``cancelling``) forever.

The API runs ``recover`` every ``job_recovery_interval_s`` (each process; the changes are atomic, so only
one of them acts on a job). A running trial whose heartbeat key expired (no beat for ``job_lost_after_s``)
goes back to the queue, or fails once it used ``job_max_attempts`` deliveries; a publishing step whose
worker vanished is queued again; a cancel that running trials ignored for ``job_cancel_grace_s`` ends with
their tasks terminated. The task a lost worker held stays unacknowledged in Redis and comes back after the
visibility timeout; by then its trial has ended and the delivery does nothing.
"""

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from service.jobs import lifecycle
from service.jobs.errors import JobNotFound, JobStoreUnavailable
from service.jobs.queue import FINISH_JOB, RUN_TRIAL, JobQueue
from service.jobs.store import JobStore

log = logging.getLogger(__name__)
FINISHING = "finish"  # the heartbeat name of a publishing step (trials beat under their index)


def seconds_since(timestamp: str | None) -> float:
    if timestamp is None:
        return 0.0
    return (datetime.now(UTC) - datetime.fromisoformat(timestamp)).total_seconds()


def recover(store: JobStore, queue: JobQueue, *, max_attempts: int, cancel_grace_s: float) -> list[str]:
    """One pass over the unfinished jobs; what it did, one line each (also logged). A lost trial fails
    after ``max_attempts`` deliveries; a cancel ignored for ``cancel_grace_s`` terminates its tasks."""
    done: list[str] = []
    for job_id in store.active_ids():
        try:
            job = store.get(job_id)
        except JobNotFound:
            continue
        for trial in job.trials:
            if trial.status == "running" and not store.alive(job_id, str(trial.index)):
                index = trial.index
                requeue = functools.partial(lifecycle.requeue_lost_trial, index=index, max_attempts=max_attempts)
                job, changed = store.update(job_id, requeue)
                if changed:
                    now_status = job.trials[index].status
                    if now_status == "queued":
                        queue.send(RUN_TRIAL, job_id, index)
                    done.append(f"{job_id}: trial {index}'s worker was lost; trial {now_status}")
        if job.finishing == "running" and not store.alive(job_id, FINISHING):
            job, changed = store.update(job_id, lifecycle.requeue_finishing)
            if changed:
                queue.send(FINISH_JOB, job_id)
                done.append(f"{job_id}: the worker publishing it was lost; publishing queued again")
        if job.status == "cancelling" and seconds_since(job.cancel_requested_at) > cancel_grace_s:
            running = [t.task_id for t in job.trials if t.status == "running" and t.task_id]
            job, changed = store.update(job_id, lifecycle.terminate_cancelled)
            if changed:
                if running:
                    queue.terminate(running)
                done.append(f"{job_id}: cancel not honoured in {cancel_grace_s:g} s; tasks terminated")
    for line in done:
        log.warning("job recovery: %s", line)
    return done


async def keep_recovering(
    store: JobStore,
    queue: JobQueue,
    *,
    interval_s: float,
    max_attempts: int,
    cancel_grace_s: float,
    observe: Callable[[dict[str, int], dict[str, int]], None],
) -> None:
    """``recover`` every ``interval_s`` for as long as the API runs, then ``observe`` the jobs counted by
    status, unfinished and finished (for the metrics); Redis being away only delays it."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(recover, store, queue, max_attempts=max_attempts, cancel_grace_s=cancel_grace_s)
            active: dict[str, int] = Counter(str(job.status) for job in await asyncio.to_thread(store.active_jobs))
            observe(active, await asyncio.to_thread(store.finished_counts))
        except JobStoreUnavailable as exc:
            log.info("job recovery skipped: %s", exc)
        except Exception:  # a bug here must not end the loop that keeps jobs from hanging
            log.exception("job recovery failed")
