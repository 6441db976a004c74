"""promote: the alias moves, then running servers hear of it on Redis (a real redis-server)."""

import time
from pathlib import Path

import pytest
import redis

from service.repository import ModelRepository, VersionNotFound
from service.repository.notify import CHANNEL, promote
from tests.service.repository.manifests import sample_manifest


def test_promote_moves_the_alias_then_announces_it(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    repo = ModelRepository(tmp_path / "models")
    for _ in range(2):
        repo.publish(sample_manifest(), tmp_path / "model.onnx", None)
    with redis.Redis.from_url(redis_url) as client, client.pubsub() as listener:
        listener.subscribe(CHANNEL)
        assert listener.get_message(timeout=2)["type"] == "subscribe"

        promote(repo, "fashion-mnist", 2, alias="staging", redis_url=redis_url)
        assert repo.aliases("fashion-mnist") == {"staging": 2}
        message = listener.get_message(timeout=2)
        assert message is not None and (message["channel"], message["data"]) == (CHANNEL.encode(), b"fashion-mnist")

        with pytest.raises(VersionNotFound):  # nothing moves, nothing is announced
            promote(repo, "fashion-mnist", 7, redis_url=redis_url)
        time.sleep(0.2)
        assert listener.get_message(timeout=0.2) is None
    assert repo.aliases("fashion-mnist") == {"staging": 2}


def test_without_redis_servers_notice_by_polling(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    repo = ModelRepository(tmp_path / "models")
    repo.publish(sample_manifest(), tmp_path / "model.onnx", None)
    promote(repo, "fashion-mnist", 1, redis_url=None)
    assert repo.aliases("fashion-mnist") == {"production": 1}
