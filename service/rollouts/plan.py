"""What a rollout is: the request an admin (or a fine-tuning job) makes, and the record kept while it runs.

The record (``Rollout``) is what every server process reads from ``<root>/<model>/rollout.json``; it is
written once when the rollout starts and removed when it ends (store.py).
"""

import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from service.rollouts.errors import InvalidRollout

Mode = Literal["shadow", "canary"]


class Until(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When the gate decides: after ``requests`` compared requests or ``minutes`` minutes, whichever comes first."""

    requests: int | None = None
    minutes: float | None = None


class Gate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the candidate must show by ``until`` to be promoted; otherwise the rollout aborts."""

    min_agreement: float | None = None  # top-1 agreement with the serving version, 0-1
    max_p99_ratio: float | None = None  # candidate p99 latency / serving p99 latency


class RolloutRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/models/{name}/rollout``."""

    version: int
    mode: Mode = "shadow"
    percent: float = 100.0  # shadow: share of requests also run on the candidate; canary: share it answers
    until: Until | None = None
    gate: Gate | None = None
    reason: str = ""  # recorded in the model's history


class Rollout(msgspec.Struct, frozen=True):
    """A running rollout, as stored in ``rollout.json``."""

    id: str  # ro_<12 hex>: names its figures folder
    model: str
    version: int  # the candidate
    serving_version: int  # what served when it started
    mode: Mode
    percent: float
    until: Until | None
    gate: Gate | None
    started_at: float  # Unix seconds
    started_by: str
    reason: str = ""

    @property
    def started_iso(self) -> str:
        return datetime.fromtimestamp(self.started_at, UTC).isoformat(timespec="seconds")


def parse_request(body: Any) -> RolloutRequest:
    """The rollout asked for in a decoded JSON body; raises ``InvalidRollout`` naming what to fix."""
    try:
        request = msgspec.convert(body, RolloutRequest)
    except msgspec.ValidationError as error:
        raise InvalidRollout(
            f"not a rollout: {error} (fields: version, mode shadow|canary, percent, until {{requests, minutes}}, "
            "gate {min_agreement, max_p99_ratio}, reason)"
        ) from error
    check_request(request)
    return request


def check_request(request: RolloutRequest) -> None:
    if not 0.0 < request.percent <= 100.0:
        raise InvalidRollout(f"percent is a share of requests, more than 0 and at most 100; got {request.percent}")
    until, gate = request.until, request.gate
    if until is not None:
        if until.requests is None and until.minutes is None:
            raise InvalidRollout("until names requests, minutes or both")
        if until.requests is not None and until.requests < 1:
            raise InvalidRollout(f"until.requests is at least 1; got {until.requests}")
        if until.minutes is not None and not until.minutes > 0:
            raise InvalidRollout(f"until.minutes is more than 0; got {until.minutes}")
    if gate is not None:
        if gate.min_agreement is None and gate.max_p99_ratio is None:
            raise InvalidRollout("a gate names min_agreement, max_p99_ratio or both")
        if gate.min_agreement is not None and not 0.0 <= gate.min_agreement <= 1.0:
            raise InvalidRollout(f"gate.min_agreement is a share between 0 and 1; got {gate.min_agreement}")
        if gate.max_p99_ratio is not None and not gate.max_p99_ratio > 0:
            raise InvalidRollout(f"gate.max_p99_ratio is more than 0; got {gate.max_p99_ratio}")
        if until is None:
            raise InvalidRollout("a gate decides once the rollout reaches until: give until {requests, minutes}")


def new_rollout(name: str, serving_version: int, request: RolloutRequest, *, by: str) -> Rollout:
    return Rollout(
        id=f"ro_{secrets.token_hex(6)}",
        model=name,
        version=request.version,
        serving_version=serving_version,
        mode=request.mode,
        percent=request.percent,
        until=request.until,
        gate=request.gate,
        started_at=time.time(),
        started_by=by,
        reason=request.reason,
    )
