"""``imgcls worker``: a Celery worker that runs fine-tuning jobs from Redis."""

import os

import click
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.cli.errors import UserError
from service.jobs.store import redact
from training.settings import TrainingSettings
from training.worker.app import create_worker_app

PING_TIMEOUT_S = 3


def check_redis(url: str) -> None:
    """Stop with one line naming IMGCLS_REDIS_URL unless it is a Redis URL and Redis answers a PING: Celery
    would end in a traceback on a malformed URL, and retry for ever on one where nothing answers."""
    setting = f"IMGCLS_REDIS_URL={redact(url)}"
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=PING_TIMEOUT_S, socket_connect_timeout=PING_TIMEOUT_S, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as error:
        raise UserError(f"{setting}: not a Redis URL ({error})") from error
    try:
        with client:
            client.ping()
    except redis.RedisError as error:
        raise UserError(f"{setting}: Redis does not answer a PING ({error})") from error


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
