"""POST /v1/models/{name}/versions on a real server, then the imported versions served over /v1 and /v2,
their answers held against onnxruntime run directly on the same preprocessed tensors; and every refusal:
a problem naming the check, no version published, no upload left on disk."""

import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from service.imaging import DecodeLimits
from service.importing.calibrate import softmax
from service.inference.classify import prepare
from service.repository import Manifest, ModelRepository
from service.settings import ServiceSettings
from tests.service.api.server import running_server
from tests.service.importing import onnx_models
from tests.service.importing.onnx_models import LABELS, OnnxFiles
from tests.service.importing.test_publish import photo

PHOTOS = [photo(1, (80, 60)), photo(2, (64, 64), "JPEG"), photo(3, (50, 120))]


@pytest.fixture(scope="module")
def shared_settings(trained_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> ServiceSettings:
    root = tmp_path_factory.mktemp("imports")
    return ServiceSettings(
        model_root=Path(shutil.copytree(trained_repository, root / "models")),
        data_root=root / "data",
        auth_enabled=False,
        intra_op_threads=1,
        watch_interval_s=0.1,
    )


@pytest.fixture(scope="module")
def shared_server(shared_settings: ServiceSettings) -> Iterator[str]:
    with running_server(shared_settings) as url:
        yield url


def send(url: str, name: str, model: bytes, options: dict[str, Any], filename: str = "model.onnx") -> httpx.Response:
    return httpx.post(
        f"{url}/v1/models/{name}/versions",
        files={"model": (filename, model, "application/octet-stream")},
        data={"options": json.dumps(options)},
        timeout=60,
    )


def imported(url: str, name: str, model: Path, **options: Any) -> dict[str, Any]:
    """Import ``model`` as ``name`` and wait until the server serves it."""
    answer = send(url, name, model.read_bytes(), {"labels": list(LABELS), **options}, filename=model.name)
    assert answer.status_code == 201, answer.text
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/v1/models/{name}").json().get("serving_version") != answer.json()["version"]:
        assert time.monotonic() < deadline, "the server did not load the imported version"
        time.sleep(0.05)
    body: dict[str, Any] = answer.json()
    return body


def direct(model: Path, images: list[bytes], manifest: Manifest) -> np.ndarray:
    """What the service should answer: onnxruntime on the file itself, image by image, on the service's own
    preprocessing; softmax only for logits."""
    batch = prepare(images, manifest.preprocessing, DecodeLimits())
    if manifest.preprocessing.layout == "NHWC":
        batch = batch.transpose(0, 2, 3, 1)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = np.concatenate([session.run(None, {name: np.ascontiguousarray(row[None])})[0] for row in batch])
    return outputs if manifest.scores == "probabilities" else softmax(outputs, manifest.temperature)


def v1_probabilities(url: str, name: str, images: list[bytes]) -> np.ndarray:
    files = [("images", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(images)]
    answer = httpx.post(f"{url}/v1/models/{name}/classify", params={"top_k": len(LABELS)}, files=files, timeout=30)
    assert answer.status_code == 200, answer.text
    rows = np.zeros((len(images), len(LABELS)))
    for row, result in zip(rows, answer.json()["results"], strict=True):
        for prediction in result["top"]:
            row[prediction["index"]] = prediction["probability"]
    return rows


def v2_infer(url: str, name: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None) -> Any:
    body: dict[str, Any] = {"inputs": inputs} | ({"outputs": outputs} if outputs else {})
    answer = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["outputs"][0]


def image_bytes_input(images: list[bytes]) -> dict[str, Any]:
    data = [base64.b64encode(image).decode() for image in images]
    return {"name": "image_bytes", "datatype": "BYTES", "shape": [len(images)], "data": data}


@pytest.mark.parametrize("kind", ["torchvision", "nhwc_softmax", "fixed_batch"])
def test_an_imported_model_answers_v1_and_v2_as_onnxruntime_does(
    shared_server: str, shared_settings: ServiceSettings, onnx_files: OnnxFiles, kind: str
) -> None:
    url, model, name = shared_server, getattr(onnx_files, kind), kind.replace("_", "-")
    summary = imported(url, name, model)
    assert summary["aliases"] == ["production"] and summary["fine_tunable"] is False
    assert summary["checks_passed"][-1] == "trial inference" and summary["source"] == model.name
    manifest = ModelRepository(shared_settings.model_root).manifest(name, summary["version"])
    expected = direct(model, PHOTOS, manifest)
    assert summary["scores"] == manifest.scores == ("probabilities" if kind == "nhwc_softmax" else "logits")
    assert summary["batch_mode"] == ("one at a time" if kind == "fixed_batch" else "dynamic")

    np.testing.assert_allclose(v1_probabilities(url, name, PHOTOS), expected, rtol=1e-4, atol=1e-6)
    by_bytes = v2_infer(url, name, [image_bytes_input(PHOTOS)])
    np.testing.assert_allclose(np.reshape(by_bytes["data"], (3, 3)), expected, rtol=1e-4, atol=1e-6)

    tensor = prepare(PHOTOS, manifest.preprocessing, DecodeLimits())  # what a client that preprocesses sends
    if manifest.preprocessing.layout == "NHWC":
        tensor = tensor.transpose(0, 2, 3, 1)
    fp32 = {
        "name": manifest.input.name,
        "datatype": "FP32",
        "shape": list(tensor.shape),
        "data": tensor.ravel().tolist(),
    }
    by_tensor = v2_infer(url, name, [fp32])
    np.testing.assert_allclose(np.reshape(by_tensor["data"], (3, 3)), expected, rtol=1e-4, atol=1e-6)

    ranked = v2_infer(
        url, name, [image_bytes_input(PHOTOS[:1])], [{"name": "probabilities", "parameters": {"classification": 2}}]
    )
    best = int(np.argmax(expected[0]))
    assert ranked["datatype"] == "BYTES" and ranked["data"][0].endswith(f":{best}:{LABELS[best]}")

    metadata = httpx.get(f"{url}/v2/models/{name}").json()
    assert metadata["inputs"][0]["shape"] == [-1, *tensor.shape[1:]]
    config = httpx.get(f"{url}/v2/models/{name}/config").json()
    assert config["input"][0]["format"] == f"FORMAT_{manifest.preprocessing.layout}"


def test_the_model_list_and_detail_show_an_imported_version(shared_server: str, onnx_files: OnnxFiles) -> None:
    imported(shared_server, "listed", onnx_files.fixed_batch)
    detail = httpx.get(f"{shared_server}/v1/models/listed").json()
    assert detail["labels"] == list(LABELS) and detail["versions"][0]["architecture"] == "onnx"
    assert detail["versions"][0]["metrics"] == {}
    assert detail["versions"][0]["lineage"]["imported"] == "fixed.onnx"
    assert "listed" in [model["name"] for model in httpx.get(f"{shared_server}/v1/models").json()]


def test_a_second_import_is_promoted_by_hand_and_hot_swapped(shared_server: str, onnx_files: OnnxFiles) -> None:
    first = imported(shared_server, "swapped", onnx_files.fixed_batch)
    second = send(shared_server, "swapped", onnx_files.nhwc_softmax.read_bytes(), {"labels": list(LABELS)})
    assert second.status_code == 201 and second.json()["version"] == first["version"] + 1
    assert second.json()["aliases"] == []  # published, not served: promotion is explicit
    assert httpx.get(f"{shared_server}/v1/models/swapped").json()["serving_version"] == first["version"]
    promoted = httpx.post(f"{shared_server}/v1/models/swapped/promote", json={"version": second.json()["version"]})
    assert promoted.status_code == 200 and promoted.json()["serving_version"] == second.json()["version"]
    assert np.allclose(v1_probabilities(shared_server, "swapped", PHOTOS[:1]).sum(), 1.0, atol=1e-4)


def assert_refused(url: str, settings: ServiceSettings, answer: httpx.Response, status: int, detail: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert detail in answer.json()["detail"], answer.json()
    assert "refused" not in ModelRepository(settings.model_root).models()
    uploads = settings.data_root / "imports"
    assert not uploads.exists() or list(uploads.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "options", "status", "detail"),
    [
        (lambda p: onnx_models.graph_model(p, extra_input=True), {}, 422, "input: the model takes 2 inputs"),
        (lambda p: onnx_models.graph_model(p, classes=4), {}, 422, "output: 'y' has 4 classes but 3 labels"),
        (lambda p: onnx_models.graph_model(p, reshape_to=2), {}, 422, "trial inference: onnxruntime failed"),
        (lambda p: onnx_models.graph_model(p, head_op=("com.example", "X")), {}, 422, "domains: custom operator"),
        (lambda p: onnx_models.external_data_model(p, "../../etc/passwd"), {}, 400, "external data: tensor 'w'"),
        (lambda p: onnx_models.external_data_model(p, "weights.bin"), {}, 400, "an upload is one file"),
        (lambda p: onnx_models.graph_model(p), {"labels": ["a", "a", "b"]}, 422, "labels: duplicate labels"),
        (lambda p: onnx_models.graph_model(p), {"resize": 8, "layout": "NHWC"}, 422, "input: shape [batch, 3, 8, 8]"),
        (lambda p: onnx_models.graph_model(p), {"input_size": 16}, 400, "input size: the model's input height is"),
        (lambda p: onnx_models.graph_model(p), {"colour": "RGB"}, 400, "the field 'options' is invalid"),
    ],
)
def test_a_bad_import_is_a_problem_naming_its_check_and_publishes_nothing(
    shared_server: str,
    shared_settings: ServiceSettings,
    tmp_path: Path,
    make: Any,
    options: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    model = make(tmp_path / "model.onnx").read_bytes()
    answer = send(shared_server, "refused", model, {"labels": list(LABELS), "resize": 8} | options)
    assert_refused(shared_server, shared_settings, answer, status, detail)


def test_bodies_that_are_not_an_import_are_refused(shared_server: str, shared_settings: ServiceSettings) -> None:
    url = f"{shared_server}/v1/models/refused/versions"
    not_onnx = send(shared_server, "refused", b"GIF89a not a model", {"labels": list(LABELS)})
    assert_refused(shared_server, shared_settings, not_onnx, 422, "onnx file: model.onnx is not an ONNX model")
    no_options = httpx.post(url, files={"model": ("m.onnx", b"x")})
    assert_refused(shared_server, shared_settings, no_options, 400, "no multipart field 'options'")
    raw = httpx.post(url, content=b"x", headers={"content-type": "application/octet-stream"})
    assert_refused(shared_server, shared_settings, raw, 415, "multipart/form-data")
    bad_name = send(shared_server, "Bad_Name", b"x", {"labels": list(LABELS)})
    assert bad_name.status_code == 400 and "invalid model name 'Bad_Name'" in bad_name.json()["detail"]


def test_an_upload_over_the_cap_is_413_and_leaves_nothing(
    service_settings: ServiceSettings, tmp_path: Path, onnx_files: OnnxFiles
) -> None:
    settings = service_settings.model_copy(update={"import_max_upload_bytes": 50_000, "data_root": tmp_path / "data"})
    model = onnx_files.torchvision.read_bytes()
    assert len(model) > 50_000
    with running_server(settings) as url:
        declared = send(url, "refused", model, {"labels": list(LABELS)})
        assert_refused(url, settings, declared, 413, "over 50,000 bytes")
        streamed = httpx.post(  # no Content-Length: counted as it arrives
            f"{url}/v1/models/refused/versions",
            content=iter([chunk for chunk in multipart_chunks(model)]),
            headers={"content-type": "multipart/form-data; boundary=b0undary"},
            timeout=60,
        )
        assert_refused(url, settings, streamed, 413, "over 50,000 bytes")


def multipart_chunks(model: bytes) -> Iterator[bytes]:
    yield b'--b0undary\r\nContent-Disposition: form-data; name="options"\r\n\r\n{"labels": ["cat", "dog", "fish"]}\r\n'
    yield b'--b0undary\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n\r\n'
    for start in range(0, len(model), 16_384):
        yield model[start : start + 16_384]
    yield b"\r\n--b0undary--\r\n"


def test_serving_does_not_load_onnx_until_a_model_is_imported() -> None:
    """onnx (about 10 MB per process) is imported by the import route when it runs, not by every server."""
    code = "import sys, service.api.app; print('onnx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
