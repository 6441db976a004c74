"""POST /v1/models/{name}/explain on a real server: a cnn trained for a few seconds (published by training with
its explain graph) and an imported ONNX file (none; channels last, probabilities out): the JSON and PNG
answers, ?class=, the errors, and the occlusion fallback."""

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from service.imaging import DecodeLimits
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.inference.classify import prepare
from service.inference.heatmaps import normalized
from service.inference.providers import CPU
from service.repository import ModelRepository
from service.settings import ServiceSettings
from tests.conftest import EXPLAINABLE_MODEL
from tests.service.api.conftest import png_bytes
from tests.service.api.server import running_server
from tests.service.importing.onnx_models import LABELS, OnnxFiles

CNN = EXPLAINABLE_MODEL
IMPORTED = "imported"


@pytest.fixture(scope="module")
def model_root(explainable_repository: Path, tmp_path_factory: pytest.TempPathFactory, onnx_files: OnnxFiles) -> Path:
    root = Path(shutil.copytree(explainable_repository, tmp_path_factory.mktemp("explain") / "models"))
    import_onnx(
        ModelRepository(root),
        onnx_files.nhwc_softmax,  # as Keras exports: channels last, probabilities out
        name=IMPORTED,
        labels=LABELS,
        options=ImportOptions(),
        source="keras_like.onnx",
        command="test",
    )
    return root


@pytest.fixture(scope="module")
def url(model_root: Path) -> Iterator[str]:
    settings = ServiceSettings(model_root=model_root, auth_enabled=False, intra_op_threads=1)
    with running_server(settings) as base:
        yield base


def post(url: str, name: str, images: list[bytes], **params: str) -> httpx.Response:
    files = [("images", (f"{i}.png", data)) for i, data in enumerate(images)]
    return httpx.post(f"{url}/v1/models/{name}/explain", files=files, params=params, timeout=30)


def test_json_answers_classify_top_k_and_the_top_class_map_from_explain_onnx(url: str, model_root: Path) -> None:
    images = [png_bytes(1), png_bytes(2)]
    response = post(url, CNN, images)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model"], answer["version"], answer["method"]) == (CNN, 1, "cam")
    assert answer["model_runs_per_image"] == 1 and answer["input_size"] == [28, 28]
    classified = httpx.post(
        f"{url}/v1/models/{CNN}/classify", files=[("images", (f"{i}.png", d)) for i, d in enumerate(images)]
    ).json()

    repository = ModelRepository(model_root)
    manifest = repository.verify(CNN, 1)
    assert manifest.explain is not None and manifest.explain.pooling == "max" and manifest.explain.map_size == (3, 3)
    batch = prepare(images, manifest.preprocessing, DecodeLimits())
    session = ort.InferenceSession(str(repository.path(CNN, 1) / "explain.onnx"), providers=[CPU])
    _, maps = session.run(["logits", "cam"], {"input": batch})

    for position, (result, plain) in enumerate(zip(answer["results"], classified["results"], strict=True)):
        assert [p["label"] for p in result["top"]] == [p["label"] for p in plain["top"]]  # as classify answers
        np.testing.assert_allclose(
            [p["probability"] for p in result["top"]], [p["probability"] for p in plain["top"]], atol=1e-5
        )
        explanation = result["explanation"]
        best = result["top"][0]
        assert (explanation["label"], explanation["index"]) == (best["label"], best["index"])
        assert explanation["probability"] == pytest.approx(best["probability"], abs=1e-6)
        expected, low, high = normalized(maps[position, best["index"]])
        np.testing.assert_allclose(explanation["map"], expected, atol=1e-4)
        assert explanation["range"] == pytest.approx([low, high], abs=1e-5)
        assert 0 <= explanation["peak"][0] < 28 and 0 <= explanation["peak"][1] < 28


def test_another_class_can_be_explained(url: str) -> None:
    top = post(url, CNN, [png_bytes(3)]).json()["results"][0]
    other = next(label for label in ("Trouser", "Bag") if label != top["top"][0]["label"])
    answer = post(url, CNN, [png_bytes(3)], **{"class": other}).json()["results"][0]
    assert answer["top"] == top["top"]  # the answer does not change, only the class explained
    assert answer["explanation"]["label"] == other and answer["explanation"]["index"] in (1, 8)
    assert answer["explanation"]["map"] != top["explanation"]["map"]


def test_png_is_the_map_drawn_over_the_image_with_the_class_in_headers(url: str) -> None:
    response = post(url, CNN, [png_bytes(4)], format="png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(response.content))
    assert picture.size == (224, 224) and picture.mode == "RGB"
    best = post(url, CNN, [png_bytes(4)]).json()["results"][0]["top"][0]
    assert response.headers["x-explained-label"] == quote(best["label"])
    assert response.headers["x-explained-index"] == str(best["index"])
    assert float(response.headers["x-explained-probability"]) == pytest.approx(best["probability"], abs=1e-5)

    two = post(url, CNN, [png_bytes(4), png_bytes(5)], format="png")
    assert two.status_code == 422 and "format=png answers one image, got 2" in two.json()["detail"]


def test_bad_requests_say_what_is_wrong(url: str) -> None:
    missing = post(url, "no-such-model", [png_bytes()])
    assert missing.status_code == 404 and "no-such-model" in missing.json()["detail"]

    unknown = post(url, CNN, [png_bytes()], **{"class": "zebra"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == (
        f"{CNN} has no class 'zebra'; its labels: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, "
        "Sneaker, Bag, Ankle boot"
    )
    assert post(url, CNN, [png_bytes()], method="gradients").status_code == 400


def test_an_imported_onnx_file_is_refused_then_explained_by_occlusion(url: str) -> None:
    image = png_bytes(6, size=(32, 32), mode="RGB")
    refused = post(url, IMPORTED, [image])
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert detail.startswith("explanations need the last feature map and the classifier's weights")
    assert "imported as an ONNX file" in detail and detail.endswith("add ?method=occlusion")

    response = post(url, IMPORTED, [image], method="occlusion")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["method"] == "occlusion" and answer["model_runs_per_image"] == 50
    result = answer["results"][0]
    plain = httpx.post(f"{url}/v1/models/{IMPORTED}/classify", content=image, headers={"content-type": "image/png"})
    assert [p["label"] for p in result["top"]] == [p["label"] for p in plain.json()["results"][0]["top"]]
    assert result["top"][0]["probability"] == pytest.approx(plain.json()["results"][0]["top"][0]["probability"])
    values = np.array(result["explanation"]["map"])
    assert values.shape == (7, 7) and values.min() == 0.0 and values.max() == 1.0
