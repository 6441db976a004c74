"""/v1/feedback, the review queue and /v1/datasets/from-feedback over real HTTP (a real server, onnxruntime,
the feedback store on disk, a private Redis for the job a dataset of feedback is submitted to).

Scopes: every route here needs ``train`` (tests/service/api/test_security.py holds each to it)."""

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.settings import ServiceSettings
from tests.service.api.conftest import png_bytes
from tests.service.api.server import running_server
from tests.service.api.test_classify import assert_problem

MODEL = "fashion-mnist"
CLASSIFY = f"/v1/models/{MODEL}/classify"
REVIEW = f"/v1/models/{MODEL}/review"


def settings_for(service_settings: ServiceSettings, **changes: Any) -> ServiceSettings:
    root = service_settings.model_root.parent
    return service_settings.model_copy(
        update={"data_root": root / "data", "feedback_root": root / "feedback", **changes}
    )


@pytest.fixture
def keeping(service_settings: ServiceSettings) -> Iterator[str]:
    """Every prediction is low-confidence (threshold 1.0): every input is kept."""
    settings = settings_for(service_settings, keep_predictions=True, keep_predictions_threshold=1.0)
    with running_server(settings) as url:
        yield url


@pytest.fixture
def not_keeping(service_settings: ServiceSettings, redis_url: str) -> Iterator[str]:
    with running_server(settings_for(service_settings, redis_url=redis_url)) as url:
        yield url


def classify(url: str, *images: bytes) -> list[dict[str, Any]]:
    answer = httpx.post(f"{url}{CLASSIFY}", files=[("images", (f"{i}.png", data)) for i, data in enumerate(images)])
    assert answer.status_code == 200, answer.text
    return list(answer.json()["results"])


def waiting(url: str, count: int) -> dict[str, Any]:
    """The review list once ``count`` predictions wait in it (they are written after the answer)."""
    deadline = time.monotonic() + 10
    while True:
        review = httpx.get(f"{url}{REVIEW}").json()
        if review["waiting"] >= count or time.monotonic() > deadline:
            assert review["waiting"] == count, review
            return dict(review)
        time.sleep(0.05)


def feedback(url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/feedback", json={"model": MODEL, **body})


def test_every_answer_carries_a_prediction_id_and_kept_inputs_wait_for_review(keeping: str) -> None:
    results = classify(keeping, *(png_bytes(seed) for seed in range(3)))
    ids = [result["prediction_id"] for result in results]
    assert len(set(ids)) == 3 and all(i.startswith("pr_") for i in ids)

    review = waiting(keeping, 3)
    assert len(review["labels"]) == 10 and review["labels"][0] == "T-shirt/top"
    kept = {p["id"]: p for p in review["predictions"]}
    assert set(kept) == set(ids)
    for result in results:
        prediction = kept[result["prediction_id"]]
        assert [g["label"] for g in prediction["top"]] == [p["label"] for p in result["top"][:3]]
        assert (prediction["version"], prediction["low_confidence"]) == (1, True)
    image = httpx.get(f"{keeping}{REVIEW}/{ids[0]}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")


def test_a_correction_and_a_confirmation_of_kept_predictions(keeping: str) -> None:
    first, second = classify(keeping, png_bytes(1), png_bytes(2))
    waiting(keeping, 2)
    predicted = first["top"][0]["label"]
    other = next(label for label in ("Bag", "Coat") if label != predicted)

    corrected = feedback(keeping, prediction_id=first["prediction_id"], label=other)
    assert corrected.status_code == 201, corrected.text
    body = corrected.json()
    assert (body["kind"], body["label"], body["source"], body["status"]) == (
        "correction",
        other,
        "kept prediction",
        "new",
    )
    assert body["predicted"][0]["label"] == predicted
    assert_problem(feedback(keeping, prediction_id=first["prediction_id"], label=predicted), 409, body["id"])

    confirmed = feedback(keeping, prediction_id=second["prediction_id"], label=second["top"][0]["label"])
    assert confirmed.json()["kind"] == "confirmation"
    assert waiting(keeping, 0)["predictions"] == []
    listed = httpx.get(f"{keeping}/v1/feedback", params={"model": MODEL}).json()
    assert [item["id"] for item in listed] == [confirmed.json()["id"], body["id"]]  # newest first
    image = httpx.get(f"{keeping}/v1/feedback/{body['id']}/image")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_bad_feedback_is_refused_with_the_reason(keeping: str) -> None:
    (result,) = classify(keeping, png_bytes(3))
    waiting(keeping, 1)
    unknown = feedback(keeping, prediction_id="pr_" + "0" * 24, label="Bag")
    assert_problem(unknown, 404, "no kept prediction", "never kept")
    wrong_label = feedback(keeping, prediction_id=result["prediction_id"], label="Horse")
    assert_problem(wrong_label, 422, "has no label 'Horse'", "its labels are: T-shirt/top, Trouser, Pullover")
    assert waiting(keeping, 1)  # still waiting: nothing was recorded
    assert_problem(feedback(keeping, label="Bag"), 422, "send prediction_id")
    assert_problem(feedback(keeping, label="Bag", image="not base64!"), 400, "not valid base64")
    assert_problem(feedback(keeping, label="Bag", image=base64.b64encode(b"GIF89a").decode()), 415)
    assert_problem(httpx.post(f"{keeping}/v1/feedback", json={"model": "nope", "label": "x", "image": "AA=="}), 404)
    assert_problem(httpx.get(f"{keeping}/v1/feedback/fb_0000000000000000/image"), 404, "GET /v1/feedback lists them")


def test_an_expired_prediction_is_404(service_settings: ServiceSettings) -> None:
    settings = settings_for(
        service_settings, keep_predictions=True, keep_predictions_threshold=1.0, keep_predictions_retention_s=0.5
    )
    with running_server(settings) as url:
        (result,) = classify(url, png_bytes(4))
        deadline = time.monotonic() + 10
        folder = settings.feedback_root / MODEL / "kept" / result["prediction_id"]
        while not folder.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.6)
        assert_problem(feedback(url, prediction_id=result["prediction_id"], label="Bag"), 404, "expired")
        assert httpx.get(f"{url}{REVIEW}").json()["waiting"] == 0


def test_delete_one_item_or_everything_of_a_model(keeping: str) -> None:
    results = classify(keeping, *(png_bytes(seed) for seed in range(4)))
    waiting(keeping, 4)
    ids = [feedback(keeping, prediction_id=r["prediction_id"], label="Bag").json()["id"] for r in results[:2]]
    assert httpx.delete(f"{keeping}/v1/feedback/{ids[0]}").status_code == 204
    assert_problem(httpx.delete(f"{keeping}/v1/feedback/{ids[0]}"), 404)
    assert httpx.delete(f"{keeping}{REVIEW}/{results[2]['prediction_id']}").status_code == 204
    assert_problem(httpx.get(f"{keeping}{REVIEW}/{results[2]['prediction_id']}/image"), 404)
    assert_problem(httpx.delete(f"{keeping}/v1/feedback"), 400, "name the model")

    deleted = httpx.delete(f"{keeping}/v1/feedback", params={"model": MODEL})
    assert deleted.status_code == 200 and deleted.json() == {"predictions": 1, "feedback": 1}
    assert httpx.get(f"{keeping}/v1/feedback").json() == []
    assert httpx.get(f"{keeping}{REVIEW}").json()["waiting"] == 0


def test_feedback_with_its_image_becomes_a_dataset_a_fine_tuning_job_accepts(not_keeping: str) -> None:
    url = not_keeping
    recorded = []
    for seed, label in enumerate(["Sneaker"] * 5 + ["Trouser"] * 5):
        image = png_bytes(seed)
        (result,) = classify(url, image)
        answer = feedback(
            url,
            prediction_id=result["prediction_id"],  # not kept (keeping is off): the image is sent along
            image=base64.b64encode(image).decode(),
            label=label,
            predicted=result["top"][:3],
        )
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert (body["source"], body["prediction_id"]) == ("upload", result["prediction_id"])
        assert body["kind"] == ("confirmation" if result["top"][0]["label"] == label else "correction")
        recorded.append(body["id"])

    made = httpx.post(f"{url}/v1/datasets/from-feedback", json={"model": MODEL})
    assert made.status_code == 201, made.text
    dataset = made.json()
    assert dataset["classes"] == {"Sneaker": 5, "Trouser": 5} and dataset["skipped_count"] == 0
    assert dataset["origin"] == {"model": MODEL, "feedback": sorted(recorded), "base_dataset": None, "base_images": 0}
    used = httpx.get(f"{url}/v1/feedback", params={"status": "used"}).json()
    assert sorted(item["id"] for item in used) == sorted(recorded)
    assert all(item["used_in"] == [dataset["id"]] for item in used)
    assert httpx.get(f"{url}/v1/feedback", params={"status": "new"}).json() == []

    job = httpx.post(
        f"{url}/v1/fine-tuning/jobs",
        json={"base_model": MODEL, "dataset": dataset["id"], "hyperparameters": {"epochs": 1}},
    )
    assert job.status_code == 201, job.text
    assert job.json()["dataset"] == dataset["id"]  # the version it publishes names dataset:<id> in its lineage

    base = httpx.post(f"{url}/v1/datasets/from-feedback", json={"model": MODEL, "include_base_dataset": True})
    assert_problem(base, 422, "trained on 'fashion-mnist'", "leave include_base_dataset out")
    later = httpx.post(f"{url}/v1/datasets/from-feedback", json={"model": MODEL, "since": "2999-01-01T00:00:00Z"})
    assert_problem(later, 422, "no feedback since")
