"""``imgcls worker``: a Celery worker that runs fine-tuning jobs from Redis."""

import os

import click

from service.cli.redis_url import check_redis
from training.settings import TrainingSettings
from training.worker.app import create_worker_app


@click.command("worker")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Trials run at once, each in its own process (one per GPU on GPU hosts).",
)
@click.option("--queue", "-Q", help="Queue to take jobs from [default: IMGCLS_JOB_QUEUE, 'fine-tuning'].")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
def worker(concurrency: int, queue: str | None, loglevel: str) -> None:
    """Run fine-tuning jobs submitted to the API (POST /v1/fine-tuning/jobs).

    Needs IMGCLS_REDIS_URL (the queue and the job store; a URL where Redis does not answer stops the worker
    at once, saying so; once started, it waits for Redis to come back), and the same IMGCLS_MODEL_ROOT and
    IMGCLS_DATA_ROOT as the API (shared volumes in a cluster). Ctrl-C or SIGTERM lets the running trial
    finish first; a second Ctrl-C stops at once, and the trial resumes from its last epoch on another
    worker once its heartbeat has expired.
    """
    settings = TrainingSettings()
    if not settings.redis_url:
        raise click.UsageError("IMGCLS_REDIS_URL is not set: the worker takes its jobs from Redis")
    check_redis(settings.redis_url)
    app = create_worker_app(settings, concurrency=concurrency)
    app.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            "--queues",
            queue or settings.job_queue,
            "--hostname",
            f"imgcls-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
        ]
    )
