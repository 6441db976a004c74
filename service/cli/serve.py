"""``imgcls serve``: run the API with uvicorn, one app (and one set of onnxruntime sessions) per process.

The settings are built and checked once, here; each server process builds its app from that very object
(``create_app(settings)``), never from the environment. With several workers the socket is bound once and
uvicorn's supervisor starts the processes (spawned, so the settings travel pickled), restarts one that
dies, and stops them all on SIGINT or SIGTERM.
"""

import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from service.settings import NoApiKeys, ServiceSettings, check_keys

if TYPE_CHECKING:
    from litestar import Litestar

PROTOCOL = "service.api.fastpath.protocol:OneWriteHttpToolsProtocol"  # one write per response (see that module)


@click.command()
@click.option("--host", help="Interface to listen on [env IMGCLS_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port [env IMGCLS_PORT, default 8000].")
@click.option("--workers", type=click.IntRange(min=1), help="Server processes [env IMGCLS_WORKERS, default 1].")
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
@click.option("--no-auth", is_flag=True, help="Serve without API keys (local use only) [env IMGCLS_AUTH_ENABLED].")
@click.option("--access-log/--no-access-log", default=False, help="One log line per request (off: it costs speed).")
@click.option(
    "--pin/--no-pin",
    default=False,
    show_default=True,
    help="With several workers, pin each process to its own CPU core (a machine the server has to itself).",
)
def serve(
    host: str | None,
    port: int | None,
    workers: int | None,
    model_root: Path | None,
    no_auth: bool,
    access_log: bool,
    pin: bool,
) -> None:
    """Serve the repository's models over HTTP: /v1 (native), /v2 (KServe), /metrics, /schema.

    Every setting comes from the environment (IMGCLS_*, see docs/operations.md); these options override
    it. Each worker process loads its own copy of every model: on a GPU host run one process per GPU.
    """
    options: dict[str, Any] = {"host": host, "port": port, "workers": workers, "model_root": model_root}
    if no_auth:
        options["auth_enabled"] = False
    settings = ServiceSettings(**{name: value for name, value in options.items() if value is not None})
    try:  # before any worker starts
        check_keys(auth_enabled=settings.auth_enabled, api_keys=settings.api_keys)
    except NoApiKeys as error:
        raise click.UsageError(str(error)) from error
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # prometheus_client reads this variable itself (in every worker, at import) to share one set of
        # metrics between processes: the one setting that has to travel through the environment.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="imgcls-metrics-")
    if pin and settings.workers > 1 and settings.cpu_slots_dir is None:
        if settings.workers <= len(os.sched_getaffinity(0)):
            settings = settings.model_copy(update={"cpu_slots_dir": Path(tempfile.mkdtemp(prefix="imgcls-cpus-"))})
        else:
            click.echo(f"imgcls: {settings.workers} workers on fewer cores: not pinning them", err=True)
    url = f"http://{settings.host}:{settings.port}"
    click.echo(
        f"imgcls: serving {settings.model_root} at {url} with {settings.workers} process(es); "
        f"API docs {url}/schema; auth {'on' if settings.auth_enabled else 'OFF (local use only)'}",
        err=True,
    )
    run(settings, access_log=access_log)


def build_app(settings: ServiceSettings) -> "Litestar":
    """``create_app(settings)``, imported here: the supervisor of several workers never loads the API itself."""
    from service.api.app import create_app

    return create_app(settings)


def run(settings: ServiceSettings, *, access_log: bool) -> None:
    """Serve until SIGINT or SIGTERM, then finish the requests in flight (up to 30 s) and return."""
    config = uvicorn.Config(
        functools.partial(build_app, settings),  # picklable: spawned workers each build their own app
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=PROTOCOL,
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=30,
    )
    if settings.workers == 1:
        server = uvicorn.Server(config)
        server.run()  # in this process; on a signal it shuts down, then re-raises the signal on itself
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    Multiprocess(config, sockets=[config.bind_socket()]).run()
