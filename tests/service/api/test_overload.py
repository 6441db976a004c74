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
