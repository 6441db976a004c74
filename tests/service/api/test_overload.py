import asyncio

import httpx

from service.settings import ServiceSettings
from tests.service.api.server import running_server


def test_a_full_queue_answers_503_with_retry_after_and_nothing_else_fails(
    service_settings: ServiceSettings, png: bytes
) -> None:
    settings = service_settings.model_copy(update={"max_queue_size": 2, "max_batch_size": 1})

    async def burst(server: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            requests = [
                client.post("/v1/models/fashion-mnist/classify", content=png, headers={"content-type": "image/png"})
                for _ in range(64)
            ]
            return await asyncio.gather(*requests)

    with running_server(settings) as server:
        responses = asyncio.run(burst(server))
        refused = [r for r in responses if r.status_code == 503]
        assert {r.status_code for r in responses} <= {200, 503}
        assert refused, "64 simultaneous requests against a queue of 2 should overflow it"
        assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
        assert "already queued" in refused[0].json()["detail"]
        assert any(r.status_code == 200 for r in responses)
        again = httpx.post(
            f"{server}/v1/models/fashion-mnist/classify", content=png, headers={"content-type": "image/png"}
        )
        assert again.status_code == 200  # recovered


def test_requests_over_the_concurrency_limit_are_refused_before_any_work(
    service_settings: ServiceSettings, png: bytes
) -> None:
    settings = service_settings.model_copy(update={"max_concurrent_requests": 2, "refusal_delay_ms": 300})

    async def burst(server: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            files = {"images": ("a.png", png, "image/png")}
            return await asyncio.gather(
                *(client.post("/v1/models/fashion-mnist/classify", files=files) for _ in range(64))
            )

    with running_server(settings) as server:
        responses = asyncio.run(burst(server))
        metrics = httpx.get(f"{server}/metrics").text
    refused = [r for r in responses if r.status_code == 503]
    assert {r.status_code for r in responses} == {200, 503}
    assert refused[0].headers["content-type"].startswith("application/problem+json")
    assert refused[0].headers["retry-after"] == "1"
    assert "limit of 2 concurrent inference requests" in refused[0].json()["detail"]
    assert all(r.elapsed.total_seconds() >= 0.3 for r in refused)  # held, so instant retries cannot flood
    assert f'imgcls_rejects_total{{reason="overloaded"}} {len(refused)}.0' in metrics
