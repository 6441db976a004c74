import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from pytest import MonkeyPatch

from service.cli import cli
from tests.redis_server import free_port


def test_the_worker_says_it_needs_redis(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.delenv("IMGCLS_REDIS_URL", raising=False)
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 2 and "IMGCLS_REDIS_URL is not set" in result.output


@pytest.mark.parametrize(
    ("redis_url", "problem"),
    [
        ("not-a-url", "not a Redis URL (Redis URL must specify one of the following schemes"),
        ("redis://:secret@127.0.0.1:{port}/0", "Redis does not answer a PING (Error 111 connecting to 127.0.0.1"),
    ],
)
def test_a_wrong_redis_url_stops_the_worker_with_one_line(redis_url: str, problem: str) -> None:
    url = redis_url.format(port=free_port())  # a port nothing listens on
    env = os.environ | {"IMGCLS_REDIS_URL": url}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "worker"], env=env, capture_output=True, text=True, timeout=30
    )
    shown = url.replace(":secret@", "")  # the password is never printed
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: IMGCLS_REDIS_URL={shown}: {problem}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
