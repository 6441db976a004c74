"""``imgcls up``: Redis, the API and the fine-tuning workers on this machine, as one supervised unit.

What ``deploy/compose.yaml`` does with containers, done with child processes (``service/up/``): an
embedded ``redis-server`` (unless ``IMGCLS_REDIS_URL`` names a Redis), ``imgcls serve`` and ``imgcls
worker`` processes sharing the model repository and the data root. The children run this same Python
(``python -m service.cli``), so this module imports no training code.
"""

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
import httpx

from service.cli import TRAINING_INSTALL, can_train
from service.cli.errors import UserError
from service.cli.redis_url import check_redis
from service.jobs.errors import JobStoreUnavailable
from service.jobs.store import JobStore, redact, worker_name
from service.settings import NoApiKeys, UpSettings, check_keys
from service.up.embedded_redis import EmbeddedRedis
from service.up.errors import CannotStart
from service.up.preflight import check_port, lock_folders, redis_server_program
from service.up.supervisor import Part, Supervisor

WORKER_GRACE_S = 60.0  # a running trial gets this long to finish before it goes back to the queue
API_GRACE_S = 35.0  # the server finishes the requests in flight (30 s), then exits


def say(line: str) -> None:
    click.echo(f"imgcls up: {line}", err=True)


@click.command()
@click.option("--host", help="Interface the API listens on [env IMGCLS_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="The API's port [env IMGCLS_PORT, default 8000].")
@click.option("--workers", type=click.IntRange(min=1), help="API server processes [env IMGCLS_WORKERS, default 1].")
@click.option(
    "--job-workers",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Fine-tuning workers (imgcls worker processes); 0: jobs wait in the queue.",
)
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
@click.option("--no-auth", is_flag=True, help="Serve without API keys (local use only) [env IMGCLS_AUTH_ENABLED].")
def up(
    host: str | None, port: int | None, workers: int | None, job_workers: int, model_root: Path | None, no_auth: bool
) -> None:
    """Run the whole product on this machine: Redis, the API and fine-tuning workers, as one unit.

    Redis is started here (redis-server, its data in IMGCLS_VAR_DIR/redis, append-only, on 127.0.0.1 with a
    password made for this run) unless IMGCLS_REDIS_URL names one. Each part's output goes to
    IMGCLS_VAR_DIR/logs/. A part that dies is restarted. Ctrl+C or SIGTERM stops the API, then the workers
    (a running trial finishes, up to a minute, else it goes back to the queue; a second Ctrl+C: at once),
    then Redis, and exits 0. One imgcls up per set of folders: a second one refuses to start.
    """
    options: dict[str, Any] = {"host": host, "port": port, "workers": workers, "model_root": model_root}
    if no_auth:
        options["auth_enabled"] = False
    settings = UpSettings(**{name: value for name, value in options.items() if value is not None})
    try:
        check_keys(auth_enabled=settings.auth_enabled, api_keys=settings.api_keys)
    except NoApiKeys as error:
        raise click.UsageError(str(error)) from error
    if job_workers and not can_train():
        raise UserError(
            f"imgcls up starts fine-tuning workers, which need the training dependencies: {TRAINING_INSTALL}; "
            "or run imgcls up --job-workers 0 (classification only: jobs wait in the queue)"
        )
    program = None if settings.redis_url else redis_server_program()
    folders = (settings.var_dir, settings.model_root, settings.data_root, settings.feedback_root)
    var_dir, model_root_dir, data_root, feedback_root = (folder.resolve() for folder in folders)
    locks = lock_folders([model_root_dir, data_root, feedback_root, var_dir])
    try:
        check_port(settings.host, settings.port)
        if settings.redis_url:
            check_redis(settings.redis_url)
        run(
            settings,
            program,
            job_workers,
            var_dir=var_dir,
            model_root=model_root_dir,
            data_root=data_root,
            feedback_root=feedback_root,
        )
    finally:
        for descriptor in locks:
            os.close(descriptor)


def run(
    settings: UpSettings,
    program: str | None,
    job_workers: int,
    *,
    var_dir: Path,
    model_root: Path,
    data_root: Path,
    feedback_root: Path,
) -> None:
    embedded = EmbeddedRedis.new(var_dir / "redis") if program is not None else None
    redis_url = embedded.url if embedded is not None else settings.redis_url
    assert redis_url is not None
    env = {
        **os.environ,
        "IMGCLS_REDIS_URL": redis_url,
        "IMGCLS_MODEL_ROOT": str(model_root),
        "IMGCLS_DATA_ROOT": str(data_root),
        "IMGCLS_FEEDBACK_ROOT": str(feedback_root),
    }
    logs = var_dir / "logs"
    store = JobStore(redis_url)
    parts: list[Part] = []
    if embedded is not None and program is not None:
        (var_dir / "redis").mkdir(parents=True, exist_ok=True)
        parts.append(redis_part(embedded, program, env, logs))
    else:
        say(f"redis     {redact(redis_url)} (IMGCLS_REDIS_URL: not started here)")
    parts += [worker_part(index, env, logs, store) for index in range(1, job_workers + 1)]
    parts.append(api_part(settings, env, logs))

    stopping, hurry = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        (hurry if stopping.is_set() else stopping).set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor = Supervisor(parts, say=say)
    try:
        supervisor.start(stopping)
    except CannotStart:
        hurry.set()
        supervisor.stop(hurry)
        store.close()
        raise
    if not stopping.is_set():
        url = f"http://{settings.host}:{settings.port}"
        jobs = "fine-tuning jobs on" if job_workers else "no fine-tuning worker (--job-workers 0): jobs wait"
        say(f"web page {url}/ui · API docs {url}/schema · readiness {url}/healthz/ready · {jobs}")
        say(f"logs in {logs}; stop with Ctrl+C")
        supervisor.watch(stopping)
    supervisor.stop(hurry)
    store.close()
    say("stopped")


def redis_part(embedded: EmbeddedRedis, program: str, env: dict[str, str], logs: Path) -> Part:
    def ready(pid: int) -> str | None:
        if not embedded.answers():
            return None
        return f"127.0.0.1:{embedded.port} (embedded; data in {embedded.folder}, append-only)"

    return Part(
        name="redis",
        kind="redis",
        command=embedded.command(program),
        env=env,
        log=logs / "redis.log",
        ready=ready,
        first=True,
        stdin=embedded.configuration(),
        ready_timeout_s=60.0,  # a large append-only file takes a while to load
        stop_note="saving its data",
    )


def worker_part(index: int, env: dict[str, str], logs: Path, store: JobStore) -> Part:
    def ready(pid: int) -> str | None:
        try:
            return f"ready (pid {pid})" if worker_name(pid) in store.live_workers() else None
        except JobStoreUnavailable:
            return None

    return Part(
        name=f"worker {index}",
        kind="worker",
        command=[sys.executable, "-m", "service.cli", "worker"],
        env=env,
        log=logs / f"worker-{index}.log",
        ready=ready,
        stop_timeout_s=WORKER_GRACE_S,
        stop_note=f"a running trial finishes, up to {WORKER_GRACE_S:g} s; Ctrl+C again: back to the queue now",
        hurry_signal=signal.SIGQUIT,  # Celery's cold shutdown: the unfinished trial is requeued
    )


def api_part(settings: UpSettings, env: dict[str, str], logs: Path) -> Part:
    url = f"http://{settings.host}:{settings.port}"
    command = [sys.executable, "-m", "service.cli", "serve", "--host", settings.host, "--port", str(settings.port)]
    command += ["--workers", str(settings.workers)]
    if not settings.auth_enabled:
        command.append("--no-auth")

    def ready(pid: int) -> str | None:
        try:
            answer = httpx.get(f"{url}/healthz/ready", timeout=2)
        except httpx.HTTPError:
            return None
        processes = f"{settings.workers} process{'es' if settings.workers > 1 else ''}"
        if answer.status_code == 200:
            return f"{url} ({processes}; auth {auth(settings)})"
        reason = str(answer.json().get("reason", ""))
        if answer.status_code == 503 and not reason.startswith("loading"):  # the models are loaded: as far as it goes
            return f"{url} ({processes}; auth {auth(settings)}), but not ready: {reason}"
        return None

    return Part(
        name="api",
        kind="api",
        command=command,
        env=env,
        log=logs / "api.log",
        ready=ready,
        stop_timeout_s=API_GRACE_S,
        stop_note="requests in flight finish",
    )


def auth(settings: UpSettings) -> str:
    return "on" if settings.auth_enabled else "OFF, local use only"
