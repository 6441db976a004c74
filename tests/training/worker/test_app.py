"""Fine-tuning jobs end to end: the API takes a zip and a job, a real worker process trains and publishes,
and the API answers with the new version; plus cancel, a killed worker, a Redis restart, a queue and a
sweep. Every part is real (tests/training/worker/conftest.py)."""

import functools
import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import torch
from PIL import Image

from service.jobs.queue import FINISH_JOB, RUN_TRIAL
from service.repository import ModelRepository
from tests.conftest import FASHION_MNIST
from tests.training.worker.conftest import CLASSES, Stack
from training.data import load_dataset
from training.settings import TrainingSettings
from training.worker.app import create_worker_app


def sse_events(url: str, timeout_s: float = 120) -> list[dict[str, Any]]:
    """Read a server-sent-events stream to its end (the server closes it once the job finished)."""
    events = []
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=timeout_s) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line.removeprefix("data:").strip()))
    return events


@functools.cache
def sneaker_png() -> bytes:
    test = load_dataset("fashion-mnist", fashion_mnist_dir=FASHION_MNIST)
    index = int((test.test_labels == 7).nonzero()[0])
    buffer = io.BytesIO()
    Image.fromarray(test.test_images[index, 0].numpy(), "L").save(buffer, "PNG")
    return buffer.getvalue()


def test_a_zip_becomes_a_served_version(stack_factory: Callable[..., Stack], dataset_zip: bytes) -> None:
    stack = stack_factory()
    dataset = stack.upload(dataset_zip)
    job = stack.submit(dataset, auto_promote=True, min_accuracy=0.5, metadata={"team": "shoes"})
    assert job["status"] == "queued" and job["base_version"] == 1 and len(job["trials"]) == 1
    assert job["hyperparameters"]["optimizer"] == "adamw"  # unset ones resolved and stored

    events = sse_events(f"{stack.url}/v1/fine-tuning/jobs/{job['id']}/events")
    statuses = [event["data"]["status"] for event in events if event["type"] == "status"]
    assert statuses == ["validating", "queued", "running", "succeeded"], stack.logs()
    assert [event["data"]["epoch"] for event in events if event["type"] == "epoch"] == [1, 2]

    done = stack.job(job["id"])
    result = done["result"]
    assert result["model"] == f"fashion-mnist-{dataset}" and result["version"] == 1 and result["promoted"]
    assert done["trials"][0]["hyperparameters"]["weight_decay"] == 5e-4  # resolved by the worker
    assert done["estimated_finish_at"] is None and done["finished_at"] is not None

    metrics = httpx.get(f"{stack.url}/v1/fine-tuning/jobs/{job['id']}/metrics").json()["data"]
    assert [row["epoch"] for row in metrics] == [1, 2] and all(0 <= row["val_accuracy"] <= 1 for row in metrics)
    checkpoints = httpx.get(f"{stack.url}/v1/fine-tuning/jobs/{job['id']}/checkpoints").json()
    assert [(c["trial"], c["epoch"]) for c in checkpoints] == [(0, 2)]

    lineage = ModelRepository(stack.folder / "models").manifest(result["model"], 1).lineage
    assert (lineage.job_id, lineage.dataset, lineage.base_version) == (job["id"], f"dataset:{dataset}", 1)

    deadline = time.monotonic() + 10  # the server loads the new model once it sees it
    while True:
        answer = httpx.post(
            f"{stack.url}/v1/models/{result['model']}/classify",
            content=sneaker_png(),
            headers={"Content-Type": "image/png"},
        )
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 1 and answer.json()["results"][0]["top"][0]["label"] in CLASSES.values()


def test_a_trial_that_stops_early_says_so_in_the_job_log(
    stack_factory: Callable[..., Stack], dataset_zip: bytes
) -> None:
    """Epoch 1 trains the new head alone at a modest rate (a sigmoid policy still low); epoch 2 runs the whole
    network at Adam's rates near 1, which wrecks it, so patience 1 ends the trial there and epoch 1 is kept."""
    stack = stack_factory()
    wrecking = {
        "epochs": 6,
        "batch_size": 16,
        "optimizer": "adam",
        "learning_rate": 1.0,
        "lr_policy": "sigmoid",
        "lr_policy_options": {"gamma": 0.5, "step_size": 10},
        "backbone_lr_multiplier": 1.0,
        "early_stopping_patience": 1,
    }
    job = stack.submit(stack.upload(dataset_zip), hyperparameters=wrecking)
    done = stack.finished(job["id"])
    assert done["status"] == "succeeded", stack.logs()
    assert (done["result"]["metrics"]["epochs"], done["result"]["metrics"]["best_epoch"]) == (2, 1)
    said = [e for e in stack.events(job["id"]) if e["type"] == "message" and "stopped early" in e["message"]]
    assert [e["message"] for e in said] == [
        "trial 0 stopped early after epoch 2: no better validation accuracy in the 1 epoch(s) after epoch 1 "
        "(early_stopping_patience 1)"
    ]
    assert said[0]["data"] == {"trial": 0, "epoch": 2, "best_epoch": 1}


# jobs that must still be running when the test acts: no early stopping (on by default)
EVERY_EPOCH = {"early_stopping_patience": 0}


def epochs_done(job: dict[str, Any], trial: int = 0) -> int:
    return int(job["trials"][trial]["epochs_completed"])


def published(stack: Stack) -> list[str]:
    """Every model and version in the repository but the base: what jobs published."""
    repository = ModelRepository(stack.folder / "models")
    return [
        f"{name} v{v}" for name in repository.models() if name != "fashion-mnist" for v in repository.versions(name)
    ]


def test_cancel_stops_a_running_job_within_seconds(stack_factory: Callable[..., Stack], dataset_zip: bytes) -> None:
    stack = stack_factory()
    job = stack.submit(stack.upload(dataset_zip), hyperparameters={"epochs": 500, "batch_size": 16, **EVERY_EPOCH})
    stack.wait(job["id"], lambda j: epochs_done(j) >= 1)

    asked = time.monotonic()
    answer = httpx.post(f"{stack.url}/v1/fine-tuning/jobs/{job['id']}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelling"
    done = stack.finished(job["id"], timeout_s=30)
    assert done["status"] == "cancelled" and done["trials"][0]["status"] == "cancelled", done
    assert time.monotonic() - asked < 10 and epochs_done(done) < 500
    assert published(stack) == []

    again = httpx.post(f"{stack.url}/v1/fine-tuning/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_a_worker_killed_mid_training_is_replaced_and_the_job_finishes_once(
    stack_factory: Callable[..., Stack], dataset_zip: bytes
) -> None:
    stack = stack_factory()
    job = stack.submit(stack.upload(dataset_zip), hyperparameters={"epochs": 12, "batch_size": 16, **EVERY_EPOCH})
    before = stack.wait(job["id"], lambda j: epochs_done(j) >= 2)
    stack.kill_worker(stack.workers[0])
    stack.start_worker()

    done = stack.finished(job["id"])
    assert done["status"] == "succeeded", stack.logs()
    assert done["trials"][0]["attempts"] == 2 and published(stack) == [f"{done['result']['model']} v1"]
    epochs = [e["data"]["epoch"] for e in stack.events(job["id"]) if e["type"] == "epoch"]
    resumed = epochs[epochs_done(before) :]
    assert resumed[0] > 1 and epochs[-1] == 12  # the second attempt resumed from a checkpoint
    trial_log = [e["data"]["status"] for e in stack.events(job["id"]) if e["type"] == "trial"]
    assert trial_log == ["running", "queued", "running", "succeeded"]  # lost, requeued by recovery, resumed


def test_redis_restarting_during_a_job_loses_nothing(stack_factory: Callable[..., Stack], dataset_zip: bytes) -> None:
    stack = stack_factory(persistent=True)
    dataset = stack.upload(dataset_zip)
    job = stack.submit(dataset, hyperparameters={"epochs": 15, "batch_size": 16, **EVERY_EPOCH})
    stack.wait(job["id"], lambda j: epochs_done(j) >= 1)
    statuses: list[int] = []
    stop = threading.Event()

    def classify_all_along() -> None:
        image = sneaker_png()
        while not stop.is_set():
            answer = httpx.post(
                f"{stack.url}/v1/models/fashion-mnist/classify", content=image, headers={"Content-Type": "image/png"}
            )
            statuses.append(answer.status_code)

    traffic = threading.Thread(target=classify_all_along)
    traffic.start()
    stack.redis.stop()
    down = httpx.get(f"{stack.url}/v1/fine-tuning/jobs/{job['id']}")
    assert down.status_code == 503 and "does not answer" in down.json()["detail"] and "Retry-After" in down.headers
    refused = httpx.post(f"{stack.url}/v1/fine-tuning/jobs", json={"base_model": "fashion-mnist", "dataset": dataset})
    assert refused.status_code == 503  # not accepted, so nothing to lose
    while_down = len(statuses)
    deadline = time.monotonic() + 30
    while len(statuses) < while_down + 10 and time.monotonic() < deadline:  # classify while Redis is down
        time.sleep(0.1)
    stack.redis.start()
    stop.set()
    traffic.join()
    assert len(statuses) >= while_down + 10 and set(statuses) == {200}  # classification never noticed

    done = stack.finished(job["id"])
    assert done["status"] == "succeeded", stack.logs()
    assert published(stack) == [f"{done['result']['model']} v1"]
    assert [j["id"] for j in httpx.get(f"{stack.url}/v1/fine-tuning/jobs").json()["data"]] == [job["id"]]


def test_two_jobs_and_one_worker_run_one_after_the_other_and_auto_promote_swaps(
    stack_factory: Callable[..., Stack], dataset_zip: bytes
) -> None:
    stack = stack_factory()
    dataset = stack.upload(dataset_zip)
    first = stack.submit(dataset, suffix="shoes")
    second = stack.submit(dataset, suffix="shoes", auto_promote=True, min_accuracy=0.0)
    running = stack.wait(first["id"], lambda j: j["status"] == "running")
    assert running["status"] == "running" and stack.job(second["id"])["status"] == "queued"

    assert stack.finished(first["id"])["result"]["version"] == 1  # a new name's first version: production
    deadline = time.monotonic() + 10
    while classify_version(stack, "fashion-mnist-shoes") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = stack.finished(second["id"])
    assert (done["result"]["version"], done["result"]["promoted"]) == (2, True)
    assert published(stack) == ["fashion-mnist-shoes v1", "fashion-mnist-shoes v2"]
    deadline = time.monotonic() + 10  # the running API hot-swaps to the promoted version
    while classify_version(stack, "fashion-mnist-shoes") != 2:
        assert time.monotonic() < deadline, "the API did not swap to the promoted version"
        time.sleep(0.05)


def classify_version(stack: Stack, model: str) -> int | None:
    answer = httpx.post(
        f"{stack.url}/v1/models/{model}/classify", content=sneaker_png(), headers={"Content-Type": "image/png"}
    )
    return int(answer.json()["version"]) if answer.status_code == 200 else None


def test_a_sweep_of_three_learning_rates_publishes_its_best_trial(
    stack_factory: Callable[..., Stack], dataset_zip: bytes
) -> None:
    stack = stack_factory()
    rates = [0.1, 0.01, 0.0001]
    job = stack.submit(
        stack.upload(dataset_zip), hyperparameters={"epochs": 2, "batch_size": 16, "learning_rate": rates}
    )
    assert job["hyperparameters"]["learning_rate"] == rates
    assert [t["hyperparameters"]["learning_rate"] for t in job["trials"]] == rates

    done = stack.finished(job["id"], timeout_s=180)
    assert done["status"] == "succeeded", stack.logs()
    accuracies = [trial["metrics"]["val_accuracy"] for trial in done["trials"]]
    best = max(range(3), key=lambda i: (accuracies[i], -i))
    assert done["result"]["trial"] == best and published(stack) == [f"{done['result']['model']} v1"]
    rows = httpx.get(f"{stack.url}/v1/fine-tuning/jobs/{job['id']}/metrics").json()["data"]
    assert sorted({(row["trial"], row["epoch"]) for row in rows}) == [(t, e) for t in range(3) for e in (1, 2)]


def test_the_worker_app_keeps_the_delivery_rules_and_leaves_cuda_alone(tmp_path: Path) -> None:
    settings = TrainingSettings(redis_url="redis://127.0.0.1:1/0", job_max_seconds=600, runs_dir=tmp_path)
    conf = create_worker_app(settings).conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.worker_prefetch_multiplier) == (True, True, 1)
    assert conf.worker_max_tasks_per_child == 1 and conf.task_soft_time_limit == 600 < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert set(create_worker_app(settings).tasks) >= {RUN_TRIAL, FINISH_JOB}
    assert not torch.cuda.is_initialized()  # the prefork parent never touches CUDA
