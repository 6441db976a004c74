from pathlib import Path

import httpx

from service.settings import ServiceSettings
from tests.read_only import read_only
from tests.service.api.server import running_server

MODEL = "fashion-mnist"


def test_list_and_detail(server: str) -> None:
    [summary] = httpx.get(f"{server}/v1/models").json()
    assert summary["name"] == MODEL
    assert summary["serving_version"] == 1
    assert summary["aliases"] == {"production": 1}
    [loaded] = summary["loaded"]
    assert (loaded["version"], loaded["variant"], loaded["provider"]) == (1, "fp32", "CPUExecutionProvider")

    detail = httpx.get(f"{server}/v1/models/{MODEL}").json()
    assert len(detail["labels"]) == 10
    assert detail["input_size"] == [28, 28]
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert detail["versions"][0]["aliases"] == ["production"]
    assert "test_accuracy" in detail["versions"][0]["metrics"]

    missing = httpx.get(f"{server}/v1/models/shoes")
    assert missing.status_code == 404
    assert "shoes" in missing.json()["detail"]


def test_load_classify_unload_a_second_version(server: str, png: bytes) -> None:
    base = f"{server}/v1/models/{MODEL}"
    loaded = httpx.post(f"{base}/versions/2/load")
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["pinned"] is True
    answer = httpx.post(f"{base}/classify?version=2", content=png, headers={"content-type": "image/png"})
    assert answer.json()["version"] == 2
    assert httpx.post(f"{base}/versions/2/unload").status_code == 200
    gone = httpx.post(f"{base}/classify?version=2", content=png, headers={"content-type": "image/png"})
    assert gone.status_code == 404


def test_admin_mistakes_are_4xx(server: str) -> None:
    base = f"{server}/v1/models/{MODEL}"
    serving = httpx.post(f"{base}/versions/1/unload")
    assert serving.status_code == 409
    assert "promote another version first" in serving.json()["detail"]
    assert httpx.post(f"{base}/versions/7/load").status_code == 404
    assert httpx.post(f"{base}/versions/2/load?variant=int4").status_code == 404
    bad_body = httpx.post(f"{base}/promote", json={"version": "two"})
    assert bad_body.status_code == 400
    assert httpx.post(f"{base}/promote", json={"version": 9}).status_code == 404
    assert httpx.post(f"{base}/promote", json={"version": 2, "alias": "Bad Alias!"}).status_code == 400


def test_detail_shows_each_versions_lineage_and_code_version(server: str) -> None:
    detail = httpx.get(f"{server}/v1/models/{MODEL}").json()
    for version in detail["versions"]:
        lineage = version["lineage"]
        assert lineage["dataset"] == "fashion-mnist"
        assert lineage["base_model"] is None and lineage["job_id"] is None  # trained, not fine-tuned
        assert "run_dir" not in lineage and "config" not in lineage  # no server paths, no whole config
        assert version["code_version"]
        assert {"test_accuracy", "ece", "ece_uncalibrated"} <= version["metrics"].keys()


def test_a_read_only_repository_serves_and_promotion_says_why_not(
    service_settings: ServiceSettings, model_root: Path, png: bytes
) -> None:
    with read_only(model_root), running_server(service_settings) as server:
        base = f"{server}/v1/models/{MODEL}"
        assert httpx.post(f"{base}/classify", content=png, headers={"content-type": "image/png"}).status_code == 200
        refused = httpx.post(f"{base}/promote", json={"version": 2}, timeout=30)
        assert (refused.status_code, refused.headers["content-type"]) == (409, "application/problem+json")
        assert refused.json()["detail"] == (
            f"the model repository {model_root} is read-only: setting the alias 'production' of {MODEL} needs "
            f"write access (Read-only file system: {model_root / MODEL / '.lock'})"
        )
        summary = httpx.get(f"{server}/v1/models").json()[0]
        assert (summary["serving_version"], summary["aliases"]) == (1, {"production": 1})
