"""``imgcls serve``: run the API with uvicorn, one app (and one set of onnxruntime sessions) per process."""

import os
import tempfile
from pathlib import Path

import click
import uvicorn

from service.settings import ServiceSettings


@click.command()
@click.option("--host", help="Interface to listen on [env IMGCLS_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port [env IMGCLS_PORT, default 8000].")
@click.option("--workers", type=click.IntRange(min=1), help="Server processes [env IMGCLS_WORKERS, default 1].")
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
@click.option("--no-auth", is_flag=True, help="Serve without API keys (local use only) [env IMGCLS_AUTH_ENABLED].")
@click.option("--access-log/--no-access-log", default=False, help="One log line per request (off: it costs speed).")
@click.option(
    "--pin/--no-pin", default=False, show_default=True,
    help="With several workers, pin each process to its own CPU core (a machine the server has to itself).",
)  # fmt: skip
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
    overrides = {"HOST": host, "PORT": port, "WORKERS": workers, "MODEL_ROOT": model_root}
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"IMGCLS_{key}"] = str(value)
    if no_auth:
        os.environ["IMGCLS_AUTH_ENABLED"] = "false"
    settings = ServiceSettings()  # validated here, so a bad setting fails before any worker starts
    if settings.auth_enabled and not settings.api_keys:
        raise click.UsageError(
            "auth is on but IMGCLS_API_KEYS is empty: create a key with 'imgcls api-key new', "
            "or pass --no-auth for local use"
        )
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="imgcls-metrics-")
    if pin and settings.workers > 1 and settings.cpu_slots_dir is None:
        if settings.workers <= len(os.sched_getaffinity(0)):
            os.environ["IMGCLS_CPU_SLOTS_DIR"] = tempfile.mkdtemp(prefix="imgcls-cpus-")
        else:
            click.echo(f"imgcls: {settings.workers} workers on fewer cores: not pinning them", err=True)
    url = f"http://{settings.host}:{settings.port}"
    click.echo(
        f"imgcls: serving {settings.model_root} at {url} with {settings.workers} process(es); "
        f"API docs {url}/schema; auth {'on' if settings.auth_enabled else 'OFF (local use only)'}",
        err=True,
    )
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="service.api.fastpath.protocol:OneWriteHttpToolsProtocol",
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=30,
    )
