"""The Celery side both processes share: the broker settings, the task names, and sending a trial.

The API only *sends* tasks, by name, so it needs Celery's client side and none of the training code; the
worker (training/worker/) registers the functions under the same names with the same settings.
"""

from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from service.jobs.errors import JobStoreUnavailable
from service.settings import JobSettings

RUN_TRIAL = "imgcls.fine_tuning.run_trial"  # args: job id, trial index
FINISH_JOB = "imgcls.fine_tuning.finish_job"  # args: job id; publishes the best trial once all have ended
VISIBILITY_MARGIN_S = 600


def celery_config(settings: JobSettings) -> dict[str, Any]:
    """What producer and worker must agree on. An unacknowledged task returns to the queue after the
    visibility timeout, so it is longer than the longest allowed trial: a slow trial is never run twice at
    once because of it (a *lost* worker's trial is requeued sooner, by heartbeat; see service/jobs/recovery.py)."""
    visibility_timeout = settings.job_max_seconds + VISIBILITY_MARGIN_S
    return {
        "broker_url": settings.redis_url,
        "broker_transport_options": {"visibility_timeout": visibility_timeout},
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.job_queue,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # outcomes live in the job record, not in a result backend
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    }


class JobQueue:
    def __init__(self, settings: JobSettings) -> None:
        if not settings.redis_url:
            raise JobStoreUnavailable("fine-tuning jobs need Redis: set IMGCLS_REDIS_URL")
        self.app = Celery("imgcls-api", set_as_current=False)
        self.app.conf.update(celery_config(settings))
        self.queue = settings.job_queue

    def send(self, task: str, *args: Any) -> str:
        """Enqueue ``task``; its id. Raises ``JobStoreUnavailable`` when the broker does not take it."""
        try:
            return str(self.app.send_task(task, args=list(args), queue=self.queue).id)
        except OperationalError as exc:
            raise JobStoreUnavailable(f"the job queue (Redis) does not take the task: {exc}") from exc

    def terminate(self, task_ids: list[str]) -> None:
        """The last resort of a cancel: the worker kills the process running these tasks."""
        self.app.control.revoke(task_ids, terminate=True, signal="SIGTERM")
