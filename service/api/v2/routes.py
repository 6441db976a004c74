"""/v2 health, server and model metadata, readiness, Triton-style config, and the repository extension.

Health needs no key (probes send none); metadata, readiness and config need the classify scope; the
repository index, load and unload need admin. Every path with ``/versions/{version}`` also works without it
(the model's serving version: its production alias, else its latest).
"""

import asyncio
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath

from service.api.auth import authorized
from service.api.errors import BadRequest, v2_errors, with_route_hint
from service.api.state import AppState
from service.api.v2 import signature
from service.inference.errors import InvalidArgument, ModelNotLoaded
from service.repository import Manifest
from service.version import code_version

VersionPath = FromPath[str | None]  # absent from the path without /versions/{version}: the serving version

# Only what is implemented: binary tensors, classification, repository index/load/unload, model config.
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "model_configuration"]


def versioned(path: str) -> list[str]:
    """``/v2/models/{name}<path>`` with and without ``/versions/{version}``."""
    return [f"/v2/models/{{name:str}}{path}", f"/v2/models/{{name:str}}/versions/{{version:str}}{path}"]


def parse_version(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:  # isdigit alone passes '¹', which int() refuses
        raise InvalidArgument(f"the model version must be a positive integer, got {text!r}")
    return int(text)


async def version_manifest(state: AppState, name: str, version: int | None) -> Manifest:
    """The manifest of the version a request names: loaded here, else read from the repository."""
    try:
        return state.registry.find(name, version=version).manifest
    except ModelNotLoaded:
        repository = state.registry.repository

        def read() -> Manifest:
            return repository.manifest(name, repository.resolve(name, version))

        return await asyncio.to_thread(read)


def loaded_versions(state: AppState, name: str) -> list[int]:
    return sorted({loaded.version for loaded in state.registry.model_status(name).loaded})


# ---------------------------------------------------------------- health and server metadata


@get("/v2/health/live", tags=["v2"])
async def live() -> dict[str, bool]:
    return {"live": True}


@get(
    "/v2/health/ready",
    tags=["v2"],
    responses={
        503: ResponseSpec(
            dict[str, Any], description='not ready yet: {"ready": false, "error": "<why>"}', generate_examples=False
        )
    },
)
async def ready(request: Request) -> Response[dict[str, Any]]:
    """200 once the default model serves; 503 with the reason until then."""
    is_ready, reason = request.app.state.imgcls.registry.ready()
    body: dict[str, Any] = {"ready": True} if is_ready else {"ready": False, "error": reason}
    return Response(body, status_code=200 if is_ready else 503, media_type=MediaType.JSON)


@get("/v2", tags=["v2"], responses=v2_errors())
async def server_metadata(request: Request) -> dict[str, Any]:
    await authorized(request, "classify")
    return {"name": "imgcls", "version": code_version(), "extensions": EXTENSIONS}


# ---------------------------------------------------------------- models


@get(versioned(""), tags=["v2"], responses=v2_errors(404, 503))
async def model_metadata(request: Request, name: FromPath[str], version: VersionPath = None) -> dict[str, Any]:
    """Inputs (``input`` FP32 NCHW or ``image_bytes`` BYTES) and the output ``probabilities``."""
    state = await authorized(request, "classify")
    manifest = await version_manifest(state, name, parse_version(version))
    return signature.model_metadata(manifest, loaded_versions(state, name) or [manifest.version])


@get(
    versioned("/ready"),
    tags=["v2"],
    responses={
        **v2_errors(404),
        503: ResponseSpec(
            dict[str, Any], description="published but not loaded here, or still loading", generate_examples=False
        ),
    },
)
async def model_ready(request: Request, name: FromPath[str], version: VersionPath = None) -> Response[dict[str, Any]]:
    """200 when the version (default: the serving one) is loaded here; 503 when not; 404 when unpublished."""
    state = await authorized(request, "classify")
    try:
        loaded = state.registry.find(name, version=parse_version(version))
    except ModelNotLoaded as error:
        body = {"name": name, "ready": False, "error": with_route_hint(error)}
        return Response(body, status_code=503, media_type=MediaType.JSON)
    body = {"name": name, "version": str(loaded.version), "ready": True}
    return Response(body, status_code=200, media_type=MediaType.JSON)


@get(versioned("/config"), tags=["v2"], responses=v2_errors(404, 503))
async def model_config(request: Request, name: FromPath[str], version: VersionPath = None) -> dict[str, Any]:
    state = await authorized(request, "classify")
    manifest = await version_manifest(state, name, parse_version(version))
    settings = state.settings
    return signature.model_config(
        manifest,
        max_images=settings.max_images_per_request,
        max_queue_delay_ms=settings.max_queue_delay_ms,
        max_queue_size=settings.max_queue_size,
    )


# ---------------------------------------------------------------- repository extension (admin)


class RepositoryRequest(msgspec.Struct):
    parameters: dict[str, Any] = {}
    ready: bool | None = None  # index only: list just the ready (or just the unavailable) versions


def repository_request(body: bytes) -> RepositoryRequest:
    """An empty body (what tritonclient sends to the index) or ``{"parameters": {...}}``."""
    if not body.strip():
        return RepositoryRequest()
    try:
        return msgspec.json.decode(body, type=RepositoryRequest)
    except msgspec.ValidationError as error:
        raise BadRequest(f"invalid repository request: {error}") from error
    except msgspec.DecodeError as error:
        raise BadRequest(f"the repository request body is not valid JSON: {error}") from error


def version_parameter(parameters: dict[str, Any]) -> int | None:
    """Our one load/unload parameter, ``version`` (an integer); the others Triton defines do not apply here."""
    overrides = sorted(key for key in parameters if key == "config" or key.startswith("file:"))
    if overrides:
        raise InvalidArgument(
            f"parameters {overrides}: loading from an override config or files is not supported; this server "
            "loads published versions from its model repository"
        )
    version = parameters.get("version")
    if version is None:
        return None
    return parse_version(str(version))


@post("/v2/repository/index", status_code=200, tags=["v2"], responses=v2_errors(413))
async def repository_index(request: Request) -> list[dict[str, str]]:
    """Every published version: READY when loaded here, else UNAVAILABLE with the reason."""
    state = await authorized(request, "admin")
    wanted = repository_request(await request.body()).ready
    repository = state.registry.repository

    def read() -> list[tuple[str, list[int]]]:
        return [(name, repository.versions(name)) for name in repository.models()]

    entries = []
    for name, versions in await asyncio.to_thread(read):
        loaded = set(loaded_versions(state, name))
        for version in versions:
            is_ready = version in loaded
            if wanted is not None and wanted != is_ready:
                continue
            reason = "" if is_ready else f"published, not loaded (POST /v2/repository/models/{name}/load)"
            state_name = "READY" if is_ready else "UNAVAILABLE"
            entries.append({"name": name, "version": str(version), "state": state_name, "reason": reason})
    return entries


@post(
    "/v2/repository/models/{name:str}/load",
    status_code=200,
    tags=["v2"],
    responses=v2_errors(404, 413, 422, 503),
)
async def load_model(request: Request, name: FromPath[str]) -> dict[str, Any]:
    """With ``parameters.version``: load and pin that version. Without: make sure the model serves."""
    state = await authorized(request, "admin")
    version = version_parameter(repository_request(await request.body()).parameters)
    registry = state.registry
    if version is not None:
        await registry.load(name, version, None)
    elif registry.model_status(name).serving_version is None:
        await registry.refresh()  # picks up a model published since the last poll
        registry.find(name)  # ModelNotFound, or ModelNotLoaded when it failed to load (the log says why)
    return {}


@post(
    "/v2/repository/models/{name:str}/unload",
    status_code=200,
    tags=["v2"],
    responses=v2_errors(404, 409, 413),
)
async def unload_model(request: Request, name: FromPath[str]) -> dict[str, Any]:
    """With ``parameters.version``: that version. Without: every loaded version except the serving one.

    The serving version cannot be unloaded (409): promote another version first.
    """
    state = await authorized(request, "admin")
    version = version_parameter(repository_request(await request.body()).parameters)
    registry = state.registry
    if version is not None:
        await registry.unload(name, version, None)
        return {}
    status = registry.model_status(name)
    others = sorted({loaded.version for loaded in status.loaded} - {status.serving_version})
    if not others:  # nothing but the serving version: the registry says why it stays (409) or 404
        serving = status.serving_version
        target = serving if serving is not None else await asyncio.to_thread(registry.repository.resolve, name)
        await registry.unload(name, target, None)
    for other in others:
        await registry.unload(name, other, None)
    return {}
