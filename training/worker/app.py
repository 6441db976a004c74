"""The worker's Celery app: the one composition root of a worker process (``imgcls worker``).

Delivery rules (docs/operations.md explains them):
- late acks and ``task_reject_on_worker_lost``: a task is acknowledged when it returns, so a worker that
  dies mid-trial leaves it in Redis; prefetch 1, so a worker holds no task it is not running.
- the soft time limit (``job_max_seconds``) ends a trial as failed with code ``time_limit``; the hard
  limit, a minute later, kills a process that ignored it.
- one task per child process (``worker_max_tasks_per_child=1``): every trial starts in a fresh process
  forked from a parent that imported torch but never initialized CUDA, so CUDA state never crosses a fork
  and memory never accumulates across jobs.
- Redis going away does not stop a running trial: the worker reconnects and the trial records its outcome
  once Redis is back.
- from start to stop the worker says in Redis that it runs (``presence.py``): readiness counts live workers.
"""

from celery import Celery, Task

from service.jobs.errors import JobStoreUnavailable
from service.jobs.queue import FINISH_JOB, RUN_TRIAL, celery_config
from service.jobs.store import JobStore
from training.settings import TrainingSettings
from training.worker.presence import presence_step
from training.worker.runner import JobRunner

HARD_LIMIT_MARGIN_S = 60


def create_worker_app(settings: TrainingSettings, *, concurrency: int = 1) -> Celery:
    if not settings.redis_url:
        raise JobStoreUnavailable("the worker needs Redis: set IMGCLS_REDIS_URL")
    runner = JobRunner(settings)
    app = Celery("imgcls-worker", set_as_current=False)
    app.conf.update(
        celery_config(redis_url=settings.redis_url, queue=settings.job_queue, max_seconds=settings.job_max_seconds)
    )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=concurrency,
        worker_max_tasks_per_child=1,
        task_soft_time_limit=settings.job_max_seconds,
        task_time_limit=settings.job_max_seconds + HARD_LIMIT_MARGIN_S,
        broker_connection_max_retries=None,  # Redis restarting: keep trying, never exit
        worker_cancel_long_running_tasks_on_connection_loss=False,  # and keep the running trial going
        worker_hijack_root_logger=False,
    )
    store = JobStore(settings.redis_url)
    app.steps["worker"].add(presence_step(store, interval_s=settings.job_heartbeat_s, ttl_s=settings.job_lost_after_s))

    @app.task(name=RUN_TRIAL, bind=True)
    def run_trial(task: Task, job_id: str, index: int) -> None:
        runner.run_trial(job_id, index, task.request.id)

    @app.task(name=FINISH_JOB)
    def finish_job(job_id: str) -> None:
        runner.finish_job(job_id)

    return app
