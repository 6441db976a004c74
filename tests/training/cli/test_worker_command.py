from click.testing import CliRunner
from pytest import MonkeyPatch

from service.cli import cli


def test_the_worker_says_it_needs_redis(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.delenv("IMGCLS_REDIS_URL", raising=False)
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 2 and "IMGCLS_REDIS_URL is not set" in result.output
