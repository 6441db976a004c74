"""Learning-rate policies by name (Caffe's names and formulas), stepped once per optimizer step.

A policy is a multiplier m(i) of each param group's own base rate: the rate used by optimizer step i
(counting from 0) is ``base · m(i)``. Because one multiplier serves every group, per-group rates (a slower
backbone, a faster head) keep their ratio all run long.

===========  ===============================================================================
policy       m(i)
===========  ===============================================================================
fixed        1
step         γ^⌊i / step_size⌋
multistep    γ^k, k = number of milestones ≤ i
exp          γ^i
inv          (1 + γ·i)^(−power)
poly         (1 − min(i, max_iter)/max_iter)^power                           (0 at max_iter)
sigmoid      1 / (1 + e^(−γ·(i − step_size)))      (γ < 0: decays around step_size; γ > 0: rises)
cosine       r + (1 − r)·(1 + cos(π·min(i, max_iter)/max_iter))/2,  r = min_lr_ratio
onecycle     torch's OneCycleLR curve (cosine anneal, two phases) divided by its peak:
             1/div_factor → 1 over the first pct_start·max_iter − 1 steps, then
             → 1/(div_factor·final_div_factor) at step max_iter − 1; held there afterwards.
             The base rate is the peak (max_lr). No momentum cycling.
===========  ===============================================================================

Warmup, in front of any policy: with W = ``warmup_iters`` > 0 and ρ = ``warmup_start_ratio`` (an option of
every policy), for i < W::

    m(i) = ρ + (m_policy(W) − ρ) · i / W

a straight line from ρ·base to the policy's own value at W; from W on, m(i) = m_policy(i). The policy keeps
its clock: step boundaries, milestones and max_iter count from iteration 0 including the warmup.

``max_iter`` (poly, cosine, onecycle) defaults to the run's total iterations when the engine passes
``total_iters``; with neither, the policy fails with "<policy> needs max_iter".
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from service.jobs.hyperparameters import LR_POLICIES
from training.errors import InvalidHyperparameter, UnknownPolicy
from training.optim.hyperparameters import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    UNIT_CLOSED,
    CrossCheck,
    Float,
    Hyperparameter,
    IncreasingInts,
    Int,
    Range,
    check_same_names,
    defaults,
    resolve_options,
)

Formula = Callable[[int, Mapping[str, object]], float]
"""(iteration, resolved options) -> multiplier of the base rate"""


@dataclass(frozen=True)
class PolicySpec:
    name: str
    options: tuple[Hyperparameter, ...]
    formula: Formula
    check: CrossCheck | None = None


# ---------------------------------------------------------------------------------------------------------
# Formulas
# ---------------------------------------------------------------------------------------------------------


def _f(options: Mapping[str, object], key: str) -> float:
    return float(options[key])  # type: ignore[arg-type]  # converted by resolve_options


def _i(options: Mapping[str, object], key: str) -> int:
    return int(options[key])  # type: ignore[call-overload]  # converted by resolve_options


def _fixed(i: int, o: Mapping[str, object]) -> float:
    return 1.0


def _step(i: int, o: Mapping[str, object]) -> float:
    return _f(o, "gamma") ** (i // _i(o, "step_size"))


def _multistep(i: int, o: Mapping[str, object]) -> float:
    milestones: list[int] = o["milestones"]  # type: ignore[assignment]
    return _f(o, "gamma") ** bisect.bisect_right(milestones, i)


def _exp(i: int, o: Mapping[str, object]) -> float:
    return _f(o, "gamma") ** i


def _inv(i: int, o: Mapping[str, object]) -> float:
    return (1.0 + _f(o, "gamma") * i) ** -_f(o, "power")


def _poly(i: int, o: Mapping[str, object]) -> float:
    max_iter = _i(o, "max_iter")
    return (1.0 - min(i, max_iter) / max_iter) ** _f(o, "power")


def _sigmoid(i: int, o: Mapping[str, object]) -> float:
    x = _f(o, "gamma") * (i - _i(o, "step_size"))
    # 1/(1 + e^(−x)), written so that e^(...) cannot overflow
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _cosine(i: int, o: Mapping[str, object]) -> float:
    max_iter, floor = _i(o, "max_iter"), _f(o, "min_lr_ratio")
    return floor + (1.0 - floor) * (1.0 + math.cos(math.pi * min(i, max_iter) / max_iter)) / 2.0


def _onecycle(i: int, o: Mapping[str, object]) -> float:
    # Transcribes torch.optim.lr_scheduler.OneCycleLR (three_phase=False, anneal_strategy="cos").
    total = _i(o, "max_iter")
    start = 1.0 / _f(o, "div_factor")
    end = start / _f(o, "final_div_factor")
    rise_end = _f(o, "pct_start") * total - 1.0  # a float step index, as in torch
    step = min(i, total - 1)
    if step <= rise_end:
        pct, high, low = step / rise_end, 1.0, start  # cos anneal from `low` up to `high`
        return high + (low - high) / 2.0 * (math.cos(math.pi * pct) + 1.0)
    pct = (step - rise_end) / (total - 1.0 - rise_end)
    return end + (1.0 - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


# ---------------------------------------------------------------------------------------------------------
# Cross checks
# ---------------------------------------------------------------------------------------------------------


def _check_sigmoid(o: dict[str, object]) -> None:
    if o["gamma"] == 0:
        raise InvalidHyperparameter(
            "sigmoid: gamma must be non-zero (< 0 decays, > 0 rises), got 0.0; use fixed for a constant rate"
        )


def _check_onecycle(o: dict[str, object]) -> None:
    if _f(o, "pct_start") * _i(o, "max_iter") <= 1.0:
        raise InvalidHyperparameter(
            f"onecycle: pct_start × max_iter must be > 1 (a rising phase of at least one step), "
            f"got {o['pct_start']!r} × {o['max_iter']!r}"
        )


# ---------------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------------

_DECAY_GAMMA = Range(0.0, 1.0, low_open=True)  # (0, 1]: a factor that shrinks the rate
_MAX_ITER_HELP = "iterations until the end of the schedule; defaults to the run's total iterations when known"
_WARMUP = Float(
    "warmup_start_ratio",
    0.1,
    "warmup starts at this fraction of the base rate (used only when warmup_iters > 0)",
    range=UNIT_CLOSED,
)

_SPECS: dict[str, PolicySpec] = {
    spec.name: PolicySpec(spec.name, (*spec.options, _WARMUP), spec.formula, spec.check)
    for spec in (
        PolicySpec("fixed", (), _fixed),
        PolicySpec(
            "step",
            (
                Float("gamma", 0.1, "factor applied every step_size iterations", range=_DECAY_GAMMA),
                Int("step_size", help="iterations between decays"),
            ),
            _step,
        ),
        PolicySpec(
            "multistep",
            (
                Float("gamma", 0.1, "factor applied at each milestone", range=_DECAY_GAMMA),
                IncreasingInts("milestones", help="iterations at which the rate is multiplied by gamma"),
            ),
            _multistep,
        ),
        PolicySpec(
            "exp",
            (Float("gamma", help="per-iteration factor, e.g. 0.9999", range=_DECAY_GAMMA),),
            _exp,
        ),
        PolicySpec(
            "inv",
            (
                Float("gamma", 1e-4, "m = (1 + gamma·i)^(−power)", range=POSITIVE),
                Float("power", 0.75, "m = (1 + gamma·i)^(−power)", range=POSITIVE),
            ),
            _inv,
        ),
        PolicySpec(
            "poly",
            (
                Float("power", 1.0, "m = (1 − i/max_iter)^power", range=POSITIVE),
                Int("max_iter", help=_MAX_ITER_HELP),
            ),
            _poly,
        ),
        PolicySpec(
            "sigmoid",
            (
                Float("gamma", help="steepness; < 0 decays around step_size, > 0 rises", range=Range()),
                Int("step_size", help="iteration at the middle of the transition", range=NON_NEGATIVE),
            ),
            _sigmoid,
            _check_sigmoid,
        ),
        PolicySpec(
            "cosine",
            (
                Int("max_iter", help=_MAX_ITER_HELP),
                Float("min_lr_ratio", 0.0, "final rate as a fraction of the base", range=UNIT_CLOSED),
            ),
            _cosine,
        ),
        PolicySpec(
            "onecycle",
            (
                Int("max_iter", help=_MAX_ITER_HELP, range=Range(2.0, None)),
                Float(
                    "pct_start",
                    0.3,
                    "fraction of max_iter spent rising",
                    range=Range(0.0, 1.0, low_open=True, high_open=True),
                ),
                Float("div_factor", 25.0, "start rate = base / div_factor", range=AT_LEAST_ONE),
                Float(
                    "final_div_factor",
                    1e4,
                    "final rate = start rate / final_div_factor",
                    range=AT_LEAST_ONE,
                ),
            ),
            _onecycle,
            _check_onecycle,
        ),
    )
}

# the API checks a job's lr_policy against service/jobs/hyperparameters.py: stop at import if they drift
check_same_names("lr_policy", list(_SPECS), LR_POLICIES)

# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


def policy_names() -> list[str]:
    """Registered policy names, in registry order."""
    return list(_SPECS)


def _spec(name: str) -> PolicySpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownPolicy(name, _SPECS) from None


def policy_defaults(name: str) -> dict[str, object]:
    """Each option of policy ``name`` with its default; ``None`` marks a required option (or, for
    max_iter, one the run's total iterations fill in)."""
    return defaults(_spec(name).options)


def policy_help(name: str) -> dict[str, str]:
    """One line per option: its meaning and default, for CLI help and docs."""
    return {p.name: f"{p.help} ({'required' if p.required else f'default {p.default!r}'})" for p in _spec(name).options}


def resolve_policy_options(name: str, options: Mapping[str, object], *, total_iters: int | None) -> dict[str, object]:
    """Validate ``options`` for policy ``name`` and fill defaults (``max_iter`` from ``total_iters``).

    Raises UnknownPolicy, or InvalidHyperparameter naming the option, its value and the allowed range
    (unknown option, out-of-range gamma/power/step size, non-increasing milestones, missing required).
    """
    spec = _spec(name)
    total = _check_iters("total_iters", total_iters, minimum=1) if total_iters is not None else None
    return resolve_options(name, spec.options, options, filled={"max_iter": total}, check=spec.check)


def _check_iters(label: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidHyperparameter(f"{label} must be an integer >= {minimum}, got {value!r}")
    return value


class LearningRatePolicy:
    """A resolved policy plus optional warmup: ``multiplier(i)`` is the factor on each group's base rate
    for optimizer step i (from 0). See the module docstring for the formulas."""

    def __init__(
        self,
        name: str,
        options: Mapping[str, object],
        *,
        total_iters: int | None = None,
        warmup_iters: int = 0,
    ) -> None:
        self.name = name
        self.options = resolve_policy_options(name, options, total_iters=total_iters)
        self.warmup_iters = _check_iters("warmup_iters", warmup_iters, minimum=0)
        if total_iters is not None and warmup_iters > total_iters:
            raise InvalidHyperparameter(
                f"warmup_iters must be <= the run's total iterations ({total_iters}), got {warmup_iters}"
            )
        self._formula = _spec(name).formula

    def multiplier(self, iteration: int) -> float:
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        w = self.warmup_iters
        if iteration < w:
            start = _f(self.options, "warmup_start_ratio")
            return start + (self._formula(w, self.options) - start) * iteration / w
        return self._formula(iteration, self.options)

    def __repr__(self) -> str:
        return f"LearningRatePolicy({self.name!r}, {self.options!r}, warmup_iters={self.warmup_iters})"


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    options: Mapping[str, object],
    *,
    total_iters: int | None,
    warmup_iters: int = 0,
) -> LambdaLR:
    """A LambdaLR that applies policy ``name`` to every param group's own base rate.

    Call ``scheduler.step()`` after every ``optimizer.step()``. Construction sets each group's rate to
    ``base · m(0)``. The scheduler's state_dict holds only plain data (step count, base rates), so it
    saves and restores with the checkpoint (``torch.load(weights_only=True)``); the policy itself is
    rebuilt from the run's config on resume.
    """
    policy = LearningRatePolicy(name, options, total_iters=total_iters, warmup_iters=warmup_iters)

    # A plain function, not a callable object: LambdaLR stores a callable object's __dict__ in its
    # state_dict, which would put the policy (and its formula) into every checkpoint.
    def lr_lambda(iteration: int) -> float:
        return policy.multiplier(iteration)

    return LambdaLR(optimizer, lr_lambda)
