"""POST /v1/models/{name}/classify: one or many images in, top-k calibrated labels out."""

import functools
import time
from typing import Annotated

from litestar import Request, post
from litestar.params import FromPath, Parameter

from service.api.errors import BadRequest, problems
from service.api.fastpath.admission import AdmissionControl
from service.api.fastpath.answers import JsonAnswer, ok
from service.api.fastpath.uploads import images_from_body
from service.api.openapi import ClassifyOperation
from service.api.state import AppState
from service.api.v1.rollouts import AnswerThen
from service.api.v1.schemas import ClassifiedImage, ClassifyResponse, Timings
from service.inference.classify import classify


@post(
    "/v1/models/{name:str}/classify",
    status_code=200,
    tags=["classify"],
    middleware=[AdmissionControl()],
    responses=ok(ClassifyResponse, "top-k labels per image, in request order") | problems(404, 413, 415, 422, 503),
    operation_class=ClassifyOperation,
)
async def classify_images(
    request: Request,
    name: FromPath[str],
    top_k: Annotated[int | None, Parameter(ge=1, description="labels per image (default from settings)")] = None,
    version: Annotated[int | None, Parameter(ge=1, description="a loaded version number")] = None,
    alias: Annotated[str | None, Parameter(description="an alias such as production or staging")] = None,
    variant: Annotated[str | None, Parameter(description="fp32 or a quantized variant such as int8")] = None,
) -> JsonAnswer:
    """Classify images sent as multipart field `images`, a raw image/* body, or JSON {"images": [base64]}."""
    started = time.perf_counter()
    state: AppState = request.app.state.imgcls
    await state.auth.authorize(request, "classify")
    if version is not None and alias is not None:
        raise BadRequest("choose a version or an alias, not both")
    encoded = images_from_body(
        request.headers.get("content-type"), await request.body(), state.settings.max_images_per_request
    )
    comparison = None
    if state.rollouts.running and name in state.rollouts.running and version is alias is variant is None:
        loaded, answer, comparison = await state.rollouts.running[name].answer(
            request.headers,
            encoded,
            top_k=top_k,
            default_top_k=state.settings.default_top_k,
            threshold=state.settings.confidence_thresholds.get(name, 0.0),
        )
    else:
        with state.registry.lease(name, version=version, alias=alias, variant=variant) as loaded:
            answer = await classify(
                loaded,
                encoded,
                limits=state.limits,
                top_k=top_k or min(state.settings.default_top_k, len(loaded.manifest.labels)),
                threshold=state.settings.confidence_thresholds.get(name, 0.0),
            )
    new_id = state.prediction_ids.new
    results = [ClassifiedImage(r.top, r.low_confidence, new_id()) for r in answer.results]
    if state.keeper is not None:  # off by default; when on, the images are written by a background thread
        top1 = [r.top[0].probability for r in answer.results]
        ids = [r.prediction_id for r in results]
        state.keeper.offer(loaded.manifest, loaded.variant, encoded, top1, answer.probabilities, ids)
    total_s = time.perf_counter() - started
    state.observe_classification(loaded, answer, total_s, endpoint="v1_classify")
    reply = JsonAnswer(
        ClassifyResponse(
            model=loaded.name,
            version=loaded.version,
            variant=loaded.variant,
            results=results,
            timings=Timings(
                decode_ms=answer.decode_s * 1000,
                queue_ms=answer.queue_s * 1000,
                compute_ms=answer.compute_s * 1000,
                total_ms=total_s * 1000,
                batch_size=answer.batch_size,
            ),
        )
    )
    if comparison is None:
        return reply
    return AnswerThen(reply.body, functools.partial(comparison.start, [r.prediction_id for r in results]))
