"""/v1/models: what is published, what this server has loaded, and the admin verbs load, unload, promote."""

import asyncio
from typing import Annotated

from litestar import Request, get, post
from litestar.params import FromPath, JSONBody, Parameter

from service.api.auth import authorized
from service.api.errors import problems
from service.api.state import AppState
from service.api.v1.schemas import (
    LineageInfo,
    LoadedInfo,
    ModelDetail,
    ModelSummary,
    PromoteRequest,
    VersionInfo,
)
from service.inference.registry import LoadedVersion, ModelStatus
from service.rollouts import RolloutConflict

VariantQuery = Annotated[str | None, Parameter(description="fp32 or a variant such as int8; default from settings")]


def loaded_info(loaded: LoadedVersion) -> LoadedInfo:
    return LoadedInfo(
        version=loaded.version,
        variant=loaded.variant,
        provider=loaded.predictor.provider,
        pinned=loaded.pinned,
        in_flight=loaded.in_flight,
        queued_images=loaded.batcher.queued_images,
    )


def summary(status: ModelStatus) -> ModelSummary:
    return ModelSummary(status.name, status.serving_version, status.aliases, [loaded_info(v) for v in status.loaded])


@get("/v1/models", tags=["models"], responses=problems())
async def list_models(request: Request) -> list[ModelSummary]:
    """Every model in the repository, with its serving version and the versions this server has loaded."""
    registry = (await authorized(request, "classify")).registry
    names = await asyncio.to_thread(registry.repository.models)
    return [summary(registry.model_status(name)) for name in names]


@get("/v1/models/{name:str}", tags=["models"], responses=problems(404))
async def model_detail(request: Request, name: FromPath[str]) -> ModelDetail:
    """Labels, preprocessing, every published version with its metrics and variants, and what is loaded."""
    state = await authorized(request, "classify")
    repository = state.registry.repository

    def read() -> tuple[list[VersionInfo], list[str], tuple[int, int], str]:
        aliases = repository.aliases(name)
        versions = []
        manifest = None
        for number in repository.versions(name):
            manifest = repository.manifest(name, number)
            versions.append(
                VersionInfo(
                    version=number,
                    aliases=sorted(a for a, v in aliases.items() if v == number),
                    architecture=manifest.architecture,
                    metrics=manifest.metrics,
                    variants={key: variant.metrics for key, variant in manifest.variants.items()},
                    created_at=manifest.created_at,
                    lineage=LineageInfo(
                        dataset=manifest.lineage.dataset,
                        base_model=manifest.lineage.base_model,
                        base_version=manifest.lineage.base_version,
                        job_id=manifest.lineage.job_id,
                        dataset_sha256=manifest.lineage.dataset_sha256,
                        imported=manifest.lineage.imported.source if manifest.lineage.imported else None,
                    ),
                    code_version=manifest.code_version,
                )
            )
        if manifest is None:
            return versions, [], (0, 0), ""
        return versions, list(manifest.labels), manifest.preprocessing.input_size, manifest.preprocessing.color_mode

    versions, labels, input_size, color_mode = await asyncio.to_thread(read)
    rollout = await asyncio.to_thread(state.rollouts.store.current, name)
    status = state.registry.model_status(name)
    return ModelDetail(
        name=name,
        serving_version=status.serving_version,
        aliases=status.aliases,
        loaded=[loaded_info(v) for v in status.loaded],
        labels=labels,
        input_size=input_size,
        color_mode=color_mode,
        versions=versions,
        confidence_threshold=state.settings.confidence_thresholds.get(name),
        rollout=rollout.id if rollout is not None else None,
    )


@post(
    "/v1/models/{name:str}/versions/{version:int}/load",
    status_code=200,
    tags=["admin"],
    responses=problems(404, 422, 503),
)
async def load_version(
    request: Request, name: FromPath[str], version: FromPath[int], variant: VariantQuery = None
) -> LoadedInfo:
    """Load and warm a version beside the others; it stays loaded until unloaded."""
    registry = (await authorized(request, "admin")).registry
    return loaded_info(await registry.load(name, version, variant))


@post(
    "/v1/models/{name:str}/versions/{version:int}/unload",
    status_code=200,
    tags=["admin"],
    responses=problems(404, 409),
)
async def unload_version(
    request: Request, name: FromPath[str], version: FromPath[int], variant: VariantQuery = None
) -> list[LoadedInfo]:
    """Release a version (every variant, or the one named); requests in flight on it finish first."""
    registry = (await authorized(request, "admin")).registry
    return [loaded_info(v) for v in await registry.unload(name, version, variant)]


@post("/v1/models/{name:str}/promote", status_code=200, tags=["admin"], responses=problems(404, 409, 413, 422, 503))
async def promote_version(request: Request, name: FromPath[str], data: JSONBody[PromoteRequest]) -> ModelSummary:
    """Point an alias (default production) at a version. For production: hot swap, no request fails.
    A read-only model repository answers 409, saying so, and so does production while a rollout runs."""
    state: AppState = request.app.state.imgcls
    key = await state.auth.authorize(request, "admin")
    if data.alias == "production":
        running = await asyncio.to_thread(state.rollouts.store.current, name)
        if running is not None:
            raise RolloutConflict(
                f"a {running.mode} rollout of {name} v{running.version} is running: end it first with "
                f"POST /v1/models/{name}/rollout/promote or /rollout/abort"
            )
    await state.registry.promote(
        name, data.version, data.alias, redis_url=state.redis_url, by=key.name, reason=data.reason
    )
    return summary(state.registry.model_status(name))
