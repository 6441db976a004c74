"""From photos to answers, every part real: an ImageNet base imported from a torchvision weights file
(made here), a zip of synthetic colour photos uploaded over ``POST /v1/datasets``, a fine-tuning job run
by an ``imgcls worker`` through Redis, auto-promoted, then new photos classified over /v1 and /v2."""

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.repository import ModelRepository
from tests.training.synthetic_photos import COLOURS, photo_set, photo_zip
from tests.training.torchvision_files import imported_base
from tests.training.worker.conftest import Stack

# A linear probe on resnet18's features: the backbone stays frozen in every epoch. With test-made (random)
# weights, training it too would cost ten times as long for nothing the test shows. No augmentation: the
# photo recipe's random crops (down to 8 % of the area) often miss the one shape that gives the class.
HYPERPARAMETERS = {
    "epochs": 6,
    "batch_size": 4,
    "learning_rate": 0.01,
    "freeze_backbone_epochs": 6,
    "augment": "none",
}
MIME = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


@pytest.fixture(scope="module")
def trained_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Overrides the Fashion-MNIST template: a repository holding only ``resnet18-imagenet`` v1."""
    root = tmp_path_factory.mktemp("imagenet")
    imported_base(root / "models", "resnet18", root / "downloads")
    return root / "models"


def test_photos_fine_tune_an_imagenet_base_and_new_photos_are_classified(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(workers=0)
    stack.env["OMP_NUM_THREADS"] = "2"  # the conftest's 1 thread would double the training time
    stack.start_worker()
    dataset = stack.upload(photo_zip(12, seed=0))  # 36 photos, 64x48 to 1600x1200, JPEG/PNG/WebP, EXIF
    job = stack.submit(
        dataset, base_model="resnet18-imagenet", hyperparameters=HYPERPARAMETERS, auto_promote=True, min_accuracy=0.5
    )
    done = stack.finished(job["id"], timeout_s=240)
    assert done["status"] == "succeeded", stack.logs()
    model = done["result"]["model"]
    assert model == f"resnet18-imagenet-{dataset}" and done["result"]["promoted"]
    repository = ModelRepository(stack.folder / "models")
    manifest = repository.verify(model, 1)
    assert manifest.labels == tuple(COLOURS) and manifest.output.shape == (-1, 3)  # a new head
    base = repository.manifest("resnet18-imagenet", 1)
    assert manifest.preprocessing == base.preprocessing  # served as the base: RGB, 256, 224, ImageNet mean/std
    assert (manifest.lineage.base_model, manifest.lineage.base_version) == ("resnet18-imagenet", 1)

    new = photo_set(5, seed=1)  # 15 photos the job never saw
    files = [("images", (name, data, MIME[name.rsplit(".", 1)[1]])) for _, name, data in new]
    answer = wait_for_model(stack, model, files)
    v1 = [result["top"][0]["label"] for result in answer["results"]]

    body = {
        "inputs": [
            {
                "name": "image_bytes",
                "datatype": "BYTES",
                "shape": [len(new)],
                "data": [base64.b64encode(data).decode() for _, _, data in new],
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
    }
    v2_answer = httpx.post(f"{stack.url}/v2/models/{model}/infer", json=body, timeout=60)
    assert v2_answer.status_code == 200, v2_answer.text
    v2 = [entry.split(":", 2)[2] for entry in v2_answer.json()["outputs"][0]["data"]]

    truth = [label for label, _, _ in new]
    assert v1 == v2  # one pipeline behind both
    accuracy = sum(p == t for p, t in zip(v1, truth, strict=True)) / len(truth)
    assert accuracy >= 0.6, (accuracy, v1, truth)  # three classes: chance is 1/3


def wait_for_model(stack: Stack, model: str, files: list[tuple[str, tuple[str, bytes, str]]]) -> dict[str, Any]:
    """/v1 classify once the server has loaded the new version (it hears of it through Redis)."""
    deadline = time.monotonic() + 20
    while True:
        answer = httpx.post(f"{stack.url}/v1/models/{model}/classify", files=files, timeout=60)
        if answer.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result
