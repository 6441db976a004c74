import time
from collections.abc import Iterator

import httpx
import pytest

from service.api.auth import key_hash, new_key
from service.settings import ApiKey, ServiceSettings
from tests.service.api.server import running_server

MODEL = "fashion-mnist"
CLASSIFY_KEY = new_key()
ADMIN_KEY = new_key()


def keyed(settings: ServiceSettings, **update: object) -> ServiceSettings:
    keys = (
        ApiKey(name="app", sha256=key_hash(CLASSIFY_KEY), scopes=frozenset({"classify"})),
        ApiKey(name="ops", sha256=key_hash(ADMIN_KEY), scopes=frozenset({"classify", "admin"})),
    )
    return settings.model_copy(update={"auth_enabled": True, "api_keys": keys, **update})


@pytest.fixture
def secured(service_settings: ServiceSettings) -> Iterator[str]:
    with running_server(keyed(service_settings)) as url:
        yield url


def classify(server: str, png: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{server}/v1/models/{MODEL}/classify", content=png, headers={"content-type": "image/png", **headers}
    )


def test_keys_and_scopes(secured: str, png: bytes) -> None:
    missing = classify(secured, png, {})
    assert missing.status_code == 401
    assert "API key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert classify(secured, png, {"authorization": "Bearer wrong"}).status_code == 401
    assert classify(secured, png, {"authorization": f"Bearer {CLASSIFY_KEY}"}).status_code == 200
    assert classify(secured, png, {"x-api-key": CLASSIFY_KEY}).status_code == 200

    promote = f"{secured}/v1/models/{MODEL}/promote"
    forbidden = httpx.post(promote, json={"version": 1}, headers={"authorization": f"Bearer {CLASSIFY_KEY}"})
    assert forbidden.status_code == 403
    assert "'admin' scope" in forbidden.json()["detail"]
    allowed = httpx.post(promote, json={"version": 1}, headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert allowed.status_code == 200, allowed.text


def test_probes_and_metrics_need_no_key(secured: str) -> None:
    assert httpx.get(f"{secured}/healthz/live").status_code == 200
    assert httpx.get(f"{secured}/healthz/ready").status_code == 200
    assert httpx.get(f"{secured}/metrics").status_code == 200


def test_create_app_refuses_auth_without_keys(service_settings: ServiceSettings) -> None:
    from service.api.app import create_app

    with pytest.raises(ValueError, match="imgcls api-key new"):
        create_app(service_settings.model_copy(update={"auth_enabled": True, "api_keys": ()}))


@pytest.mark.parametrize("with_redis", [False, True], ids=["in-memory", "redis"])
def test_rate_limit_per_key(
    service_settings: ServiceSettings, png: bytes, with_redis: bool, request: pytest.FixtureRequest
) -> None:
    update: dict[str, object] = {"rate_limit_per_minute": 3}
    if with_redis:
        update["redis_url"] = request.getfixturevalue("redis_url")
    with running_server(keyed(service_settings, **update)) as server:
        app_key = {"authorization": f"Bearer {CLASSIFY_KEY}"}
        if time.time() % 60 > 55:  # the limit counts per clock minute: do not straddle two
            time.sleep(60 - time.time() % 60 + 0.1)
        statuses = [classify(server, png, app_key).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = classify(server, png, app_key)
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "3 requests per minute" in limited.json()["detail"]
        assert classify(server, png, {"authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200  # per key
