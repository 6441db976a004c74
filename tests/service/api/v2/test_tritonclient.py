"""The stock tritonclient[http] against a real server: every call a Triton user makes, unchanged."""

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from service.repository import Manifest
from tests.service.api.conftest import png_bytes
from tests.service.api.v2.conftest import MODEL, preprocessed, triton_client


def fp32_input(images: np.ndarray, *, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", list(images.shape), "FP32")
    return tensor.set_data_from_numpy(images, binary_data=binary)


def image_input(images: list[bytes], shape: list[int] | None = None) -> triton.InferInput:
    array = np.array(images, dtype=np.object_).reshape(shape or [len(images)])
    return triton.InferInput("image_bytes", list(array.shape), "BYTES").set_data_from_numpy(array)


def v1_probabilities(server: str, images: list[bytes]) -> np.ndarray:
    """Every class's calibrated probability from /v1 classify (top_k = all labels), in label order."""
    files = [("images", (f"{i}.png", data)) for i, data in enumerate(images)]
    response = httpx.post(f"{server}/v1/models/{MODEL}/classify?top_k=10", files=files)
    assert response.status_code == 200, response.text
    table = np.zeros((len(images), 10), dtype=np.float32)
    for row, result in enumerate(response.json()["results"]):
        for entry in result["top"]:
            table[row, entry["index"]] = entry["probability"]
    return table


@pytest.fixture(scope="module")
def pngs() -> list[bytes]:
    return [png_bytes(seed) for seed in range(4)]


# ---------------------------------------------------------------- server, metadata, config, readiness, repository


def test_health_and_server_metadata(client: triton.InferenceServerClient, shared_server: str) -> None:
    assert client.is_server_live() and client.is_server_ready()
    paths = httpx.get(f"{shared_server}/schema/openapi.json").json()["paths"]
    assert {"/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"} <= paths.keys()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "imgcls"
    assert sorted(metadata["extensions"]) == [
        "binary_tensor_data",
        "classification",
        "model_configuration",
        "model_repository",
    ]


def test_model_metadata_declares_exactly_what_infer_returns(
    client: triton.InferenceServerClient, pngs: list[bytes]
) -> None:
    metadata = client.get_model_metadata(MODEL)
    assert client.get_model_metadata(MODEL, "1") == metadata
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == (MODEL, ["1"], "onnxruntime_onnx")
    assert metadata["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]},
        {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
    ]
    [declared] = metadata["outputs"]
    result = client.infer(MODEL, [image_input(pngs)])  # no outputs named: every output
    [returned] = result.get_response()["outputs"]
    assert (returned["name"], returned["datatype"]) == (declared["name"], declared["datatype"])
    assert returned["shape"] == [len(pngs), declared["shape"][1]]
    assert client.get_model_metadata(MODEL, "2")["name"] == MODEL  # published, not loaded: still described


def test_triton_style_config(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config(MODEL)
    assert (config["platform"], config["max_batch_size"]) == ("onnxruntime_onnx", 64)
    assert config["input"][0] == {
        "name": "input",
        "data_type": "TYPE_FP32",
        "format": "FORMAT_NCHW",
        "dims": [1, 28, 28],
        "optional": True,
    }
    assert config["input"][1]["data_type"] == "TYPE_STRING"
    assert config["output"] == [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10]}]
    assert client.get_model_config(MODEL, "1") == config


def test_model_readiness_with_and_without_version(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready(MODEL, "2")  # published, not loaded
    assert not client.is_model_ready("shoes")


def test_repository_index(client: triton.InferenceServerClient) -> None:
    index = client.get_model_repository_index()
    listed = [(entry["name"], entry["version"], entry["state"]) for entry in index]
    assert listed == [(MODEL, "1", "READY"), (MODEL, "2", "UNAVAILABLE")]
    assert "not loaded" in index[1]["reason"]


# ---------------------------------------------------------------- infer


def test_binary_fp32_input_gives_what_v1_gives(
    client: triton.InferenceServerClient, shared_server: str, pngs: list[bytes], manifest: Manifest
) -> None:
    result = client.infer(MODEL, [fp32_input(preprocessed(pngs, manifest))], request_id="abc")
    assert result.get_response()["id"] == "abc"
    assert result.get_response()["model_version"] == "1"
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities, v1_probabilities(shared_server, pngs), rtol=1e-5, atol=1e-7)


def test_json_fp32_input_and_output_give_the_same_answer(
    client: triton.InferenceServerClient, pngs: list[bytes], manifest: Manifest
) -> None:
    images = preprocessed(pngs, manifest)
    binary = client.infer(MODEL, [fp32_input(images)]).as_numpy("probabilities")
    as_json = client.infer(
        MODEL,
        [fp32_input(images, binary=False)],
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)],
    )
    assert "data" in as_json.get_response()["outputs"][0]
    np.testing.assert_allclose(as_json.as_numpy("probabilities"), binary, rtol=1e-6)


@pytest.mark.parametrize("shape", [None, [4, 1]])
def test_image_bytes_are_decoded_and_preprocessed_by_the_server(
    client: triton.InferenceServerClient, pngs: list[bytes], manifest: Manifest, shape: list[int] | None
) -> None:
    from_images = client.infer(MODEL, [image_input(pngs, shape)]).as_numpy("probabilities")
    from_tensor = client.infer(MODEL, [fp32_input(preprocessed(pngs, manifest))]).as_numpy("probabilities")
    np.testing.assert_array_equal(from_images, from_tensor)


@pytest.mark.parametrize("binary", [True, False])
def test_class_count_gives_ranked_calibrated_probabilities(
    client: triton.InferenceServerClient, pngs: list[bytes], manifest: Manifest, binary: bool
) -> None:
    probabilities = client.infer(MODEL, [image_input(pngs)]).as_numpy("probabilities")
    ranked = client.infer(
        MODEL,
        [image_input(pngs)],
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)],
    ).as_numpy("probabilities")
    assert ranked.shape == (4, 3)
    for row, entries in zip(probabilities, ranked, strict=True):
        parsed = [(entry.decode() if isinstance(entry, bytes) else entry).split(":") for entry in entries]
        indices = [int(index) for _, index, _ in parsed]
        assert indices == list(np.argsort(-row, kind="stable")[:3])
        assert [label for _, _, label in parsed] == [manifest.labels[i] for i in indices]
        np.testing.assert_allclose([float(value) for value, _, _ in parsed], row[indices], atol=1e-6)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(
    client: triton.InferenceServerClient, pngs: list[bytes], manifest: Manifest, algorithm: str
) -> None:
    images = preprocessed(pngs, manifest)
    plain = client.infer(MODEL, [fp32_input(images)]).as_numpy("probabilities")
    packed = client.infer(MODEL, [fp32_input(images)], request_compression_algorithm=algorithm)
    np.testing.assert_array_equal(packed.as_numpy("probabilities"), plain)


def test_async_infer_with_many_requests_in_flight(shared_server: str, pngs: list[bytes], manifest: Manifest) -> None:
    images = preprocessed(pngs, manifest)
    with triton_client(shared_server) as one:
        expected = one.infer(MODEL, [fp32_input(images)]).as_numpy("probabilities")
    with triton_client(shared_server, concurrency=16) as many:
        handles = [many.async_infer(MODEL, [fp32_input(images)], request_id=str(i)) for i in range(96)]
        results = [handle.get_result(timeout=60) for handle in handles]
    assert [r.get_response()["id"] for r in results] == [str(i) for i in range(96)]
    for result in results:
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5, atol=1e-7)


def test_an_unknown_model_surfaces_our_message_through_the_client(
    client: triton.InferenceServerClient, pngs: list[bytes]
) -> None:
    with pytest.raises(triton.InferenceServerException) as caught:
        client.infer("shoes", [image_input(pngs)])
    assert caught.value.status() == "404"
    assert "no model named 'shoes' in the repository (known: fashion-mnist)" in caught.value.message()
    with pytest.raises(triton.InferenceServerException, match="unknown input 'pixels'"):
        client.infer(MODEL, [triton.InferInput("pixels", [1], "FP32").set_data_from_numpy(np.zeros(1, np.float32))])
