"""The one table from domain errors to HTTP status codes, and the problem+json body every error gets.

Domain code (inference, imaging, repository) raises its own errors without HTTP; this module decides
what a client sees. Unexpected errors are logged with their traceback and answered with a plain 500.
"""

import logging

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec

from service.api.v2.codec import InvalidInferRequest, RequestTooLarge, UnsupportedContentEncoding
from service.api.v2.tensors import InvalidTensor
from service.datasets import (
    ArchiveTooLarge,
    DatasetError,
    DatasetInUse,
    DatasetNotFound,
    DatasetRejected,
    UnsafeArchive,
)
from service.feedback import (
    AlreadyReviewed,
    BaseDatasetUnavailable,
    FeedbackError,
    FeedbackNotFound,
    NothingToExport,
    PredictionNotFound,
    UnknownLabel,
)
from service.imaging import CorruptImage, EmptyImage, ImageError, ImageTooLarge, UnsupportedImageFormat
from service.importing import ImportRejected, InvalidImportOptions, ModelFileTooLarge, UnsafeExternalData
from service.inference.errors import (
    ExplanationUnavailable,
    InvalidArgument,
    ModelNotLoaded,
    ProviderUnavailable,
    QueueFull,
    ShuttingDown,
    StillLoading,
    UnknownClass,
    VariantNotFound,
    VersionInUse,
    VersionNotLoaded,
)
from service.jobs.errors import InvalidJob, JobNotCancellable, JobNotFound, JobStoreUnavailable
from service.repository import (
    AliasNotFound,
    CorruptVersion,
    ModelNotFound,
    ReportNotFound,
    RepositoryError,
    RepositoryReadOnly,
    VersionNotFound,
)
from service.rollouts.errors import CandidateRefused, InvalidRollout, RolloutConflict, RolloutError, RolloutNotFound

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Unauthorized(Exception):
    """No API key, or one that matches no configured key."""


class Forbidden(Exception):
    """A valid key without the scope the endpoint needs."""


class RateLimited(Exception):
    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BadRequest(Exception):
    """A request body the API cannot read (wrong content type, broken multipart, bad JSON)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# (error class, status, reason label for the rejects metric). The first match in order wins.
STATUS_TABLE: list[tuple[type[Exception], int, str]] = [
    (EmptyImage, 400, "bad_image"),
    (UnsupportedImageFormat, 415, "bad_image"),
    (ImageTooLarge, 413, "too_large"),
    (CorruptImage, 422, "bad_image"),
    (ImageError, 422, "bad_image"),
    (InvalidArgument, 400, "bad_request"),
    (InvalidTensor, 400, "bad_request"),
    (UnsupportedContentEncoding, 415, "bad_request"),
    (InvalidInferRequest, 400, "bad_request"),
    (RequestTooLarge, 413, "too_large"),
    (ModelNotFound, 404, "not_found"),
    (VersionNotFound, 404, "not_found"),
    (AliasNotFound, 404, "not_found"),
    (ReportNotFound, 404, "not_found"),
    (VariantNotFound, 404, "not_found"),
    (ModelNotLoaded, 404, "not_loaded"),
    (VersionInUse, 409, "conflict"),
    (ExplanationUnavailable, 409, "no_explanations"),
    (UnknownClass, 422, "unknown_label"),
    (CorruptVersion, 422, "corrupt_version"),
    (InvalidRollout, 422, "bad_rollout"),
    (CandidateRefused, 422, "bad_rollout"),
    (RolloutConflict, 409, "conflict"),
    (RolloutNotFound, 404, "not_found"),
    (RolloutError, 400, "bad_request"),
    (RepositoryReadOnly, 409, "read_only"),
    (RepositoryError, 400, "bad_request"),
    (DatasetRejected, 422, "bad_dataset"),
    (UnsafeArchive, 400, "bad_dataset"),
    (ArchiveTooLarge, 413, "too_large"),
    (DatasetNotFound, 404, "not_found"),
    (DatasetInUse, 409, "conflict"),
    (DatasetError, 400, "bad_request"),
    (PredictionNotFound, 404, "not_found"),
    (FeedbackNotFound, 404, "not_found"),
    (AlreadyReviewed, 409, "conflict"),
    (UnknownLabel, 422, "unknown_label"),
    (NothingToExport, 422, "no_feedback"),
    (BaseDatasetUnavailable, 422, "no_base_dataset"),
    (FeedbackError, 400, "bad_request"),
    (ModelFileTooLarge, 413, "too_large"),
    (UnsafeExternalData, 400, "bad_model"),
    (InvalidImportOptions, 400, "bad_request"),
    (ImportRejected, 422, "bad_model"),
    (InvalidJob, 422, "invalid_job"),
    (JobNotFound, 404, "not_found"),
    (JobNotCancellable, 409, "conflict"),
    (JobStoreUnavailable, 503, "job_store"),
    (QueueFull, 503, "queue_full"),
    (ShuttingDown, 503, "unloading"),
    (StillLoading, 503, "loading"),
    (ProviderUnavailable, 503, "provider"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (RateLimited, 429, "rate_limited"),
]


def with_route_hint(error: Exception) -> str:
    """The error's message, plus the request that resolves it where there is one: domain code names no routes."""
    if isinstance(error, VersionNotLoaded):
        query = f"?variant={error.variant}" if error.variant else ""
        return f"{error}; load it with POST /v1/models/{error.name}/versions/{error.version}/load{query}"
    if isinstance(error, ExplanationUnavailable):
        return f"{error}: add ?method=occlusion"
    if isinstance(error, DatasetNotFound):
        return f"{error}; GET /v1/datasets lists them"
    if isinstance(error, JobNotFound):
        return f"{error}; GET /v1/fine-tuning/jobs lists them"
    if isinstance(error, FeedbackNotFound):
        return f"{error}; GET /v1/feedback lists them"
    return str(error)


def classify_error(error: Exception) -> tuple[int, str, str]:
    """(status, reason, message a client can act on) for any exception."""
    for kind, status, reason in STATUS_TABLE:
        if isinstance(error, kind):
            return status, reason, with_route_hint(error)
    if isinstance(error, BadRequest):
        return error.status, "bad_request", str(error)
    if isinstance(error, ValidationException):
        details = "; ".join(
            f"{item.get('key', '?')}: {item.get('message', '')}"
            for item in (error.extra or [])
            if isinstance(item, dict)
        )
        return 400, "bad_request", f"invalid request parameter: {details}" if details else error.detail
    if isinstance(error, HTTPException):
        reason = "too_large" if error.status_code == 413 else "not_found" if error.status_code == 404 else "http"
        return error.status_code, reason, error.detail
    return 500, "internal", "internal server error (the server log has the details)"


class Problem(msgspec.Struct):
    """The body of every /v1 error (RFC 9457 problem details), sent as application/problem+json."""

    type: str  # always "about:blank"
    title: str  # the reason, e.g. "too large"
    status: int
    detail: str  # what was wrong and what to send instead


class V2Error(msgspec.Struct):
    """The body of every /v2 error, as the KServe protocol defines it."""

    error: str


# When each status is answered, for the OpenAPI description of every route (``problems``, ``v2_errors``).
WHEN = {
    400: "the request cannot be read: a bad parameter, body or name (the detail says which)",
    401: "no API key, or an unknown one (with WWW-Authenticate)",
    403: "the key lacks the scope this endpoint needs",
    404: "no such model, version, alias, variant, dataset, job, kept prediction or feedback; or a version not loaded "
    "on this server; or a version without an evaluation report",
    409: "the request conflicts with the current state (the detail says how to resolve it)",
    413: "over a size limit: body, images per request, image bytes or pixels, dataset entries or unpacked bytes, "
    "an imported model's file",
    415: "a Content-Type (or Content-Encoding) this endpoint does not accept, or bytes that are not an allowed image "
    "format",
    422: "well-formed but unusable: a corrupt or truncated image, a dataset that cannot train a classifier, an "
    "invalid job, a version onnxruntime cannot load, an ONNX model that fails an import check, a label the model "
    "does not have",
    429: "over the key's rate limit (with Retry-After)",
    503: "overloaded, still loading, or (jobs) Redis does not answer; nothing was done, retry after Retry-After",
}
# Every route that needs an API key may answer these; 400 also replaces Litestar's own description of its
# parameter errors, which ``problem_response`` answers in this module's shapes instead.
KEYED = (400, 401, 403, 429)


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` (route decorators) for the problem+json errors a keyed /v1 route may answer."""
    return {
        status: ResponseSpec(Problem, description=WHEN[status], media_type=PROBLEM_JSON, generate_examples=False)
        for status in sorted({*statuses, *KEYED})
    }


def v2_errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` (route decorators) for the ``{"error": ...}`` answers a keyed /v2 route may give."""
    return {
        status: ResponseSpec(V2Error, description=WHEN[status], media_type=MediaType.JSON, generate_examples=False)
        for status in sorted({*statuses, *KEYED})
    }


def retry_after(error: Exception) -> int | None:
    if isinstance(error, QueueFull | RateLimited):
        return error.retry_after_s
    if isinstance(error, ShuttingDown | StillLoading):
        return 1
    if isinstance(error, JobStoreUnavailable):
        return 5
    return None


def problem_response(request: Request, error: Exception) -> Response[dict[str, object]]:
    status, reason, message = classify_error(error)
    if status >= 500 and reason == "internal":
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    state = request.app.state.get("imgcls")
    if state is not None:
        state.metrics.rejects.labels(reason).inc()
    headers: dict[str, str] = {}
    if (seconds := retry_after(error)) is not None:
        headers["Retry-After"] = str(seconds)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="imgcls"'
    if request.url.path.startswith("/v2"):  # the KServe V2 protocol has its own error shape
        return Response({"error": message}, status_code=status, headers=headers, media_type=MediaType.JSON)
    body = {"type": "about:blank", "title": reason.replace("_", " "), "status": status, "detail": message}
    return Response(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)
