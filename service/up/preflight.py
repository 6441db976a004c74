"""What ``imgcls up`` checks before it starts anything, so a problem is one line and nothing is half-started."""

import errno
import fcntl
import os
import re
import shutil
import socket
from pathlib import Path

from service.up.errors import CannotStart, FoldersInUse, MissingProgram, PortInUse

REDIS_INSTALL = "sudo apt-get install redis-server (Debian, Ubuntu), or set IMGCLS_REDIS_URL to a Redis of yours"


def lock_folders(folders: list[Path]) -> list[int]:
    """An exclusive ``flock`` on each folder itself (created when missing; no file is written into it), held for
    as long as this process runs: the descriptors, which children do not inherit. Raises ``FoldersInUse``
    naming the first folder another process holds, and then holds none."""
    held: list[int] = []
    for folder in dict.fromkeys(path.resolve() for path in folders):  # one lock per folder, even if named twice
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            for other in [descriptor, *held]:
                os.close(other)
            raise FoldersInUse(
                f"{folder} is in use by another imgcls up{holder(folder)}: stop that one first (Ctrl+C where it "
                "runs), or give this one other folders "
                "(IMGCLS_MODEL_ROOT, IMGCLS_DATA_ROOT, IMGCLS_FEEDBACK_ROOT, IMGCLS_VAR_DIR)"
            ) from None
        held.append(descriptor)
    return held


def holder(folder: Path) -> str:
    """`` (pid N)`` of the process holding the flock on ``folder``, from /proc/locks; "" when unknown."""
    inode = os.stat(folder).st_ino
    try:
        locks = Path("/proc/locks").read_text()
    except OSError:
        return ""
    found = re.search(rf"^\d+: FLOCK\s+ADVISORY\s+WRITE\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:{inode}\s", locks, re.MULTILINE)
    return f" (pid {found[1]})" if found else ""


def check_port(host: str, port: int) -> None:
    """Raise ``PortInUse`` unless the API could listen on ``host``:``port`` (the same socket options as uvicorn)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {host} is in use (another server, or another imgcls up): stop it, "
                    "or choose another port with --port"
                ) from None
            raise CannotStart(f"cannot listen on {host}:{port}: {error.strerror}") from None


def redis_server_program() -> str:
    program = shutil.which("redis-server")
    if program is None:
        raise MissingProgram(f"imgcls up starts Redis, and redis-server is not installed: {REDIS_INSTALL}")
    return program


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the embedded Redis)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
