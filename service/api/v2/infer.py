"""POST /v2/models/{name}[/versions/{version}]/infer: V2 inference, JSON or binary tensors, on the /v1 path.

The same path as /v1 classify: admission control, the classify scope, the registry's lease (hot swaps stay
safe), and ``classify`` for both inputs (encoded ``image_bytes`` under the decode limits, or the
preprocessed ``input`` as it is) through the version's batcher (queue full: 503 with Retry-After, checked
before decoding), and the same metrics (endpoint ``v2_infer``). Any Content-Type is accepted
(tritonclient sends none).
"""

import asyncio
import functools
import time

from litestar import Request, Response, post
from litestar.params import FromPath

from service.api.errors import v2_errors
from service.api.fastpath.admission import AdmissionControl
from service.api.openapi import InferOperation
from service.api.state import AppState
from service.api.v2.codec import HEADER_LENGTH, InferRequest, decompress, encode_infer_response, parse_infer_request
from service.api.v2.routes import VersionPath, parse_version, versioned
from service.api.v2.signature import IMAGE_INPUT, build_outputs, model_input, output_plans, ranks_needed
from service.inference.classify import classify

INLINE_PARSE_BYTES = 64 * 1024  # smaller bodies are read on the event loop; larger ones in a thread


def read_request(body: bytes, encoding: str | None, length_header: str | None, max_bytes: int) -> InferRequest:
    return parse_infer_request(decompress(body, encoding, max_bytes), length_header, raw_input=IMAGE_INPUT)


@post(
    versioned("/infer"),
    status_code=200,
    tags=["v2"],
    middleware=[AdmissionControl()],
    responses=v2_errors(404, 413, 415, 422, 503),
    operation_class=InferOperation,
)
async def infer(request: Request, name: FromPath[str], version: VersionPath = None) -> Response[bytes]:
    """Send ``input`` (FP32 NCHW, preprocessed) or ``image_bytes`` (BYTES, encoded images); get probabilities."""
    started = time.perf_counter()
    state: AppState = request.app.state.imgcls
    await state.auth.authorize(request, "classify")
    number = parse_version(version)
    body = await request.body()
    headers = request.headers
    read = functools.partial(
        read_request, body, headers.get("content-encoding"), headers.get(HEADER_LENGTH), state.settings.max_body_bytes
    )
    parsed = read() if len(body) <= INLINE_PARSE_BYTES else await asyncio.to_thread(read)
    with state.registry.lease(name, version=number) as loaded:
        manifest = loaded.manifest
        plans = output_plans(parsed, manifest)
        images = model_input(parsed, manifest, state.settings.max_images_per_request)
        threshold = state.settings.confidence_thresholds.get(name, 0.0)
        top_k = ranks_needed(plans)
        answer = await classify(loaded, images, limits=state.limits, top_k=top_k, threshold=threshold)
    outputs = build_outputs(plans, answer)
    content, json_size = encode_infer_response(loaded.name, loaded.version, parsed.id, outputs)
    state.observe_classification(loaded, answer, time.perf_counter() - started, endpoint="v2_infer")
    if json_size is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(json_size)})
