"""Raw HTTP against /v2: every bad input is a 4xx with {"error": ...} naming what is wrong, never a 500."""

import gzip
import json
import re

import httpx
import numpy as np
import pytest

from tests.service.api.conftest import png_bytes
from tests.service.api.v2.conftest import MODEL

INFER = f"/v2/models/{MODEL}/infer"
PIXELS = 28 * 28


def fp32_header(shape: list[int], size: int, name: str = "input", datatype: str = "FP32") -> bytes:
    tensor = {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}
    return json.dumps({"inputs": [tensor]}).encode()


def binary_request(header: bytes, data: bytes, length: int | None = None) -> tuple[bytes, dict[str, str]]:
    return header + data, {"Inference-Header-Content-Length": str(len(header) if length is None else length)}


def json_request(**tensor: object) -> bytes:
    return json.dumps({"inputs": [tensor]}).encode()


ONE_IMAGE = np.zeros((1, 1, 28, 28), dtype=np.float32).tobytes()
# a table: one case per entry, its request, headers and status on one line (fmt: skip at the closing brace)
CASES: dict[str, tuple[bytes, dict[str, str], int, str]] = {
    "binary size and shape disagree": (
        *binary_request(fp32_header([2, 1, 28, 28], len(ONE_IMAGE)), ONE_IMAGE), 400,
        "inputs[0] 'input': shape [2, 1, 28, 28] holds 1568 FP32 elements = 6272 bytes, "
        "but parameters.binary_data_size is 3136",
    ),
    "json data and shape disagree": (
        json_request(name="input", shape=[1, 1, 28, 28], datatype="FP32", data=[0.0] * 700), {}, 400,
        "inputs[0] 'input': shape [1, 1, 28, 28] has 784 elements but data has 700",
    ),
    "binary_data_size past the end of the body": (
        *binary_request(fp32_header([1, 1, 28, 28], len(ONE_IMAGE)), ONE_IMAGE[:100]), 400,
        "inputs[0] 'input': parameters.binary_data_size is 3136 but only 100 bytes of the body are left",
    ),
    "unknown datatype": (
        json_request(name="input", shape=[1], datatype="FLOAT", data=[1.0]), {}, 400,
        "inputs[0] 'input': unknown datatype 'FLOAT'",
    ),
    "missing input": (
        b'{"inputs": []}', {}, 400,
        "the request has no inputs; fashion-mnist takes 'input' (FP32 [-1, 1, 28, 28], preprocessed) or 'image_bytes'",
    ),
    "no inputs field": (b'{"outputs": []}', {}, 400, "Object missing required field `inputs`"),
    "wrong input name": (
        json_request(name="pixels", shape=[1], datatype="FP32", data=[1.0]), {}, 400,
        "inputs[0] 'pixels': unknown input 'pixels'",
    ),
    "header length larger than the body": (
        *binary_request(b'{"inputs": []}', b"", length=500), 400,
        "Inference-Header-Content-Length is 500 but the body has only 14 bytes",
    ),
    "header length not a number": (
        *binary_request(b'{"inputs": []}', b"", length=-3), 400,
        "Inference-Header-Content-Length must be a non-negative integer, got '-3'",
    ),
    "bad json": (b'{"inputs": [{"name": "input",', {}, 400, "not valid JSON"),
    "json of the wrong shape": (
        b'{"inputs": [{"name": "input", "shape": "1x784", "datatype": "FP32", "data": []}]}', {}, 400,
        "Expected `array`, got `str` - at `$.inputs[0].shape`",
    ),
    "bad gzip": (b"this is not gzip", {"Content-Encoding": "gzip"}, 400, "the body is not valid gzip data"),
    "truncated gzip": (
        gzip.compress(b'{"inputs": []}' * 50)[:-10], {"Content-Encoding": "gzip"}, 400, "the gzip body is truncated",
    ),
    "unsupported content encoding": (b"{}", {"Content-Encoding": "br"}, 415, "Content-Encoding 'br' is not supported"),
    "fp64 for the fp32 input": (
        json_request(name="input", shape=[1, 1, 28, 28], datatype="FP64", data=[0.0] * PIXELS), {}, 400,
        "inputs[0] 'input': takes FP32, got FP64",
    ),
    "colour image for a grayscale model": (
        json_request(name="input", shape=[1, 3, 28, 28], datatype="FP32", data=[0.0] * 3 * PIXELS), {}, 400,
        "inputs[0] 'input': shape [1, 3, 28, 28] does not fit the model's input [-1, 1, 28, 28]",
    ),
    "both inputs at once": (
        json.dumps({"inputs": [
            {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * PIXELS},
            {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["aGk="]},
        ]}).encode(), {}, 400, "send exactly one",
    ),
    "image_bytes that are not base64 in json": (
        json_request(name="image_bytes", shape=[1], datatype="BYTES", data=["not base64!"]), {}, 400,
        "inputs[0] 'image_bytes': element 0 is not valid base64",
    ),
    "image_bytes that are not an image": (
        json_request(name="image_bytes", shape=[1], datatype="BYTES", data=["aGVsbG8="]), {}, 415,
        "the data is not an image in a known format",
    ),
    "image_bytes as fp32": (
        json_request(name="image_bytes", shape=[1], datatype="FP32", data=[1.0]), {}, 400,
        "image_bytes takes BYTES (encoded images), got FP32",
    ),
    "too many images": (
        json_request(name="image_bytes", shape=[65], datatype="BYTES", data=["aGk="] * 65), {}, 413,
        "65 images in one request; the limit is 64",
    ),
    "unknown output": (
        json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}],
                    "outputs": [{"name": "logits"}]}).encode(), {}, 400,
        "outputs[0] 'logits': unknown output 'logits' (the raw logits are not served)",
    ),
    "classification past the labels": (
        json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}],
                    "outputs": [{"name": "probabilities", "parameters": {"classification": 11}}]}).encode(), {}, 400,
        "parameters.classification is 11 but the model has only 10 labels",
    ),
    "an empty body": (b"", {}, 400, "the request body is empty"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_inference_requests(shared_server: str, case: str) -> None:
    body, headers, status, message = CASES[case]
    response = httpx.post(shared_server + INFER, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", f"/v2/models/{MODEL}/versions/abc/infer", 400, "the model version must be a positive integer"),
        ("POST", f"/v2/models/{MODEL}/versions/7/infer", 404, "has no version 7 (published: 1, 2)"),
        ("POST", f"/v2/models/{MODEL}/versions/2/infer", 404, "v2 is not loaded on this server"),
        ("GET", "/v2/models/shoes", 404, "no model named 'shoes'"),
        ("GET", f"/v2/models/{MODEL}/versions/9/config", 404, "has no version 9"),
        ("GET", "/v2/models/shoes/ready", 404, "no model named 'shoes'"),
        ("GET", f"/v2/models/{MODEL}/versions/2/ready", 503, "v2 is not loaded"),
        ("POST", "/v2/repository/index", 400, "not valid JSON"),
        ("POST", f"/v2/repository/models/{MODEL}/load", 400, "override config or files is not supported"),
        ("POST", "/v2/nothing/here", 404, ""),
    ],
)
def test_bad_paths_and_admin_requests(shared_server: str, method: str, path: str, status: int, message: str) -> None:
    bodies = {"/v2/repository/index": b"{", f"/v2/repository/models/{MODEL}/load": b'{"parameters": {"config": "{}"}}'}
    content = bodies.get(path, json_request(name="image_bytes", shape=[1], datatype="BYTES", data=["aGk="]))
    response = httpx.request(method, shared_server + path, content=content if method == "POST" else None)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_a_raw_image_body_and_metrics(shared_server: str) -> None:
    raw = httpx.post(shared_server + INFER, content=png_bytes(3), headers={"Inference-Header-Content-Length": "0"})
    assert raw.status_code == 200, raw.text
    [output] = raw.json()["outputs"]
    assert (output["name"], output["shape"]) == ("probabilities", [1, 10])
    assert abs(sum(output["data"]) - 1) < 1e-5

    text = httpx.get(f"{shared_server}/metrics").text
    served = re.search(
        r'imgcls_request_duration_seconds_count\{endpoint="v2_infer",model="fashion-mnist"\} (\S+)', text
    )
    assert served and float(served.group(1)) >= 1
    rejected = re.search(r'imgcls_rejects_total\{reason="bad_request"\} (\S+)', text)
    assert rejected and float(rejected.group(1)) >= 1
