"""What ``imgcls up`` checks before it starts anything: its folders are no other ``up``'s, its port is free."""

import os
import socket
from pathlib import Path

import pytest

from service.up.errors import FoldersInUse, PortInUse
from service.up.preflight import check_port, lock_folders


def test_folders_are_locked_until_released_and_a_second_claim_names_the_holder(tmp_path: Path) -> None:
    models, data = tmp_path / "models", tmp_path / "data"
    held = lock_folders([models, data, models])  # a folder named twice is locked once
    assert len(held) == 2 and models.is_dir() and data.is_dir()
    assert list(models.iterdir()) == []  # nothing written into the repository

    with pytest.raises(FoldersInUse, match=rf"^{data} is in use by another imgcls up \(pid {os.getpid()}\): "):
        lock_folders([tmp_path / "other", data])
    again = lock_folders([tmp_path / "other"])  # the refused claim let go of what it had taken

    for descriptor in [*held, *again]:
        os.close(descriptor)
    for descriptor in lock_folders([models, data]):
        os.close(descriptor)


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(PortInUse, match=rf"^port {port} on 127\.0\.0\.1 is in use "):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", port)
