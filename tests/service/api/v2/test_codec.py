"""The wire format against tritonclient's own request builder and response parser (no server)."""

import gzip
import zlib
from collections.abc import Callable

import numpy as np
import pytest
import tritonclient.http as triton

from service.api.v2.codec import (
    InvalidInferRequest,
    OutputTensor,
    RequestTooLarge,
    UnsupportedContentEncoding,
    decompress,
    encode_infer_response,
    parse_infer_request,
)
from service.api.v2.tensors import InvalidTensor

RAW = "image_bytes"


def triton_body(
    inputs: list[triton.InferInput], outputs: list[triton.InferRequestedOutput] | None = None, request_id: str = ""
) -> tuple[bytes, str | None]:
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs, request_id=request_id)
    return body, None if json_size is None else str(json_size)


def fp32_input(array: np.ndarray, *, binary: bool = True, name: str = "input") -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


# ---------------------------------------------------------------- requests


def test_a_binary_request_from_tritonclient() -> None:
    images = np.random.default_rng(0).random((3, 1, 4, 4), dtype=np.float32)
    encoded = np.array([b"\x89PNG one", b"jpeg two"], dtype=np.object_)
    blobs = triton.InferInput("image_bytes", [2], "BYTES")
    blobs.set_data_from_numpy(encoded)
    body, length = triton_body([fp32_input(images), blobs], request_id="r-1")
    request = parse_infer_request(body, length, raw_input=RAW)
    assert request.id == "r-1"
    assert request.outputs is None and request.binary_output is True  # no outputs named: all, in binary
    first, second = request.inputs
    assert (first.name, first.datatype, first.shape, first.binary) == ("input", "FP32", (3, 1, 4, 4), True)
    np.testing.assert_array_equal(first.values, images)
    assert second.values == [b"\x89PNG one", b"jpeg two"]


def test_a_json_request_from_tritonclient() -> None:
    images = np.random.default_rng(1).random((2, 1, 3, 3), dtype=np.float32)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False, class_count=2)]
    body, length = triton_body([fp32_input(images, binary=False)], outputs)
    assert length is None  # all JSON
    request = parse_infer_request(body, length, raw_input=RAW)
    np.testing.assert_array_equal(request.inputs[0].values, images)
    assert request.inputs[0].binary is False
    [output] = request.outputs or []
    assert (output.name, output.binary, output.classification) == ("probabilities", False, 2)


def test_a_raw_body_is_one_element_of_the_raw_input() -> None:
    request = parse_infer_request(b"\xff\xd8 a jpeg", "0", raw_input=RAW)
    [tensor] = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape, tensor.values) == (RAW, "BYTES", (1,), [b"\xff\xd8 a jpeg"])


@pytest.mark.parametrize(
    ("body", "length", "error", "message"),
    [
        (b"", None, InvalidInferRequest, "the request body is empty"),
        (b"{}", "12", InvalidInferRequest, "Inference-Header-Content-Length is 12 but the body has only 2 bytes"),
        (b"{}", "two", InvalidInferRequest, "must be a non-negative integer, got 'two'"),
        (b'{"inputs": [', None, InvalidInferRequest, "not valid JSON"),
        (b'{"inputs": [{"name": "input"}]}', None, InvalidInferRequest, r"missing required field `shape`.*inputs\[0\]"),
        (
            b'{"inputs": [{"name": "a", "shape": ["2"], "datatype": "FP32", "data": [1, 2]}]}',
            None,
            InvalidInferRequest,
            r"Expected `int`, got `str` - at `\$.inputs\[0\].shape\[0\]`",
        ),
        (
            b'{"inputs": [{"name": "a", "shape": [2], "datatype": "FLOAT", "data": [1, 2]}]}',
            None,
            InvalidTensor,
            r"inputs\[0\] 'a': unknown datatype 'FLOAT'",
        ),
        (
            b'{"inputs": [{"name": "a", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}',
            None,
            InvalidTensor,
            r"inputs\[0\] 'a': shape \[3\] has 3 elements but data has 2",
        ),
        (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}', None, InvalidTensor, "no data"),
        (
            b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}',
            None,
            InvalidTensor,
            r"binary_data_size is 4 but only 0 bytes of the body are left",
        ),
        (
            b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1],'
            b' "parameters": {"shared_memory_region": "r"}}]}',
            None,
            InvalidTensor,
            "shared memory is not supported",
        ),
        (
            b'{"inputs": [], "parameters": {"binary_data_output": "yes"}}',
            None,
            InvalidInferRequest,
            "parameters.binary_data_output must be true or false",
        ),
        (
            b'{"inputs": [], "outputs": [{"name": "p", "parameters": {"classification": -1}}]}',
            None,
            InvalidInferRequest,
            r"outputs\[0\] 'p': parameters.classification must be a positive integer",
        ),
        (b"", "0", InvalidInferRequest, "a raw input"),
    ],
)
def test_every_broken_request_names_what_is_wrong(
    body: bytes, length: str | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_infer_request(body, length, raw_input=RAW)


def test_bytes_nobody_claims_are_refused() -> None:
    body, length = triton_body([fp32_input(np.zeros((1, 2), dtype=np.float32))])
    with pytest.raises(InvalidInferRequest, match=r"3 bytes of the body follow .* unclaimed"):
        parse_infer_request(body + b"abc", length, raw_input=RAW)


def test_a_binary_size_past_the_end_of_the_body() -> None:
    body, length = triton_body([fp32_input(np.zeros((1, 4), dtype=np.float32))])
    with pytest.raises(InvalidTensor, match=r"inputs\[0\] 'input': parameters.binary_data_size is 16 but only 8"):
        parse_infer_request(body[:-8], length, raw_input=RAW)


# ---------------------------------------------------------------- compression


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", lambda d: zlib.compress(d, wbits=-15))],
)
def test_gzip_and_deflate_bodies(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    data = b'{"inputs": []}' * 100
    assert decompress(compress(data), encoding, 10_000) == data
    assert decompress(data, None, 10_000) is data


def test_bad_compression_is_refused() -> None:
    with pytest.raises(InvalidInferRequest, match="not valid gzip data"):
        decompress(b"not gzip at all", "gzip", 1000)
    with pytest.raises(InvalidInferRequest, match="truncated"):
        decompress(gzip.compress(b"x" * 100)[:-12], "gzip", 1000)
    with pytest.raises(RequestTooLarge, match="more than 1,000 bytes"):
        decompress(gzip.compress(b"\0" * 100_000), "gzip", 1000)
    with pytest.raises(UnsupportedContentEncoding, match="'br' is not supported"):
        decompress(b"...", "br", 1000)


# ---------------------------------------------------------------- responses


def parsed_by_tritonclient(body: bytes, json_size: int | None) -> triton.InferResult:
    return triton.InferenceServerClient.parse_response_body(body, header_length=json_size)


def test_binary_and_json_outputs_read_back_with_tritonclient() -> None:
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    ranked = [b"0.700000:1:b", b"0.500000:0:a"]
    for binary in (True, False):
        outputs = [
            OutputTensor("probabilities", "FP32", probabilities.shape, probabilities, binary),
            OutputTensor("classes", "BYTES", (2, 1), ranked, binary),
        ]
        body, json_size = encode_infer_response("m", 3, "id-7", outputs)
        assert (json_size is not None) == binary
        result = parsed_by_tritonclient(body, json_size)
        response = result.get_response()
        assert (response["model_name"], response["model_version"], response["id"]) == ("m", "3", "id-7")
        np.testing.assert_array_equal(result.as_numpy("probabilities"), probabilities)
        classes = result.as_numpy("classes")
        assert classes.shape == (2, 1)
        assert [item if isinstance(item, bytes) else item.encode() for item in classes.ravel()] == ranked
