import asyncio
import re
import time
from pathlib import Path

import httpx

from service.api.app import create_app
from service.jobs.store import JobStore
from service.settings import ServiceSettings
from tests.redis_server import free_port, redis_server
from tests.service.api.server import running_server


def test_ready_reports_the_provider_and_the_schema_is_served(server: str) -> None:
    ready = httpx.get(f"{server}/healthz/ready")
    assert ready.status_code == 200
    assert ready.json()["models"]["fashion-mnist"] == {"serving_version": 1, "providers": ["CPUExecutionProvider"]}
    schema = httpx.get(f"{server}/schema/openapi.json").json()
    assert "/v1/models/{name}/classify" in schema["paths"]


def test_an_empty_repository_is_live_but_not_ready(tmp_path: Path) -> None:
    with running_server(ServiceSettings(model_root=tmp_path, auth_enabled=False), wait_ready=False) as server:
        assert httpx.get(f"{server}/healthz/live").status_code == 200
        not_ready = httpx.get(f"{server}/healthz/ready")
        assert not_ready.status_code == 503
        assert "imgcls train" in not_ready.json()["reason"]


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_metrics_count_requests_batches_predictions_and_rejects(server: str, png: bytes) -> None:
    url = f"{server}/v1/models/fashion-mnist/classify"
    for _ in range(3):
        assert httpx.post(url, content=png, headers={"content-type": "image/png"}).status_code == 200
    httpx.post(url, content=b"junk", headers={"content-type": "image/png"})
    text = httpx.get(f"{server}/metrics").text
    assert metric(text, 'imgcls_request_duration_seconds_count{endpoint="v1_classify",model="fashion-mnist"}') == 3
    assert metric(text, 'imgcls_batch_size_count{model="fashion-mnist"}') >= 1
    assert metric(text, 'imgcls_confidence_count{model="fashion-mnist",version="1"}') == 3
    predicted = re.findall(r'^imgcls_predictions_total\{.*version="1"\} ([0-9.]+)$', text, re.MULTILINE)
    assert sum(float(v) for v in predicted) == 3
    assert metric(text, 'imgcls_rejects_total{reason="bad_image"}') == 1
    assert metric(text, "imgcls_in_flight_requests") == 0
    info = 'imgcls_model_info{model="fashion-mnist",provider="CPUExecutionProvider",variant="fp32",version="1"}'
    assert metric(text, info) == 1
    for name in ("imgcls_queue_duration_seconds", "imgcls_compute_duration_seconds", "imgcls_decode_duration_seconds"):
        assert f"{name}_bucket" in text


def test_ready_shows_a_redis_that_does_not_answer_and_stays_ready(service_settings: ServiceSettings) -> None:
    settings = service_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with running_server(settings) as server:
        ready = httpx.get(f"{server}/healthz/ready")
        assert ready.status_code == 200  # classification does not need Redis
        assert ready.json()["redis"].startswith("unreachable: ") and "jobs answer 503" in ready.json()["redis"]


def test_ready_says_redis_is_ok(service_settings: ServiceSettings, redis_url: str) -> None:
    with running_server(service_settings.model_copy(update={"redis_url": redis_url})) as server:
        assert httpx.get(f"{server}/healthz/ready").json()["redis"] == "ok"


def test_ready_counts_the_live_fine_tuning_workers(service_settings: ServiceSettings, redis_url: str) -> None:
    store = JobStore(redis_url)
    with running_server(service_settings.model_copy(update={"redis_url": redis_url})) as server:

        def workers() -> int:
            count: int = httpx.get(f"{server}/healthz/ready").json()["job_workers"]
            return count

        before = workers()
        store.worker_present("test-host:1", ttl_s=60)
        store.worker_present("test-host:2", ttl_s=0.2)  # a worker that was killed: its presence expires
        assert workers() == before + 2
        time.sleep(0.3)
        assert workers() == before + 1
        store.worker_left("test-host:1")  # a worker that stopped cleanly
        assert workers() == before
    store.close()


def test_the_apis_redis_client_outlives_a_redis_restart(service_settings: ServiceSettings, tmp_path: Path) -> None:
    """Redis killed and started again: the API's pooled connection is dead, and the next command (readiness'
    ping, a rate limit, an event stream) gets a new one instead of failing once."""
    with redis_server(tmp_path) as redis:
        app = create_app(service_settings.model_copy(update={"redis_url": redis.url}))
        client = app.state.imgcls.redis

        async def restart_between_two_pings() -> None:
            assert await client.ping()
            assert redis.process is not None
            redis.process.kill()
            redis.process.wait()
            redis.start()
            assert await client.ping()
            await client.aclose()

        asyncio.run(restart_between_two_pings())
