"""Writing a file so that a reader sees the old content or the new one, never half: the one way imgcls does it.

The content goes to a hidden file beside the target (same folder, so the rename stays on one file system),
is flushed to disk, and is renamed over the target; then the folder itself is flushed, so the rename
survives a crash. A failure at any point removes the hidden file and leaves the target as it was.
"""

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A hidden path beside ``path`` to write; on a clean exit it is flushed and renamed over ``path``.

    For writers that need a path of their own (``torch.save``, ``onnx.save_model``, a file copy)::

        with replacing(target) as staging:
            torch.save(payload, staging)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        yield staging
        with staging.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, path)
        fsync_dir(path.parent)
    finally:
        staging.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` holds ``data``, written beside it and renamed into place."""
    with replacing(path) as staging:
        staging.write_bytes(data)


def write_json_atomic(path: Path, value: Any, *, default: Callable[[Any], Any] | None = None) -> None:
    """``value`` as indented JSON with a final newline, written atomically."""
    write_atomic(path, (json.dumps(value, indent=2, default=default) + "\n").encode())


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``lock`` (made if missing): one holder at a time, across processes.
    Not re-entrant: a process that takes it twice waits for itself."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
