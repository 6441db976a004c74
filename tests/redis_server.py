"""A private redis-server per test session (or per test), on a free port, so runs never share state."""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """redis-server in ``folder``; ``persistent`` keeps an append-only file there, so a restart (``stop``
    then ``start``) keeps every key, as a production Redis configured by deploy/ does."""

    def __init__(self, folder: Path, *, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/test.sh installs it with apt)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(folder),
            "--appendonly",
            "yes" if persistent else "no",
            "--appendfsync",
            "always",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: a clean shutdown that flushes the append-only file
            self.process.wait(timeout=10)
            self.process = None


@contextmanager
def redis_server(folder: Path, *, persistent: bool = False) -> Iterator[RedisServer]:
    """Start redis-server in ``folder``; yield it (``.url``); stop it."""
    server = RedisServer(folder, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()
