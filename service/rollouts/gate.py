"""When a rollout ends by itself: the gate, once ``until`` is reached, and a failing candidate at any time."""

import time
from typing import Literal, NamedTuple

from service.rollouts.figures import Figures
from service.rollouts.plan import Rollout

FAILURES_TO_ABORT = 3  # candidate errors (in all processes together) that end a rollout at once


class Decision(NamedTuple):
    outcome: Literal["promote", "abort"]
    reason: str


def reached(rollout: Rollout, figures: Figures, now: float) -> str | None:
    """Why ``until`` is reached (None: not yet)."""
    until = rollout.until
    if until is None:
        return None
    if until.requests is not None and figures.compared >= until.requests:
        return f"{figures.compared} requests compared (until {until.requests})"
    if until.minutes is not None and now - rollout.started_at >= until.minutes * 60:
        return f"{until.minutes:g} minutes passed"
    return None


def decide(rollout: Rollout, figures: Figures, now: float | None = None) -> Decision | None:
    """Promote, abort, or None (keep going). Without a gate a rollout ends only by hand (or by failing)."""
    failures = figures.candidate.failures
    if failures >= FAILURES_TO_ABORT:
        return Decision("abort", f"the candidate failed {failures} times (last: {figures.candidate.last_error})")
    gate = rollout.gate
    why = reached(rollout, figures, time.time() if now is None else now)
    if gate is None or why is None:
        return None
    breaches = []
    if gate.min_agreement is not None:
        agreement = figures.agreement
        if agreement is None or agreement < gate.min_agreement:
            shown = "nothing compared" if agreement is None else f"{agreement:.4f}"
            breaches.append(f"agreement {shown} < {gate.min_agreement}")
    if gate.max_p99_ratio is not None:
        ratio = figures.p99_ratio
        if ratio is None or ratio > gate.max_p99_ratio:
            shown = "not measured" if ratio is None else f"{ratio:.3f}"
            breaches.append(f"p99 ratio {shown} > {gate.max_p99_ratio}")
    if breaches:
        return Decision("abort", f"gate breached after {why}: " + "; ".join(breaches))
    met = [f"agreement {figures.agreement}" if gate.min_agreement is not None else "",
           f"p99 ratio {figures.p99_ratio}" if gate.max_p99_ratio is not None else ""]  # fmt: skip
    return Decision("promote", f"gate met after {why}: " + ", ".join(m for m in met if m))
