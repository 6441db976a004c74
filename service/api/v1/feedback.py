"""/v1/feedback and the review queue: people correct or confirm predictions, and their feedback becomes a
dataset for fine-tuning (docs/feedback.md). Everything here needs the ``train`` scope.

- ``POST /v1/feedback``: a label for a kept prediction (``prediction_id``) or for an image sent with it;
- ``GET /v1/feedback`` lists feedback, ``GET /v1/feedback/{id}/image`` shows its image, ``DELETE`` removes
  one item, or (``?model=``) everything kept and recorded for a model;
- ``GET /v1/models/{name}/review``: kept predictions still waiting for a person, with their images and a
  ``DELETE`` to discard one;
- ``POST /v1/datasets/from-feedback``: a stored dataset of a model's feedback (service/feedback/export.py).

The store is on disk (service/feedback/store.py); its calls run in worker threads.
"""

import asyncio
import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody, Parameter

from service.api.auth import authorized
from service.api.errors import BadRequest, problems
from service.api.state import AppState
from service.datasets import DatasetRecord
from service.feedback import Feedback, FeedbackError, Guess, KeptPrediction, PredictionNotFound
from service.feedback.export import MAX_BASE_IMAGES_PER_CLASS, dataset_from_feedback, uses
from service.feedback.ids import PREDICTION_ID, new_feedback_id
from service.feedback.images import kept_png
from service.feedback.records import kind_of
from service.feedback.store import check_label, timestamp

PNG = "image/png"
MAX_LISTED = 1000


class FeedbackRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A person's label for an image a model classified: a kept prediction's id, or the image itself."""

    model: str
    label: str  # the right label: one of the model's
    prediction_id: str | None = None  # from the classify answer; enough alone when its input was kept
    image: str | None = None  # the image, base64: for a prediction that was not kept (or none at all)
    version: int | None = None  # with image: the version that classified it; default: the serving one
    # with image: the model's answer as the client saw it (top first), to tell a correction from a confirmation
    predicted: Annotated[list[Guess], msgspec.Meta(max_length=100)] = []


class FeedbackItem(Feedback, frozen=True):
    """A feedback item as listed: the stored record, and which datasets were made from it."""

    status: Literal["new", "used"] = "new"  # used: in at least one dataset (from-feedback)
    used_in: list[str] = msgspec.field(default_factory=list)  # those datasets' ids


class Review(msgspec.Struct):
    model: str
    labels: list[str]  # of the serving version: what a reviewer picks from
    waiting: int  # kept predictions without feedback, in all
    predictions: list[KeptPrediction]  # low-confidence ones first, oldest first within each


class DeletedItems(msgspec.Struct):
    predictions: int  # kept predictions removed
    feedback: int  # feedback items removed


class FromFeedbackRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str
    since: datetime | None = None  # only feedback recorded at or after this time (ISO 8601)
    include_base_dataset: bool = False  # add a sample of the model's own training images (docs/feedback.md)
    base_images_per_class: Annotated[int, msgspec.Meta(ge=1, le=MAX_BASE_IMAGES_PER_CLASS)] = 100
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None  # default: "feedback on <model>"


def listed(items: list[Feedback], used: dict[str, list[str]]) -> list[FeedbackItem]:
    return [
        FeedbackItem(
            **msgspec.structs.asdict(item),
            status="used" if item.id in used else "new",
            used_in=used.get(item.id, []),
        )
        for item in items
    ]


def decoded_image(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image is not valid base64; send the file's bytes base64-encoded") from None


def upload_feedback(state: AppState, request: FeedbackRequest, image: bytes) -> Feedback:
    """Feedback that brings its image: checked and kept as the model's preprocessing sees it."""
    repository = state.registry.repository
    version = request.version if request.version is not None else repository.resolve(request.model)
    manifest = repository.manifest(request.model, version)
    check_label(request.model, version, request.label, manifest.labels)
    if request.prediction_id is not None and not PREDICTION_ID.fullmatch(request.prediction_id):
        raise FeedbackError(f"{request.prediction_id[:80]!r} is not a prediction id (pr_ and 24 hex digits or more)")
    png, width, height = kept_png(image, state.limits, manifest.preprocessing)
    feedback = Feedback(
        id=new_feedback_id(),
        model=request.model,
        version=version,
        label=request.label,
        kind=kind_of(request.label, request.predicted[0].label if request.predicted else None),
        created_at=timestamp(state.feedback.clock()),
        source="upload",
        prediction_id=request.prediction_id,
        predicted=request.predicted,
        image_bytes=len(png),
        width=width,
        height=height,
    )
    return state.feedback.add_upload(feedback, png)


def record(state: AppState, request: FeedbackRequest) -> Feedback:
    image = decoded_image(request.image) if request.image is not None else None
    if request.prediction_id is None and image is None:
        raise BadRequest("send prediction_id (from the classify answer) or image (base64), with the label", 422)
    if request.prediction_id is not None:
        repository = state.registry.repository

        def labels(version: int) -> tuple[str, ...]:
            return repository.manifest(request.model, version).labels

        try:
            return state.feedback.add_for_prediction(request.model, request.prediction_id, request.label, labels)
        except PredictionNotFound:
            if image is None:
                raise
    assert image is not None
    return upload_feedback(state, request, image)


@post("/v1/feedback", status_code=201, tags=["feedback"], responses=problems(404, 409, 413, 415, 422))
async def record_feedback(request: Request, data: JSONBody[FeedbackRequest]) -> FeedbackItem:
    """Record a correction or a confirmation: a label for a kept prediction, or for an image sent with it."""
    state = await authorized(request, "train")
    return listed([await asyncio.to_thread(record, state, data)], {})[0]


@get("/v1/feedback", tags=["feedback"], responses=problems())
async def list_feedback(
    request: Request,
    model: Annotated[str | None, Parameter(max_length=64, description="only this model's feedback")] = None,
    status: Annotated[
        Literal["new", "used"] | None, Parameter(description="new: in no dataset yet; used: in one at least")
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_LISTED, description="items, newest first")] = 100,
) -> list[FeedbackItem]:
    """Feedback, newest first, with the datasets made from each item."""
    state = await authorized(request, "train")

    def find() -> list[FeedbackItem]:
        items = listed(state.feedback.feedback(model), uses(state.datasets.records()))
        return [item for item in items if status is None or item.status == status][:limit]

    return await asyncio.to_thread(find)


@get("/v1/feedback/{feedback_id:str}/image", tags=["feedback"], media_type=PNG, responses=problems(404))
async def feedback_image(request: Request, feedback_id: FromPath[str]) -> Response[bytes]:
    """The image a feedback item labels (PNG, as the model's preprocessing sees it before its crop)."""
    state = await authorized(request, "train")
    path = await asyncio.to_thread(state.feedback.image_path, feedback_id)
    return Response(await asyncio.to_thread(path.read_bytes), media_type=PNG)


@delete("/v1/feedback/{feedback_id:str}", status_code=204, tags=["feedback"], responses=problems(404))
async def delete_feedback(request: Request, feedback_id: FromPath[str]) -> None:
    """Delete one feedback item and its image (datasets already made from it keep their copy)."""
    state = await authorized(request, "train")
    await asyncio.to_thread(state.feedback.delete, feedback_id)


@delete("/v1/feedback", status_code=200, tags=["feedback"], responses=problems())
async def delete_model_feedback(
    request: Request,
    model: Annotated[str | None, Parameter(max_length=64, description="the model whose data goes (required)")] = None,
) -> DeletedItems:
    """Delete everything kept and recorded for one model: its kept predictions and its feedback."""
    state = await authorized(request, "train")
    if model is None:  # checked here, after the key: a keyless request learns nothing
        raise BadRequest("name the model whose kept predictions and feedback go: DELETE /v1/feedback?model=<name>")
    deleted = await asyncio.to_thread(state.feedback.delete_model, model)
    return DeletedItems(predictions=deleted.predictions, feedback=deleted.feedback)


@get("/v1/models/{name:str}/review", tags=["feedback"], responses=problems(404))
async def review(
    request: Request,
    name: FromPath[str],
    limit: Annotated[int, Parameter(ge=1, le=MAX_LISTED, description="predictions listed")] = 50,
) -> Review:
    """Kept predictions of the model still waiting for a person: low-confidence first, with the top 3."""
    state = await authorized(request, "train")

    def waiting() -> Review:
        repository = state.registry.repository
        labels = repository.manifest(name, repository.resolve(name)).labels
        predictions = state.feedback.waiting(name)
        return Review(model=name, labels=list(labels), waiting=len(predictions), predictions=predictions[:limit])

    return await asyncio.to_thread(waiting)


@get(
    "/v1/models/{name:str}/review/{prediction_id:str}/image", tags=["feedback"], media_type=PNG, responses=problems(404)
)
async def review_image(request: Request, name: FromPath[str], prediction_id: FromPath[str]) -> Response[bytes]:
    """A kept prediction's image (PNG, as the model's preprocessing saw it before its crop)."""
    state = await authorized(request, "train")
    return Response(await asyncio.to_thread(state.feedback.kept_image, name, prediction_id), media_type=PNG)


@delete("/v1/models/{name:str}/review/{prediction_id:str}", status_code=204, tags=["feedback"], responses=problems(404))
async def discard_prediction(request: Request, name: FromPath[str], prediction_id: FromPath[str]) -> None:
    """Discard a kept prediction nobody will label (no label fits, a test image)."""
    state = await authorized(request, "train")
    await asyncio.to_thread(state.feedback.discard, name, prediction_id)


@post("/v1/datasets/from-feedback", status_code=201, tags=["datasets"], responses=problems(404, 413, 422))
async def dataset_from_model_feedback(request: Request, data: JSONBody[FromFeedbackRequest]) -> DatasetRecord:
    """Store a dataset of a model's feedback (one class folder per label), checked as an uploaded zip is."""
    state = await authorized(request, "train")
    since = data.since.replace(tzinfo=UTC) if data.since is not None and data.since.tzinfo is None else data.since
    return await asyncio.to_thread(
        dataset_from_feedback,
        state.feedback,
        state.datasets,
        state.registry.repository,
        model=data.model,
        since=since,
        include_base_dataset=data.include_base_dataset,
        base_images_per_class=data.base_images_per_class,
        name=data.name,
    )


ROUTES: list[HTTPRouteHandler] = [
    record_feedback,
    list_feedback,
    feedback_image,
    delete_feedback,
    delete_model_feedback,
    review,
    review_image,
    discard_prediction,
    dataset_from_model_feedback,
]
