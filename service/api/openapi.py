"""OpenAPI descriptions of the bodies Litestar cannot infer: routes that read ``request.body()`` themselves.

Classify, dataset uploads and V2 inference parse their bodies by hand (several forms each, streamed or
binary), so Litestar sees no body parameter and would describe none; a client reading /schema, or a fuzzer
generating requests from it, would not know how to send an image. Each route names its class here as
``operation_class``; the schemas say what the handlers accept (docs/api.md, docs/api-v2.md).
"""

from dataclasses import dataclass

from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.openapi.spec.request_body import RequestBody

# A 28x28 gray PNG (one flat colour): the smallest input of the default model, for the examples.
_EXAMPLE_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAFklEQVR42mNsYMANmBhGJUclRyWhAADxiwC4gQrlWAAAAABJRU5ErkJggg=="
)

BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
BASE64 = Schema(type=OpenAPIType.STRING, content_encoding="base64")
ANY_OBJECT = Schema(type=OpenAPIType.OBJECT, additional_properties=True)


def _object(properties: dict[str, Schema], required: list[str], *, closed: bool = False) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        properties=properties,  # type: ignore[arg-type]
        required=required,
        additional_properties=False if closed else None,
    )


def _binary(description: str) -> OpenAPIMediaType:
    return OpenAPIMediaType(
        schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description=description)
    )


@dataclass
class ClassifyOperation(Operation):
    """POST /v1/models/{name}/classify: multipart field ``images``, a raw image body, or JSON with base64."""

    def __post_init__(self) -> None:
        raw = _binary("one encoded image (JPEG, PNG or WebP by default; the format is read from the bytes)")
        self.request_body = RequestBody(
            required=True,
            description="one or more images, in any of three forms",
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=_object({"images": Schema(type=OpenAPIType.ARRAY, items=BINARY, min_items=1)}, ["images"])
                ),
                "image/png": raw,
                "image/jpeg": raw,
                "image/webp": raw,
                "application/octet-stream": raw,
                "application/json": OpenAPIMediaType(
                    schema=_object(
                        {"images": Schema(type=OpenAPIType.ARRAY, items=BASE64, min_items=1)}, ["images"], closed=True
                    ),
                    example={"images": [_EXAMPLE_PNG]},
                ),
            },
        )


@dataclass
class DatasetUploadOperation(Operation):
    """POST /v1/datasets: a zip of class folders, as the raw body or the multipart field ``file``."""

    def __post_init__(self) -> None:
        raw = _binary("a zip of class folders (cat/1.jpg, dog/2.jpg)")
        self.request_body = RequestBody(
            required=True,
            description="a zip of class folders",
            content={
                "application/zip": raw,
                "application/x-zip-compressed": raw,
                "application/octet-stream": raw,
                "multipart/form-data": OpenAPIMediaType(schema=_object({"file": BINARY}, ["file"])),
            },
        )


@dataclass
class ModelImportOperation(Operation):
    """POST /v1/models/{name}/versions: the ONNX file in the field ``model``, the JSON options in ``options``."""

    def __post_init__(self) -> None:
        options = Schema(
            type=OpenAPIType.STRING,
            description=(
                'JSON: {"labels": [...], "input_size": 224, "resize": 256, "mean": [...], "std": [...], '
                '"color": "RGB", "layout": "NCHW", "output": "logits", "interpolation": "bilinear"}; only labels '
                "is required"
            ),
        )
        self.request_body = RequestBody(
            required=True,
            description="an ONNX classifier and its labels and options",
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=_object({"model": BINARY, "options": options}, ["model", "options"])
                )
            },
        )


_INPUT = _object(
    {
        "name": Schema(type=OpenAPIType.STRING),
        "shape": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.INTEGER)),
        "datatype": Schema(type=OpenAPIType.STRING),
        "parameters": ANY_OBJECT,
        "data": Schema(description="the tensor, flat or nested, row-major; BYTES elements in base64"),
    },
    ["name", "shape", "datatype"],
)
_OUTPUT_REQUEST = _object({"name": Schema(type=OpenAPIType.STRING), "parameters": ANY_OBJECT}, ["name"])
_OUTPUT = _object(
    {
        "name": Schema(type=OpenAPIType.STRING),
        "datatype": Schema(type=OpenAPIType.STRING),
        "shape": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.INTEGER)),
        "data": Schema(type=OpenAPIType.ARRAY),
        "parameters": ANY_OBJECT,
    },
    ["name", "datatype", "shape"],
)


@dataclass
class InferOperation(Operation):
    """POST /v2/models/{name}[/versions/{version}]/infer: the KServe V2 request and response (docs/api-v2.md)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description=(
                "a V2 inference request: JSON, or JSON followed by binary tensors (Inference-Header-Content-Length)"
            ),
            content={
                "application/json": OpenAPIMediaType(
                    schema=_object(
                        {
                            "id": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
                            "parameters": ANY_OBJECT,
                            "inputs": Schema(type=OpenAPIType.ARRAY, items=_INPUT),
                            "outputs": Schema(  # null or empty: every output
                                type=[OpenAPIType.ARRAY, OpenAPIType.NULL], items=_OUTPUT_REQUEST
                            ),
                        },
                        ["inputs"],
                    ),
                    example={
                        "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [_EXAMPLE_PNG]}]
                    },
                ),
                "application/octet-stream": _binary("the JSON header, then the binary tensors it declares"),
            },
        )
        answer = _object(
            {
                "model_name": Schema(type=OpenAPIType.STRING),
                "model_version": Schema(type=OpenAPIType.STRING),
                "id": Schema(type=OpenAPIType.STRING),
                "outputs": Schema(type=OpenAPIType.ARRAY, items=_OUTPUT),
            },
            ["model_name", "model_version", "outputs"],
        )
        if self.responses is not None:
            self.responses["200"] = OpenAPIResponse(
                description="the outputs: JSON, or (binary outputs asked for) the JSON header then the binary tensors",
                content={
                    "application/json": OpenAPIMediaType(schema=answer),
                    "application/octet-stream": _binary("Inference-Header-Content-Length bytes of JSON, then tensors"),
                },
            )


@dataclass
class EventStreamOperation(Operation):
    """GET /v1/fine-tuning/jobs/{id}/events: a JSON page, or with ``Accept: text/event-stream`` a live stream."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content["text/event-stream"] = OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.STRING,
                    description="server-sent events: 'id: <id>', 'event: <type>', 'data: <the event as JSON>'",
                )
            )
