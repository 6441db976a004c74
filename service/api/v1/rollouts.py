"""/v1/models/{name}/rollout: try a candidate version on live traffic (shadow or canary), read its live
figures, promote or abort it; /v1/models/{name}/history: every promotion, rollback and rollout.

The work is service/rollouts/ (docs/rollouts.md); here: keys, bodies, answers, and ``AnswerThen``, the
classify answer that starts a rollout's comparison once it has been sent.
"""

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post, put
from litestar.params import FromPath, Parameter
from litestar.types import Receive, Scope, Send

from service.api.errors import BadRequest, problems
from service.api.fastpath.answers import JsonAnswer
from service.api.state import AppState
from service.repository import history
from service.rollouts.errors import InvalidRollout
from service.rollouts.figures import Figures
from service.rollouts.plan import Gate, Mode, Rollout, Until, parse_request


class AnswerThen(JsonAnswer):
    """A classify answer that calls ``then`` once it has been handed to the connection (written to the socket,
    or queued for this loop turn's write): the rollout's comparison never delays it."""

    __slots__ = ("then",)

    def __init__(self, body: bytes, then: Callable[[], None]) -> None:
        self.body = body
        self.then = then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)
        self.then()


class RolloutStatus(msgspec.Struct):
    """A running rollout and its live figures, from every server process and replica."""

    id: str
    model: str
    version: int  # the candidate
    serving_version: int
    mode: Mode
    percent: float
    until: Until | None
    gate: Gate | None
    started_at: str
    started_by: str
    reason: str
    figures: Figures


class EndRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = ""


def status(plan: Rollout, figures: Figures) -> RolloutStatus:
    return RolloutStatus(
        id=plan.id,
        model=plan.model,
        version=plan.version,
        serving_version=plan.serving_version,
        mode=plan.mode,
        percent=plan.percent,
        until=plan.until,
        gate=plan.gate,
        started_at=plan.started_iso,
        started_by=plan.started_by,
        reason=plan.reason,
        figures=figures,
    )


async def json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise BadRequest(f"the body is not JSON: {error}") from error


@put("/v1/models/{name:str}/rollout", status_code=201, tags=["admin"], responses=problems(404, 409, 422))
async def start_rollout(request: Request, name: FromPath[str]) -> RolloutStatus:
    """Start trying a version on live traffic. Body: {"version", "mode": "shadow"|"canary", "percent",
    "until": {"requests", "minutes"}, "gate": {"min_agreement", "max_p99_ratio"}, "reason"}. The candidate is
    loaded and warmed first: a version that fails to load, or the one already serving, answers 422; a second
    rollout of the model 409."""
    state: AppState = request.app.state.imgcls
    key = await state.auth.authorize(request, "admin")
    wanted = parse_request(await json_body(request))
    plan = await state.rollouts.start(name, wanted, by=key.name)
    return status(*await state.rollouts.figures(plan.model))


@get("/v1/models/{name:str}/rollout", tags=["models"], responses=problems(404))
async def rollout_status(request: Request, name: FromPath[str]) -> RolloutStatus:
    """The running rollout with its live figures: requests seen, top-1 agreement (overall and per class), the
    confusion between the two versions' answers, mean confidence, latency p50/p99 and failures of each, and
    the accuracy of each on compared images that have feedback. 404 when none runs."""
    state: AppState = request.app.state.imgcls
    await state.auth.authorize(request, "classify")
    return status(*await state.rollouts.figures(name))


async def end(request: Request, name: str, outcome: Any) -> history.HistoryEvent:
    state: AppState = request.app.state.imgcls
    key = await state.auth.authorize(request, "admin")
    try:
        body = msgspec.convert(await json_body(request), EndRequest)
    except msgspec.ValidationError as error:
        raise InvalidRollout(f'the body is {{"reason": "why"}} or nothing: {error}') from error
    return await state.rollouts.end(name, outcome, by=key.name, reason=body.reason or f"{outcome} by hand")


@post("/v1/models/{name:str}/rollout/promote", status_code=200, tags=["admin"], responses=problems(404, 409))
async def promote_rollout(request: Request, name: FromPath[str]) -> history.HistoryEvent:
    """End the running rollout now and make its candidate production (hot swap on every server)."""
    return await end(request, name, "promote")


@post("/v1/models/{name:str}/rollout/abort", status_code=200, tags=["admin"], responses=problems(404))
async def abort_rollout(request: Request, name: FromPath[str]) -> history.HistoryEvent:
    """End the running rollout now; the serving version stays, the candidate is unloaded."""
    return await end(request, name, "abort")


@get("/v1/models/{name:str}/history", tags=["models"], responses=problems(404))
async def model_history(
    request: Request,
    name: FromPath[str],
    limit: Annotated[int, Parameter(ge=1, le=10_000, description="newest events to return")] = 100,
) -> list[history.HistoryEvent]:
    """Promotions, rollbacks, alias moves and rollouts of the model, newest first, each with who and why."""
    state: AppState = request.app.state.imgcls
    await state.auth.authorize(request, "classify")
    return await asyncio.to_thread(history.read, state.registry.repository, name, limit)


ROUTES = [start_rollout, rollout_status, promote_rollout, abort_rollout, model_history]
