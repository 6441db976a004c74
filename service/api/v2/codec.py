"""The V2 inference request and response on the wire: compression, the JSON header, binary sections.

Pure functions without HTTP: the handler passes the body and the values of two headers in, and gets the
response body and its ``Inference-Header-Content-Length`` (None: the body is all JSON) back.

A request body is a JSON header, then the binary sections of the inputs that carry
``parameters.binary_data_size``, in the order those inputs appear in the header. The header's length is
``Inference-Header-Content-Length``; without it the whole body is JSON; 0 means the whole body is the raw
bytes of the model's single raw input (for us: one encoded image). Errors say which field is wrong.
"""

import zlib
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from service.api.v2.tensors import (
    BYTES,
    NUMERIC,
    InvalidTensor,
    bytes_from_binary,
    bytes_from_json,
    check_datatype,
    numeric_from_binary,
    numeric_from_json,
    serialize_bytes,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
ENCODINGS = ("gzip", "deflate", "identity")


class InvalidInferRequest(ValueError):
    """A body that is not a V2 inference request: bad JSON, a header length past the end, bad compression."""


class UnsupportedContentEncoding(InvalidInferRequest):
    """A Content-Encoding other than gzip, deflate or identity."""


class RequestTooLarge(ValueError):
    """Over a size limit once decompressed, or more images than one request may carry."""


# ---------------------------------------------------------------- the JSON header (msgspec: errors name the path)


class InputHeader(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = {}
    data: Any = None


class OutputHeader(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = {}


class RequestHeader(msgspec.Struct):
    inputs: list[InputHeader]
    id: str | None = None
    parameters: dict[str, Any] = {}
    outputs: list[OutputHeader] | None = None


_decoder = msgspec.json.Decoder(RequestHeader)
_encoder = msgspec.json.Encoder()


# ---------------------------------------------------------------- what a request means


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]  # numeric: an array of ``shape``; BYTES: the elements, row-major
    binary: bool  # came as a binary section (else as JSON data)
    where: str  # "inputs[0] 'input'", to start error messages with


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool  # return it as a binary section
    classification: int  # k of the classification extension; 0: the tensor itself
    where: str


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None  # None: every output, binary if binary_data_output was asked
    binary_output: bool  # parameters.binary_data_output


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]
    binary: bool


# ---------------------------------------------------------------- reading


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """The body with its Content-Encoding (gzip or deflate) undone, refusing more than ``max_bytes`` out."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":  # the zlib format by the RFC; some clients send raw deflate
        zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
        wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
    else:
        raise UnsupportedContentEncoding(
            f"Content-Encoding {coding!r} is not supported; send {', '.join(ENCODINGS)} (or no Content-Encoding)"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, max_bytes + 1)
    except zlib.error as error:
        message = f"the body is not valid {coding} data (Content-Encoding: {coding}): {error}"
        raise InvalidInferRequest(message) from error
    if len(plain) > max_bytes:
        raise RequestTooLarge(f"the body decompresses to more than {max_bytes:,} bytes, the limit")
    if not inflater.eof:
        raise InvalidInferRequest(f"the {coding} body is truncated (Content-Encoding: {coding})")
    if inflater.unused_data:
        raise InvalidInferRequest(f"the {coding} body has {len(inflater.unused_data)} bytes after its end")
    return plain


def header_length(value: str | None, body_size: int) -> int | None:
    """The JSON header's length from ``Inference-Header-Content-Length`` (None when the header is absent)."""
    if value is None:
        return None
    if not (value.strip().isascii() and value.strip().isdigit()):  # isdigit alone passes '¹', which int() refuses
        raise InvalidInferRequest(f"{HEADER_LENGTH} must be a non-negative integer, got {value!r}")
    length = int(value)
    if length > body_size:
        raise InvalidInferRequest(
            f"{HEADER_LENGTH} is {length} but the body has only {body_size} bytes (after decompression)"
        )
    return length


def parse_infer_request(body: bytes, length_header: str | None, *, raw_input: str) -> InferRequest:
    """A decompressed body and its ``Inference-Header-Content-Length`` as an InferRequest.

    ``raw_input`` names the input that a raw body (header length 0) feeds, as one BYTES element.
    """
    json_size = header_length(length_header, len(body))
    if json_size == 0:
        if not body:
            raise InvalidInferRequest(f"{HEADER_LENGTH} is 0 (a raw input) but the body is empty")
        where = f"the raw body ({HEADER_LENGTH}: 0)"
        return InferRequest(None, [Tensor(raw_input, BYTES, (1,), [body], True, where)], None, False)
    if not body:
        raise InvalidInferRequest("the request body is empty; send a V2 inference request (see docs/api-v2.md)")
    view = memoryview(body)
    end = len(body) if json_size is None else json_size
    try:
        header = _decoder.decode(view[:end])
    except msgspec.ValidationError as error:
        raise InvalidInferRequest(f"invalid inference request: {error}") from error
    except msgspec.DecodeError as error:
        what = "body" if json_size is None else f"JSON header (the first {json_size} bytes)"
        raise InvalidInferRequest(f"the inference request's {what} is not valid JSON: {error}") from error
    binary_output = _flag(header.parameters, "binary_data_output", "parameters", default=False)
    inputs = _read_inputs(header.inputs, view[end:])
    outputs = None
    if header.outputs:
        outputs = [_requested_output(position, item, binary_output) for position, item in enumerate(header.outputs)]
    return InferRequest(header.id, inputs, outputs, binary_output)


def _read_inputs(headers: list[InputHeader], binary: memoryview) -> list[Tensor]:
    tensors: list[Tensor] = []
    offset = 0
    for position, item in enumerate(headers):
        where = f"inputs[{position}] {item.name!r}"
        check_datatype(where, item.datatype)
        shape = tuple(item.shape)
        if "shared_memory_region" in item.parameters:
            raise InvalidTensor(f"{where}: shared memory is not supported by this server; send the data in the body")
        size = item.parameters.get("binary_data_size")
        if size is not None:
            if item.data is not None:
                raise InvalidTensor(f"{where}: has both data and parameters.binary_data_size; send one of them")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidTensor(
                    f"{where}: parameters.binary_data_size must be a non-negative integer, got {size!r}"
                )
            if offset + size > len(binary):
                raise InvalidTensor(
                    f"{where}: parameters.binary_data_size is {size} but only {len(binary) - offset} bytes of the "
                    f"body are left for it after the JSON header{' and the earlier inputs' if offset else ''}"
                )
            section = binary[offset : offset + size]
            offset += size
            values: np.ndarray | list[bytes] = (
                bytes_from_binary(where, shape, section)
                if item.datatype == BYTES
                else numeric_from_binary(where, item.datatype, shape, section)
            )
            tensors.append(Tensor(item.name, item.datatype, shape, values, True, where))
        elif item.data is not None:
            values = (
                bytes_from_json(where, shape, item.data)
                if item.datatype == BYTES
                else numeric_from_json(where, item.datatype, shape, item.data)
            )
            tensors.append(Tensor(item.name, item.datatype, shape, values, False, where))
        else:
            raise InvalidTensor(f"{where}: no data; send data, or parameters.binary_data_size and the bytes after")
    if offset != len(binary):
        raise InvalidInferRequest(
            f"{len(binary) - offset} bytes of the body follow the JSON header and the inputs' binary sections "
            f"unclaimed; check {HEADER_LENGTH} and each input's parameters.binary_data_size"
        )
    return tensors


def _requested_output(position: int, item: OutputHeader, binary_output: bool) -> RequestedOutput:
    where = f"outputs[{position}] {item.name!r}"
    if "shared_memory_region" in item.parameters:
        raise InvalidInferRequest(f"{where}: shared memory is not supported by this server")
    k = item.parameters.get("classification", 0)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise InvalidInferRequest(f"{where}: parameters.classification must be a positive integer, got {k!r}")
    binary = _flag(item.parameters, "binary_data", f"{where}: parameters", default=binary_output)
    return RequestedOutput(item.name, binary, k, where)


def _flag(parameters: dict[str, Any], key: str, where: str, *, default: bool) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInferRequest(f"{where}.{key} must be true or false, got {value!r}")
    return value


# ---------------------------------------------------------------- writing


def encode_infer_response(
    model_name: str, model_version: int, request_id: str | None, outputs: list[OutputTensor]
) -> tuple[bytes, int | None]:
    """(body, JSON header length or None when the body is all JSON). Binary sections follow in output order."""
    entries: list[dict[str, Any]] = []
    sections: list[bytes] = []
    for output in outputs:
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
        if output.binary:
            if isinstance(output.values, list):
                raw = serialize_bytes(output.values)
            else:
                raw = np.ascontiguousarray(output.values, dtype=NUMERIC[output.datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            sections.append(raw)
        elif isinstance(output.values, list):
            entry["data"] = [element.decode(errors="replace") for element in output.values]
        else:
            entry["data"] = output.values.ravel().tolist()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = entries
    header = _encoder.encode(response)
    if not sections:
        return header, None
    return b"".join([header, *sections]), len(header)
