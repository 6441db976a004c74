"""Shadow and canary rollouts over HTTP, on real servers (uvicorn in a thread, onnxruntime): bad input, a
rollout under load with no failed request, a promotion and an abort by the gate, canary stickiness, a
failing candidate that users never see, figures from two servers, and a restart that goes on."""

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.repository import ModelRepository
from service.settings import ServiceSettings
from tests.service.api.conftest import png_bytes
from tests.service.api.server import running_server
from tests.service.rollouts.candidates import MODEL, publish_disagreeing, publish_failing

ROLLOUT = f"/v1/models/{MODEL}/rollout"


def classify(server: str, png: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server}/v1/models/{MODEL}/classify", content=png, headers={"content-type": "image/png", **headers}
    )


def history(server: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server}/v1/models/{MODEL}/history")
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()
    return events


def wait_for_event(server: str, kind: str, within_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        found = [e for e in history(server) if e["kind"] == kind]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {kind!r} event after {within_s} s: {history(server)}"
        time.sleep(0.2)


async def hammer(server: str, stop: asyncio.Event, statuses: list[int], versions: list[int]) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        seed = 0
        while not stop.is_set():
            seed += 1
            response = await client.post(
                f"/v1/models/{MODEL}/classify", content=png_bytes(seed % 50), headers={"content-type": "image/png"}
            )
            statuses.append(response.status_code)
            if response.status_code == 200:
                versions.append(response.json()["version"])


def under_load(server: str, clients: int, action: Any) -> tuple[list[int], list[int], Any]:
    """Run ``action()`` (in a thread) while ``clients`` hammer classify; the statuses and versions seen."""

    async def scenario() -> tuple[list[int], list[int], Any]:
        stop = asyncio.Event()
        statuses: list[int] = []
        versions: list[int] = []
        tasks = [asyncio.create_task(hammer(server, stop, statuses, versions)) for _ in range(clients)]
        await asyncio.sleep(0.5)
        outcome = await asyncio.to_thread(action)
        stop.set()
        await asyncio.gather(*tasks)
        return statuses, versions, outcome

    return asyncio.run(scenario())


def test_bad_rollouts_are_refused_and_the_serving_version_stays(
    service_settings: ServiceSettings, repository: ModelRepository, tmp_path: Path, png: bytes
) -> None:
    failing = publish_failing(repository, tmp_path)  # its warm-up fails: it cannot load
    with running_server(service_settings) as server:
        put = lambda body: httpx.put(f"{server}{ROLLOUT}", json=body)  # noqa: E731
        cases = [
            ({"version": 1}, 422, "already serving"),
            ({"version": failing}, 422, "fails to load"),
            ({"version": 2, "percent": 150}, 422, "percent"),
            ({"version": 2, "percent": -1}, 422, "percent"),
            ({"version": 2, "until": {"requests": 10}, "gate": {"min_agreement": 0.9, "speed": 2}}, 422, "speed"),
            ({"version": 2, "gate": {"min_agreement": 0.9}}, 422, "until"),
            ({"version": 2, "mode": "blue-green"}, 422, "mode"),
            ({"version": 9}, 404, "9"),
        ]
        for body, status, words in cases:
            response = put(body)
            assert response.status_code == status, (body, response.text)
            assert words in response.json()["detail"], (body, response.text)
        assert httpx.get(f"{server}{ROLLOUT}").status_code == 404
        assert httpx.post(f"{server}{ROLLOUT}/abort").status_code == 404
        assert classify(server, png).json()["version"] == 1
        loaded = httpx.get(f"{server}/v1/models/{MODEL}").json()["loaded"]
        assert [v["version"] for v in loaded] == [1]  # the failed candidate is not left loaded

        assert put({"version": 2}).status_code == 201
        second = put({"version": 2, "mode": "canary", "percent": 5})
        assert second.status_code == 409 and "already running" in second.json()["detail"], second.text
        promote = lambda body: httpx.post(f"{server}/v1/models/{MODEL}/promote", json=body)  # noqa: E731
        by_hand = promote({"version": 2})  # production moves only through the rollout while it runs
        assert by_hand.status_code == 409 and "/rollout/promote" in by_hand.json()["detail"], by_hand.text
        assert promote({"version": 2, "alias": "staging"}).status_code == 200  # other aliases move freely
        assert httpx.post(f"{server}{ROLLOUT}/abort", json={"reason": "test"}).status_code == 200
        assert classify(server, png).json()["version"] == 1


def test_a_shadow_rollout_under_load_fails_no_request_and_the_gate_promotes(server: str) -> None:
    def roll_out() -> dict[str, Any]:
        body = {
            "version": 2,
            "mode": "shadow",
            "percent": 100,
            "until": {"requests": 60, "minutes": 5},
            "gate": {"min_agreement": 0.97, "max_p99_ratio": 20},
            "reason": "retrained on May's data",
        }
        started = httpx.put(f"{server}{ROLLOUT}", json=body)
        assert started.status_code == 201, started.text
        return wait_for_event(server, "rollout promoted")

    statuses, versions, promoted = under_load(server, 8, roll_out)
    assert len(statuses) > 100
    assert set(statuses) == {200}
    assert set(versions) <= {1, 2}
    figures = promoted["figures"]
    assert figures["compared"] >= 60 and figures["agreement"] == 1.0, figures
    assert figures["serving"]["p99_ms"] is not None and figures["candidate"]["mean_confidence"] is not None
    assert promoted["by"] == "gate" and "gate met" in promoted["reason"]
    assert classify(server, png_bytes(1)).json()["version"] == 2
    kinds = [e["kind"] for e in history(server)]
    assert kinds[:3] == ["promotion", "rollout promoted", "rollout started"], kinds
    assert history(server)[2]["reason"] == "retrained on May's data"
    assert httpx.get(f"{server}{ROLLOUT}").status_code == 404


def test_a_candidate_that_disagrees_is_aborted_by_the_gate(
    service_settings: ServiceSettings, repository: ModelRepository, tmp_path: Path
) -> None:
    candidate = publish_disagreeing(repository, tmp_path)
    with running_server(service_settings) as server:
        body = {"version": candidate, "until": {"requests": 20}, "gate": {"min_agreement": 0.9}}
        assert httpx.put(f"{server}{ROLLOUT}", json=body).status_code == 201
        for seed in range(30):
            assert classify(server, png_bytes(seed)).json()["version"] == 1
        aborted = wait_for_event(server, "rollout aborted")
        assert "gate breached" in aborted["reason"] and "agreement" in aborted["reason"], aborted
        assert aborted["figures"]["agreement"] < 0.9
        assert aborted["figures"]["confusion"], "the confusion between the answers is recorded"
        assert classify(server, png_bytes(0)).json()["version"] == 1
        loaded = httpx.get(f"{server}/v1/models/{MODEL}").json()["loaded"]
        assert [v["version"] for v in loaded] == [1]  # the candidate is let go


def test_a_canary_is_sticky_per_request_id_and_per_key(server: str, png: bytes) -> None:
    body = {"version": 2, "mode": "canary", "percent": 50}
    assert httpx.put(f"{server}{ROLLOUT}", json=body).status_code == 201
    seen: dict[str, set[int]] = {}
    for client in range(24):
        for _ in range(3):
            answer = classify(server, png, **{"x-request-id": f"client-{client}"})
            assert answer.status_code == 200
            seen.setdefault(f"client-{client}", set()).add(answer.json()["version"])
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert {v for versions in seen.values() for v in versions} == {1, 2}  # 24 clients at 50 %: both versions
    by_key = {classify(server, png, **{"x-api-key": "same-key"}).json()["version"] for _ in range(5)}
    assert len(by_key) == 1
    time.sleep(1.5)  # the canary's answers were compared with the serving version's after they were sent
    figures = httpx.get(f"{server}{ROLLOUT}").json()["figures"]
    assert figures["requests"] == 77 and 0 < figures["sampled"] < 77, figures
    assert figures["compared"] > 0 and figures["agreement"] == 1.0


@pytest.mark.parametrize("mode", ["shadow", "canary"])
def test_a_failing_candidate_never_fails_a_request_and_aborts_itself(
    service_settings: ServiceSettings, repository: ModelRepository, tmp_path: Path, mode: str
) -> None:
    candidate = publish_failing(repository, tmp_path)  # without warm-up it loads, then fails on every request
    with running_server(service_settings.model_copy(update={"warmup": False})) as server:
        body = {"version": candidate, "mode": mode, "percent": 100}
        assert httpx.put(f"{server}{ROLLOUT}", json=body).status_code == 201
        answers = [classify(server, png_bytes(seed)) for seed in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        assert {a.json()["version"] for a in answers} == {1}
        aborted = wait_for_event(server, "rollout aborted")
        assert "the candidate failed" in aborted["reason"] and aborted["by"] == "gate", aborted
        assert aborted["figures"]["candidate"]["failures"] >= 3
        assert classify(server, png_bytes(0)).json()["version"] == 1


def test_figures_add_up_across_servers_and_a_restart_goes_on(service_settings: ServiceSettings) -> None:
    settings = service_settings.model_copy(update={"watch_interval_s": 0.2})
    with running_server(settings) as first, running_server(settings) as second:
        started = httpx.put(f"{first}{ROLLOUT}", json={"version": 2, "reason": "two servers"})
        assert started.status_code == 201, started.text
        deadline = time.monotonic() + 10
        while len(httpx.get(f"{second}/v1/models/{MODEL}").json()["loaded"]) < 2:  # the second joins
            assert time.monotonic() < deadline, "the second server did not load the candidate"
            time.sleep(0.1)
        for seed in range(10):
            assert classify(first, png_bytes(seed)).status_code == 200
            assert classify(second, png_bytes(seed)).status_code == 200
        time.sleep(1.5)
        figures = httpx.get(f"{second}{ROLLOUT}").json()["figures"]
        assert figures["requests"] == 20 and figures["compared"] == 20, figures
    with running_server(settings) as restarted:
        status = httpx.get(f"{restarted}{ROLLOUT}").json()
        assert status["id"] == started.json()["id"] and status["figures"]["compared"] == 20
        assert classify(restarted, png_bytes(0)).status_code == 200
        time.sleep(1.5)
        assert httpx.get(f"{restarted}{ROLLOUT}").json()["figures"]["compared"] == 21
        promoted = httpx.post(f"{restarted}{ROLLOUT}/promote", json={"reason": "looks right"})
        assert promoted.status_code == 200 and promoted.json()["kind"] == "rollout promoted", promoted.text
        assert classify(restarted, png_bytes(0)).json()["version"] == 2


def test_accuracy_of_each_version_from_feedback(server: str) -> None:
    assert httpx.put(f"{server}{ROLLOUT}", json={"version": 2}).status_code == 201
    answers = [classify(server, png_bytes(seed)).json()["results"][0] for seed in range(4)]
    time.sleep(1.5)
    for seed, answer in enumerate(answers):
        image = base64.b64encode(png_bytes(seed)).decode()
        feedback = {"model": MODEL, "label": answer["top"][0]["label"], "prediction_id": answer["prediction_id"]}
        assert httpx.post(f"{server}/v1/feedback", json=feedback | {"image": image}).status_code in (200, 201)
    figures = httpx.get(f"{server}{ROLLOUT}").json()["figures"]
    assert figures["serving"]["labelled"] == 4 and figures["serving"]["accuracy"] == 1.0, figures
    assert figures["candidate"]["accuracy"] == 1.0
