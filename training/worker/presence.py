"""The worker says in Redis that it runs, so readiness (``/healthz/ready``: ``job_workers``), the web page
and ``imgcls up`` can tell whether a queued job will be taken.

A Celery bootstep of the worker's main process: from start to stop a thread renews the presence key every
``job_heartbeat_s``; it expires ``job_lost_after_s`` after the last renewal, so a worker killed outright
stops counting within that time, and one that stops cleanly stops counting at once. A renewal that fails
(Redis restarting) is tried again at the next interval.
"""

import logging
import threading
from typing import Any

from celery import bootsteps

from service.jobs.errors import JobStoreUnavailable
from service.jobs.store import JobStore, worker_name

log = logging.getLogger(__name__)


class Presence:
    def __init__(self, store: JobStore, *, interval_s: float, ttl_s: float) -> None:
        self.store, self.interval_s, self.ttl_s = store, interval_s, ttl_s
        self.name = worker_name()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="worker-presence", daemon=True)

    def say(self) -> None:
        try:
            self.store.worker_present(self.name, self.ttl_s)
        except JobStoreUnavailable as exc:
            log.warning("could not tell Redis this worker runs; retrying: %s", exc)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.say()

    def start(self) -> None:
        self.say()
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        try:
            self.store.worker_left(self.name)
        except JobStoreUnavailable as exc:  # then the key expires on its own
            log.warning("could not tell Redis this worker stops: %s", exc)


def presence_step(store: JobStore, *, interval_s: float, ttl_s: float) -> type[bootsteps.StartStopStep]:
    """The bootstep to add to the worker's blueprint (``app.steps["worker"]``)."""

    class PresenceStep(bootsteps.StartStopStep):
        def create(self, worker: Any) -> Presence:  # started and stopped by the step (cold shutdown too)
            return Presence(store, interval_s=interval_s, ttl_s=ttl_s)

    return PresenceStep
