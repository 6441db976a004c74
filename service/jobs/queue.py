"""The Celery side both processes share: the broker settings, the task names, and sending a trial.

The API only *sends* tasks, by name, so it needs Celery's client side and none of the training code; the
worker (training/worker/) registers the functions under the same names with the same settings.
"""

from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from service.jobs.errors import JobStoreUnavailable

RUN_TRIAL = "imgcls.fine_tuning.run_trial"  # args: job id, trial index
FINISH_JOB = "imgcls.fine_tuning.finish_job"  # args: job id; publishes the best trial once all have ended
VISIBILITY_MARGIN_S = 600


def celery_config(*, redis_url: str, queue: str, max_seconds: int) -> dict[str, Any]:
    """What producer and worker must agree on: the broker (``redis_url``), the ``queue`` jobs go to, and a
    visibility timeout longer than the longest allowed trial (``max_seconds``). An unacknowledged task returns
    to the queue after that timeout, so a slow trial is never run twice at once because of it (a *lost*
    worker's trial is requeued sooner, by heartbeat; see service/jobs/recovery.py)."""
    return {
        "broker_url": redis_url,
        "broker_transport_options": {"visibility_timeout": max_seconds + VISIBILITY_MARGIN_S},
        "broker_connection_retry_on_startup": True,
        "task_default_queue": queue,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # outcomes live in the job record, not in a result backend
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    }


class JobQueue:
    """The API's side: sends tasks to ``queue`` on the broker at ``redis_url``."""

    def __init__(self, redis_url: str, *, queue: str, max_seconds: int) -> None:
        self.app = Celery("imgcls-api", set_as_current=False)
        self.app.conf.update(celery_config(redis_url=redis_url, queue=queue, max_seconds=max_seconds))
        self.queue = queue

    def send(self, task: str, *args: Any) -> str:
        """Enqueue ``task``; its id. Raises ``JobStoreUnavailable`` when the broker does not take it."""
        try:
            return str(self.app.send_task(task, args=list(args), queue=self.queue).id)
        except OperationalError as exc:
            raise JobStoreUnavailable(f"the job queue (Redis) does not take the task: {exc}") from exc

    def terminate(self, task_ids: list[str]) -> None:
        """The last resort of a cancel: the worker kills the process running these tasks."""
        self.app.control.revoke(task_ids, terminate=True, signal="SIGTERM")
