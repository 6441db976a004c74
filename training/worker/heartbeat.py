"""A thread that tells Redis "this worker still runs it" while a trial or a publishing step runs.

The key expires ``job_lost_after_s`` after the last beat, so a worker that dies (SIGKILL, a lost node)
stops being alive within that time and recovery requeues its work. A beat that fails (Redis restarting)
is retried at the next interval; training goes on.
"""

import logging
import threading
from types import TracebackType

from service.jobs.errors import JobStoreUnavailable
from service.jobs.store import JobStore, worker_name

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, store: JobStore, job_id: str, name: str, *, interval_s: float, ttl_s: float) -> None:
        self.store, self.job_id, self.name = store, job_id, name
        self.interval_s, self.ttl_s = interval_s, ttl_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}-{name}", daemon=True)

    def beat(self) -> None:
        try:
            self.store.beat(self.job_id, self.name, worker_name(), self.ttl_s)
        except JobStoreUnavailable as exc:
            log.warning("heartbeat of job %s (%s) failed; retrying: %s", self.job_id, self.name, exc)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.beat()

    def __enter__(self) -> "Heartbeat":
        self.beat()
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stopped.set()
        self.thread.join()
