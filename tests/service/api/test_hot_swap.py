"""Promotions under load: no request fails, and every replica follows alias changes made elsewhere."""

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest

from service.repository import ModelRepository
from service.repository.notify import announce_change
from service.settings import ServiceSettings
from tests.service.api.server import running_server

MODEL = "fashion-mnist"


def served_version(server: str, png: bytes) -> int:
    response = httpx.post(f"{server}/v1/models/{MODEL}/classify", content=png, headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def wait_for_version(server: str, png: bytes, version: int, within_s: float) -> float:
    started = time.monotonic()
    while served_version(server, png) != version:
        assert time.monotonic() - started < within_s, f"still not serving v{version} after {within_s} s"
        time.sleep(0.05)
    return time.monotonic() - started


async def hammer(server: str, png: bytes, stop: asyncio.Event, statuses: list[int], versions: set[int]) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        while not stop.is_set():
            response = await client.post(
                f"/v1/models/{MODEL}/classify", content=png, headers={"content-type": "image/png"}
            )
            statuses.append(response.status_code)
            if response.status_code == 200:
                versions.add(response.json()["version"])


def test_no_request_fails_during_a_promotion_and_a_rollback_under_load(server: str, png: bytes) -> None:
    async def scenario() -> tuple[list[int], set[int], list[httpx.Response]]:
        stop = asyncio.Event()
        statuses: list[int] = []
        versions: set[int] = set()
        clients = [asyncio.create_task(hammer(server, png, stop, statuses, versions)) for _ in range(16)]
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=server, timeout=60) as admin:
            promoted = await admin.post(f"/v1/models/{MODEL}/promote", json={"version": 2})
            await asyncio.sleep(1.0)
            rolled_back = await admin.post(f"/v1/models/{MODEL}/promote", json={"version": 1})
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*clients)
        return statuses, versions, [promoted, rolled_back]

    statuses, versions, (promoted, rolled_back) = asyncio.run(scenario())
    assert promoted.status_code == 200 and promoted.json()["serving_version"] == 2, promoted.text
    assert rolled_back.status_code == 200 and rolled_back.json()["serving_version"] == 1, rolled_back.text
    assert len(statuses) > 100
    assert set(statuses) == {200}
    assert versions == {1, 2}
    assert served_version(server, png) == 1


def test_a_server_follows_an_alias_moved_by_another_process_by_polling(
    service_settings: ServiceSettings, png: bytes
) -> None:
    with running_server(service_settings.model_copy(update={"watch_interval_s": 0.5})) as server:
        assert served_version(server, png) == 1
        ModelRepository(service_settings.model_root).set_alias(MODEL, "production", 2)
        wait_for_version(server, png, 2, within_s=5)


def test_imgcls_models_promote_elsewhere_swaps_at_once_through_redis(
    service_settings: ServiceSettings, png: bytes, redis_url: str
) -> None:
    settings = service_settings.model_copy(update={"watch_interval_s": 300, "redis_url": redis_url})  # no polling
    with running_server(settings) as server:
        assert served_version(server, png) == 1
        time.sleep(0.3)  # let the subscription settle
        env = {**os.environ, "IMGCLS_REDIS_URL": redis_url, "IMGCLS_MODEL_ROOT": str(service_settings.model_root)}
        promote = [sys.executable, "-m", "service.cli", "models", "promote", MODEL, "2"]
        subprocess.run(promote, env=env, check=True, capture_output=True, timeout=60)
        assert wait_for_version(server, png, 2, within_s=3) < 3


def test_a_redis_outage_is_logged_and_the_promotion_stands(
    service_settings: ServiceSettings, caplog: pytest.LogCaptureFixture
) -> None:
    repository = ModelRepository(service_settings.model_root)
    repository.set_alias(MODEL, "production", 2)
    announce_change("redis://127.0.0.1:1/0", MODEL)  # nothing listens there
    assert "servers will notice by polling" in caplog.text
    assert repository.resolve(MODEL) == 2
