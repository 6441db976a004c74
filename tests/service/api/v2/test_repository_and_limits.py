"""/v2 calls that change the server (load, unload, promotion) or need settings of their own (limits, keys)."""

import asyncio
import base64
import gzip
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from service.api.auth import key_hash, new_key
from service.settings import ApiKey, ServiceSettings
from tests.service.api.server import running_server
from tests.service.api.v2.conftest import MODEL, triton_client

CLASSIFY_KEY = new_key()
ADMIN_KEY = new_key()


def images_input(images: list[bytes]) -> triton.InferInput:
    array = np.array(images, dtype=np.object_)
    return triton.InferInput("image_bytes", [len(images)], "BYTES").set_data_from_numpy(array)


def test_load_and_unload_through_the_repository_extension(server: str, png: bytes) -> None:
    with triton_client(server) as client:
        client.load_model(MODEL)  # already serving: nothing to do
        with pytest.raises(triton.InferenceServerException, match="promote another version first") as caught:
            client.unload_model(MODEL)  # only the serving version is loaded: it stays
        assert caught.value.status() == "409"

        loaded = httpx.post(f"{server}/v2/repository/models/{MODEL}/load", json={"parameters": {"version": 2}})
        assert (loaded.status_code, loaded.json()) == (200, {})
        assert client.is_model_ready(MODEL, "2")
        states = {entry["version"]: entry["state"] for entry in client.get_model_repository_index()}
        assert states == {"1": "READY", "2": "READY"}
        assert client.get_model_metadata(MODEL)["versions"] == ["1", "2"]
        answer = client.infer(MODEL, [images_input([png])], model_version="2")
        assert answer.get_response()["model_version"] == "2"

        client.unload_model(MODEL)  # every version but the serving one
        assert not client.is_model_ready(MODEL, "2")
        assert client.is_model_ready(MODEL)
        with pytest.raises(triton.InferenceServerException, match="no model named 'shoes'"):
            client.load_model("shoes")


def test_no_v2_request_fails_during_a_promotion_under_load(server: str, png: bytes) -> None:
    versions: list[str] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def hammer() -> None:
        with triton_client(server) as client:
            while not stop.is_set():
                try:
                    versions.append(client.infer(MODEL, [images_input([png])]).get_response()["model_version"])
                except Exception as error:
                    failures.append(error)

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(versions) < count and not failures:
            assert time.monotonic() < deadline, f"only {len(versions)} answers"
            time.sleep(0.05)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(20)
        promoted = httpx.post(f"{server}/v1/models/{MODEL}/promote", json={"version": 2}, timeout=60)
        wait_for(len(versions) + 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert promoted.status_code == 200, promoted.text
    assert failures == []
    assert set(versions) == {"1", "2"} and versions[-1] == "2"


def test_a_full_queue_answers_503_with_retry_after(service_settings: ServiceSettings, png: bytes) -> None:
    update = {"max_queue_size": 2, "max_batch_size": 1, "max_concurrent_requests": 128}  # the queue, not admission
    settings = service_settings.model_copy(update=update)
    body = (
        b'{"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["'
        + base64.b64encode(png)
        + b'"]}]}'
    )

    async def burst(server: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            return await asyncio.gather(*(client.post(f"/v2/models/{MODEL}/infer", content=body) for _ in range(64)))

    with running_server(settings) as server:
        responses = asyncio.run(burst(server))
    refused = [response for response in responses if response.status_code == 503]
    assert {response.status_code for response in responses} <= {200, 503}
    assert refused, "64 simultaneous requests against a queue of 2 should overflow it"
    assert all(int(response.headers["retry-after"]) >= 1 for response in refused)
    assert "already queued" in refused[0].json()["error"]


def test_requests_over_the_concurrency_limit_get_the_v2_error_shape(service_settings: ServiceSettings) -> None:
    settings = service_settings.model_copy(update={"max_concurrent_requests": 2})
    images = np.zeros((8, 1, 28, 28), dtype=np.float32)
    tensor = triton.InferInput("input", list(images.shape), "FP32").set_data_from_numpy(images)
    body, json_size = triton.InferenceServerClient.generate_request_body([tensor])
    headers = {"Inference-Header-Content-Length": str(json_size)}

    async def burst(server: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            infer = f"/v2/models/{MODEL}/infer"
            return await asyncio.gather(*(client.post(infer, content=body, headers=headers) for _ in range(64)))

    with running_server(settings) as server:
        responses = asyncio.run(burst(server))
    refused = [response for response in responses if response.status_code == 503]
    assert {response.status_code for response in responses} == {200, 503}
    assert refused[0].headers["content-type"] == "application/json"
    assert refused[0].headers["retry-after"] == "1"
    assert "limit of 2 concurrent inference requests" in refused[0].json()["error"]


def test_bodies_over_the_limit_are_413_compressed_or_not(service_settings: ServiceSettings) -> None:
    settings = service_settings.model_copy(update={"max_body_bytes": 100_000})
    with running_server(settings) as server:
        big = httpx.post(f"{server}/v2/models/{MODEL}/infer", content=b" " * 200_000)
        assert big.status_code == 413
        assert "error" in big.json()
        bomb = httpx.post(
            f"{server}/v2/models/{MODEL}/infer",
            content=gzip.compress(b" " * 1_000_000),
            headers={"Content-Encoding": "gzip"},
        )
        assert bomb.status_code == 413
        assert "decompresses to more than 100,000 bytes" in bomb.json()["error"]


def test_keys_and_scopes_apply_to_v2(service_settings: ServiceSettings, png: bytes) -> None:
    keys = (
        ApiKey(name="app", sha256=key_hash(CLASSIFY_KEY), scopes=frozenset({"classify"})),
        ApiKey(name="ops", sha256=key_hash(ADMIN_KEY), scopes=frozenset({"classify", "admin"})),
    )
    settings = service_settings.model_copy(update={"auth_enabled": True, "api_keys": keys})
    as_app = {"Authorization": f"Bearer {CLASSIFY_KEY}"}
    as_ops = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with running_server(settings) as server, triton_client(server) as client:
        assert client.is_server_live() and client.is_server_ready()  # probes need no key
        with pytest.raises(triton.InferenceServerException, match="needs an API key") as caught:
            client.infer(MODEL, [images_input([png])])
        assert caught.value.status() == "401"
        assert client.infer(MODEL, [images_input([png])], headers=as_app).as_numpy("probabilities").shape == (1, 10)
        assert client.get_model_metadata(MODEL, headers=as_app)["name"] == MODEL
        with pytest.raises(triton.InferenceServerException, match="lacks the 'admin' scope") as caught:
            client.get_model_repository_index(headers=as_app)
        assert caught.value.status() == "403"
        assert len(client.get_model_repository_index(headers=as_ops)) == 2
        with pytest.raises(triton.InferenceServerException, match="lacks the 'admin' scope"):
            client.unload_model(MODEL, headers=as_app)


def test_a_server_without_models_is_live_but_not_ready(tmp_path: Path) -> None:
    settings = ServiceSettings(model_root=tmp_path, auth_enabled=False)
    with running_server(settings, wait_ready=False) as server, triton_client(server) as client:
        assert client.is_server_live()
        assert not client.is_server_ready()
        not_ready = httpx.get(f"{server}/v2/health/ready")
        assert not_ready.status_code == 503
        assert "imgcls train" in not_ready.json()["error"]
