"""/v1/fine-tuning/jobs over real HTTP with a real Redis and no worker: jobs stay queued, which is all the
API's own rules need. The whole path with a worker is tests/training/worker/test_app.py."""

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.api.auth import key_hash, new_key
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.repository import ModelRepository
from service.settings import ApiKey, ServiceSettings
from tests.redis_server import free_port
from tests.service.api.server import running_server
from tests.service.api.test_classify import assert_problem
from tests.service.datasets.zips import folder_entries, zip_bytes
from tests.service.importing.onnx_models import LABELS, OnnxFiles

TRAIN_KEY, CLASSIFY_KEY = new_key(), new_key()
JOBS = "/v1/fine-tuning/jobs"


@pytest.fixture
def server(service_settings: ServiceSettings, redis_url: str) -> Iterator[str]:
    settings = service_settings.model_copy(
        update={
            "redis_url": redis_url,
            "data_root": service_settings.model_root.parent / "data",
            "job_recovery_interval_s": 0.2,
        }
    )
    with running_server(settings) as url:
        yield url


@pytest.fixture
def dataset(server: str) -> str:
    answer = httpx.post(
        f"{server}/v1/datasets",
        content=zip_bytes(folder_entries({"cat": 5, "dog": 5})),
        headers={"content-type": "application/zip"},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def submit(server: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{server}{JOBS}", json=body, headers=headers or {})


def test_a_job_is_accepted_listed_read_and_cancelled(server: str, dataset: str) -> None:
    body = {
        "base_model": "fashion-mnist",
        "dataset": dataset,
        "base_version": "production",
        "seed": 3,
        "validation_split": 0.2,
        "metadata": {"ticket": "42"},
        "hyperparameters": {"learning_rate": [0.1, 0.01]},
    }
    answer = submit(server, body)
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert (job["status"], job["base_version"], job["metadata"]) == ("queued", 1, {"ticket": "42"})
    assert job["hyperparameters"]["learning_rate"] == [0.1, 0.01] and job["hyperparameters"]["seed"] == 3
    assert [t["hyperparameters"]["val_fraction"] for t in job["trials"]] == [0.2, 0.2]
    assert all(t["status"] == "queued" and t["task_id"] for t in job["trials"])

    assert httpx.get(f"{server}{JOBS}/{job['id']}").json() == job
    listed = httpx.get(f"{server}{JOBS}", params={"metadata": "ticket:42", "status": "queued"}).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    events = httpx.get(f"{server}{JOBS}/{job['id']}/events").json()
    assert [e["message"] for e in events["data"]] == ["validating", "queued"] and not events["finished"]

    assert_problem(httpx.delete(f"{server}/v1/datasets/{dataset}"), 409, f"used by fine-tuning job(s) {job['id']}")
    time.sleep(0.5)  # a recovery pass counts the unfinished jobs for the metrics
    metrics = httpx.get(f"{server}/metrics").text
    assert "imgcls_jobs_submitted_total 1.0" in metrics and 'imgcls_jobs{status="queued"}' in metrics
    cancelled = httpx.post(f"{server}{JOBS}/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_problem(httpx.post(f"{server}{JOBS}/{job['id']}/cancel"), 409, "already cancelled")
    assert httpx.get(f"{server}{JOBS}/{job['id']}/events").json()["finished"]
    time.sleep(0.5)
    assert 'imgcls_jobs_finished_total{status="cancelled"}' in httpx.get(f"{server}/metrics").text
    assert httpx.delete(f"{server}/v1/datasets/{dataset}").status_code == 204  # no unfinished job uses it now


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"base_model": "nope"}, 404, "nope"),
        ({"base_version": 9}, 404, "9"),
        ({"dataset": "ds_ffffffffffffffff"}, 404, "ds_ffffffffffffffff"),
        ({"hyperparameters": {"epochs": 0}}, 422, "epochs: Input should be greater than or equal to 1"),
        ({"hyperparameters": {"optimizer": "adamax"}}, 422, "unknown optimizer 'adamax'"),
        (
            {"hyperparameters": {"learning_rate": [0.1, 0.01, 0.001], "batch_size": [8, 16, 32, 64, 128, 256]}},
            422,
            "18 trials",
        ),
        ({"min_accuracy": 0.9}, 422, "min_accuracy gates auto_promote"),
        ({"auto_promote": True, "min_accuracy": 2}, 422, "between 0 and 1"),
        ({"suffix": "Has Spaces"}, 422, "suffix 'Has Spaces'"),
        ({"validation_split": 1.5}, 422, "val_fraction: Input should be less than 1"),
        ({"hyperparameters": {"label_smoothing": 1}}, 422, "label_smoothing: Input should be less than 1"),
        ({"hyperparameters": {"early_stopping_patience": -1}}, 422, "early_stopping_patience: Input should be"),
        ({"colour": "red"}, 400, "colour"),
        ({"metadata": {"a:b": "c"}}, 422, "keys of 1-64 characters without ':'"),
    ],
)
def test_bad_submissions_are_refused_with_the_reason(
    server: str, dataset: str, change: dict[str, Any], status: int, message: str
) -> None:
    body = {"base_model": "fashion-mnist", "dataset": dataset, **change}
    assert_problem(submit(server, body), status, message)
    assert httpx.get(f"{server}{JOBS}", params={"limit": 100}).status_code == 200


def test_a_job_on_an_imported_onnx_version_is_422_not_fine_tunable(
    server: str, dataset: str, service_settings: ServiceSettings, onnx_files: OnnxFiles
) -> None:
    repository = ModelRepository(service_settings.model_root)
    options = ImportOptions()
    import_onnx(
        repository, onnx_files.fixed_batch, name="brought", labels=LABELS, options=options, source="f", command="t"
    )
    answer = submit(server, {"base_model": "brought", "dataset": dataset})
    assert_problem(answer, 422, "brought v1 is not fine-tunable: it was imported from f, an ONNX file")
    listed = httpx.get(f"{server}{JOBS}", params={"limit": 100}).json()["data"]
    assert [job for job in listed if job["base_model"] == "brought"] == []  # nothing was created


def test_unknown_jobs_are_404(server: str) -> None:
    for path in ("", "/events", "/metrics", "/checkpoints"):
        assert_problem(httpx.get(f"{server}{JOBS}/ft_000000000000aaaaaaaaaa{path}"), 404, "no fine-tuning job")
    assert_problem(httpx.post(f"{server}{JOBS}/nope/cancel"), 404, "no fine-tuning job 'nope'")


def test_jobs_need_the_train_scope(service_settings: ServiceSettings, redis_url: str) -> None:
    keys = (
        ApiKey(name="trainer", sha256=key_hash(TRAIN_KEY), scopes=frozenset({"train"})),
        ApiKey(name="app", sha256=key_hash(CLASSIFY_KEY), scopes=frozenset({"classify"})),
    )
    settings = service_settings.model_copy(update={"redis_url": redis_url, "auth_enabled": True, "api_keys": keys})
    with running_server(settings) as url:
        assert_problem(httpx.get(f"{url}{JOBS}"), 401, "")
        assert_problem(httpx.get(f"{url}{JOBS}", headers={"Authorization": f"Bearer {CLASSIFY_KEY}"}), 403, "train")
        assert httpx.get(f"{url}{JOBS}", headers={"Authorization": f"Bearer {TRAIN_KEY}"}).status_code == 200


def test_without_redis_jobs_are_503_and_classification_goes_on(service_settings: ServiceSettings, png: bytes) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    for redis_url in (None, dead):
        with running_server(service_settings.model_copy(update={"redis_url": redis_url})) as url:
            answer = httpx.get(f"{url}{JOBS}")
            assert_problem(answer, 503, "IMGCLS_REDIS_URL" if redis_url is None else "does not answer")
            assert answer.headers["Retry-After"] == "5"
            classify = httpx.post(
                f"{url}/v1/models/fashion-mnist/classify", content=png, headers={"Content-Type": "image/png"}
            )
            assert classify.status_code == 200


def test_an_event_id_that_is_not_one_is_400(server: str, dataset: str) -> None:
    job = submit(server, {"base_model": "fashion-mnist", "dataset": dataset}).json()
    events = f"{server}{JOBS}/{job['id']}/events"
    assert_problem(httpx.get(events, params={"after": "bogus"}), 400, "'bogus' is not an event id")
    stream = httpx.get(events, headers={"Accept": "text/event-stream", "Last-Event-ID": "x"})
    assert_problem(stream, 400, "'x' is not an event id")
    first = httpx.get(events, params={"limit": 1}).json()
    assert [e["message"] for e in httpx.get(events, params={"after": first["next_after"]}).json()["data"]] == ["queued"]
