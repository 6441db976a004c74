"""A real uvicorn server on a free port, in a thread, around an app built by ``create_app``; and waiting
for an ``imgcls serve`` process a test started to become ready."""

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from service.api.app import create_app
from service.api.fastpath.protocol import OneWriteHttpToolsProtocol
from service.settings import ServiceSettings


@contextmanager
def running_server(settings: ServiceSettings, *, wait_ready: bool = True, **uvicorn_options: Any) -> Iterator[str]:
    """Serve ``create_app(settings)``; yield the base URL once it is ready (or merely listening).

    ``uvicorn_options`` override the defaults below (as ``imgcls serve`` runs it, quieter)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    options = {"log_level": "warning", "loop": "uvloop", "http": OneWriteHttpToolsProtocol} | uvicorn_options
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        if wait_ready:
            while httpx.get(f"{url}/healthz/ready").status_code != 200:
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def wait_until_ready(url: str, process: subprocess.Popen[Any], *, log: Path | None = None) -> None:
    """Poll ``url``/healthz/ready until it answers 200 (60 s at most, and only while ``process`` runs)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        running = process.poll() is None
        assert time.monotonic() < deadline and running, "imgcls serve did not become ready" + (
            f":\n{log.read_text()}" if log is not None else ""
        )
        time.sleep(0.1)
