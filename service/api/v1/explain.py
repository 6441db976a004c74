"""POST /v1/models/{name}/explain: classify's top-k, plus per image a map of where the answer came from.

The same inputs as classify (multipart ``images``, a raw image body, base64 JSON) and the same scope. The
map is a class activation map from the version's explain graph (``method=cam``), or occlusion over a 7x7
grid for any model (``method=occlusion``, 50 model runs per image); ``format=png`` answers one image as
the map drawn over the preprocessed image, the class in headers. service/inference/explain.py does the work.
"""

import time
from typing import Annotated, Literal
from urllib.parse import quote

import msgspec
from litestar import MediaType, Request, Response, post
from litestar.params import FromPath, Parameter, QueryParameter

from service.api.auth import authorized
from service.api.errors import BadRequest, problems
from service.api.fastpath.admission import AdmissionControl
from service.api.fastpath.answers import ok
from service.api.fastpath.uploads import images_from_body
from service.api.openapi import ClassifyOperation
from service.api.v1.schemas import ExplainedImage, ExplainResponse, ExplainTimings, ImageExplanation
from service.inference.explain import Explained, Method, explain
from service.inference.heatmaps import normalized, overlay_png, peak

MAP_DIGITS = 4  # decimals of the JSON map's values


@post(
    "/v1/models/{name:str}/explain",
    status_code=200,
    tags=["classify"],
    middleware=[AdmissionControl()],
    responses=ok(ExplainResponse, "top-k labels and one explained class per image (format=png: an image/png overlay)")
    | problems(404, 409, 413, 415, 422, 503),
    operation_class=ClassifyOperation,
)
async def explain_images(
    request: Request,
    name: FromPath[str],
    top_k: Annotated[int | None, Parameter(ge=1, description="labels per image (default from settings)")] = None,
    version: Annotated[int | None, Parameter(ge=1, description="a loaded version number")] = None,
    alias: Annotated[str | None, Parameter(description="an alias such as production or staging")] = None,
    label: Annotated[
        str | None, QueryParameter(name="class", description="the class to explain (default: each image's top-1)")
    ] = None,
    method: Annotated[
        Method, Parameter(description="cam: class activation maps (1 model run); occlusion: any model (50 runs)")
    ] = "cam",
    answer_format: Annotated[
        Literal["json", "png"],
        QueryParameter(name="format", description="json: the maps as numbers; png: one image's map drawn over it"),
    ] = "json",
) -> Response[bytes]:
    """Explain images sent as classify takes them: top-k labels, and where in each image one class's evidence lies.

    409 for `method=cam` on a version without an explain graph (imported ONNX files, architectures without a
    global pool and one linear classifier); `method=occlusion` works on any model."""
    started = time.perf_counter()
    state = await authorized(request, "classify")
    if version is not None and alias is not None:
        raise BadRequest("choose a version or an alias, not both")
    encoded = images_from_body(
        request.headers.get("content-type"), await request.body(), state.settings.max_images_per_request
    )
    if answer_format == "png" and len(encoded) != 1:
        raise BadRequest(f"format=png answers one image, got {len(encoded)}: send one, or use format=json", 422)
    with state.registry.lease(name, version=version, alias=alias) as loaded:
        explained = await explain(
            loaded,
            encoded,
            explainers=state.explainers,
            limits=state.limits,
            top_k=top_k or min(state.settings.default_top_k, len(loaded.manifest.labels)),
            label=label,
            method=method,
            threshold=state.settings.confidence_thresholds.get(name, 0.0),
        )
    preprocessing = loaded.manifest.preprocessing
    if answer_format == "png":
        image = explained.images[0]
        scaled, _, _ = normalized(image.values)
        return Response(
            overlay_png(explained.batch[0], scaled, preprocessing),
            media_type="image/png",
            headers={
                "X-Explained-Label": quote(image.label),  # percent-encoded UTF-8
                "X-Explained-Index": str(image.index),
                "X-Explained-Probability": f"{image.probability:.6f}",
                "X-Explained-Method": explained.method,
                "X-Model-Version": str(loaded.version),
            },
        )
    body = msgspec.json.encode(answer(explained, loaded.name, loaded.version, preprocessing.input_size, started))
    return Response(body, media_type=MediaType.JSON)


def answer(
    explained: Explained, name: str, version: int, input_size: tuple[int, int], started: float
) -> ExplainResponse:
    results = []
    for image in explained.images:
        scaled, low, high = normalized(image.values)
        explanation = ImageExplanation(
            label=image.label,
            index=image.index,
            probability=image.probability,
            map=scaled.round(MAP_DIGITS).tolist(),
            range=(low, high),
            peak=peak(image.values, input_size),
        )
        results.append(ExplainedImage(image.result.top, image.result.low_confidence, explanation))
    return ExplainResponse(
        model=name,
        version=version,
        method=explained.method,
        model_runs_per_image=explained.model_runs,
        input_size=input_size,
        results=results,
        timings=ExplainTimings(
            decode_ms=explained.decode_s * 1000,
            compute_ms=explained.compute_s * 1000,
            total_ms=(time.perf_counter() - started) * 1000,
        ),
    )
