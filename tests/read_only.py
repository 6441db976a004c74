"""A folder made read-only for real, root included: a read-only bind mount of the folder onto itself, as a
volume mounted ``:ro`` into a container. Writes inside it fail with EROFS until the context ends."""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """Mounting needs root, which CI on this kind of machine has; elsewhere the test is skipped and says why."""
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"a read-only bind mount needs root: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
