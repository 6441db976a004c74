"""The optimizer registry: every parameter-update rule by name, with typed, range-checked options.

Notation: g gradient, w parameter, lr learning rate (per param group), λ weight decay. Where an optimizer
takes weight decay it is L2 on the gradient, g ← g + λw, first (adamw: decoupled, w ← w − lr·λ·w).

=========  ==========================================================================  ===================
name       update (per element)                                                        torch
=========  ==========================================================================  ===================
sgd        w ← w − lr·g                                                                SGD
momentum   b ← μb + g (b₁ = g); w ← w − lr·b                                           SGD(momentum=μ)
nesterov   b as above; w ← w − lr·(g + μb)                                             SGD(nesterov=True)
adagrad    s ← s + g²; w ← w − lr·g/(√s + ε)                                           Adagrad
adadelta   v ← ρv + (1−ρ)g²; Δ = √(u+ε)/√(v+ε)·g; u ← ρu + (1−ρ)Δ²; w ← w − lr·Δ        Adadelta
rmsprop    v ← αv + (1−α)g²; w ← w − lr·g/(√v + ε); centered: √(v − m²), m ← αm + (1−α)g RMSprop
rprop      step ← min(step·η₊, max) if g·g_prev > 0; max(step·η₋, min), g ← 0 if < 0;    Rprop
           w ← w − step·sign(g). Full-batch method: noisy on mini-batches.
adam       bias-corrected first/second moments (β₁, β₂)                                Adam
adamw      adam with decoupled weight decay                                            AdamW
ftrl       FTRL-Proximal, see training/optim/ftrl.py; α = lr                           ours (Ftrl)
lbfgs      quasi-Newton step from recent (s, y) pairs; needs a closure                 LBFGS
=========  ==========================================================================  ===================

Every option is named, typed and range-checked here (see ``optimizer_defaults``); learning rate and weight
decay are separate arguments of :func:`build_optimizer` because every optimizer shares them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer

from service.jobs.hyperparameters import OPTIMIZERS
from training.errors import InvalidHyperparameter, UnknownOptimizer
from training.optim.ftrl import Ftrl
from training.optim.hyperparameters import (
    NON_NEGATIVE,
    POSITIVE,
    UNIT_CLOSED,
    UNIT_OPEN,
    Bool,
    Choice,
    CrossCheck,
    Float,
    Hyperparameter,
    Int,
    Numbers,
    Range,
    check_number,
    check_same_names,
    defaults,
    resolve_options,
)

ParamGroup = dict[str, Any]
Builder = Callable[[list[ParamGroup], dict[str, object]], Optimizer]
"""(param groups with lr and weight_decay set, resolved options) -> optimizer"""


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    options: tuple[Hyperparameter, ...]
    build: Builder
    summary: str
    takes_weight_decay: bool = True  # False: weight_decay must be 0 (rprop, lbfgs, ftrl)
    single_group: bool = False  # True: torch accepts one param group only (lbfgs)
    check: CrossCheck | None = None  # relations between options


# ---------------------------------------------------------------------------------------------------------
# Options shared between specs
# ---------------------------------------------------------------------------------------------------------

_EPS_HELP = "added to the denominator for numerical stability"
_BETAS = Numbers(
    "betas",
    [0.9, 0.999],
    "decay rates of the first and second moment averages",
    ranges=(UNIT_OPEN, UNIT_OPEN),
    labels=("beta1", "beta2"),
)
_ADAM_OPTIONS = (
    _BETAS,
    Float("eps", 1e-8, _EPS_HELP, range=POSITIVE),
    Bool("amsgrad", False, "use the running maximum of the second moment (AMSGrad)"),
)


def _check_step_sizes(options: dict[str, object]) -> None:
    step_sizes: list[float] = options["step_sizes"]  # type: ignore[assignment]  # a 2-list after conversion
    if step_sizes[0] > step_sizes[1]:
        raise InvalidHyperparameter(
            f"rprop: step_sizes[0] (min) must be <= step_sizes[1] (max), got {options['step_sizes']!r}"
        )


# ---------------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------------


def _sgd(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.SGD(groups)


def _momentum(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.SGD(groups, momentum=float(o["momentum"]))  # type: ignore[arg-type]


def _nesterov(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.SGD(groups, momentum=float(o["momentum"]), nesterov=True)  # type: ignore[arg-type]


def _adagrad(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.Adagrad(groups, **o)  # type: ignore[arg-type]


def _adadelta(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.Adadelta(groups, **o)  # type: ignore[arg-type]


def _rmsprop(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.RMSprop(groups, **o)  # type: ignore[arg-type]


def _rprop(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.Rprop(groups, etas=tuple(o["etas"]), step_sizes=tuple(o["step_sizes"]))  # type: ignore[arg-type]


def _adam(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.Adam(groups, betas=tuple(o["betas"]), eps=o["eps"], amsgrad=o["amsgrad"])  # type: ignore[arg-type]


def _adamw(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.AdamW(groups, betas=tuple(o["betas"]), eps=o["eps"], amsgrad=o["amsgrad"])  # type: ignore[arg-type]


def _ftrl(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return Ftrl(groups, **o)  # type: ignore[arg-type]


def _lbfgs(groups: list[ParamGroup], o: dict[str, object]) -> Optimizer:
    return torch.optim.LBFGS(
        groups,
        max_iter=o["max_iter"],  # type: ignore[arg-type]
        history_size=o["history_size"],  # type: ignore[arg-type]
        tolerance_grad=o["tolerance_grad"],  # type: ignore[arg-type]
        tolerance_change=o["tolerance_change"],  # type: ignore[arg-type]
        line_search_fn=o["line_search"],  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------------------
# The registry (variants as data)
# ---------------------------------------------------------------------------------------------------------

_SPECS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec("sgd", (), _sgd, "w ← w − lr·g"),
        OptimizerSpec(
            "momentum",
            (Float("momentum", 0.9, "μ, decay of the velocity b", range=UNIT_OPEN),),
            _momentum,
            "b ← μb + g; w ← w − lr·b",
        ),
        OptimizerSpec(
            "nesterov",
            (
                Float(
                    "momentum",
                    0.9,
                    "μ, decay of the velocity b",
                    range=Range(0.0, 1.0, low_open=True, high_open=True),
                    hint="Nesterov without momentum is plain SGD: use sgd",
                ),
            ),
            _nesterov,
            "w ← w − lr·(g + μb)",
        ),
        OptimizerSpec(
            "adagrad",
            (
                Float("eps", 1e-10, _EPS_HELP, range=POSITIVE),
                Float("lr_decay", 0.0, "lr_t = lr / (1 + (t−1)·lr_decay)", range=NON_NEGATIVE),
                Float("initial_accumulator_value", 0.0, "starting s", range=NON_NEGATIVE),
            ),
            _adagrad,
            "s ← s + g²; w ← w − lr·g/(√s + ε)",
        ),
        OptimizerSpec(
            "adadelta",
            (
                Float(
                    "rho",
                    0.9,
                    "ρ, decay of the squared-gradient and squared-update averages",
                    range=UNIT_CLOSED,
                ),
                Float("eps", 1e-6, _EPS_HELP, range=POSITIVE),
            ),
            _adadelta,
            "Δ = √(u+ε)/√(v+ε)·g; w ← w − lr·Δ (lr 1.0 is the paper's rule)",
        ),
        OptimizerSpec(
            "rmsprop",
            (
                Float("alpha", 0.99, "α, decay of the squared-gradient average v", range=UNIT_OPEN),
                Float("eps", 1e-8, _EPS_HELP, range=POSITIVE),
                Bool("centered", False, "divide by the estimated variance √(v − m²) instead of √v"),
                Float("momentum", 0.0, "momentum on the scaled step (0: none, torch's default)", range=UNIT_OPEN),
            ),
            _rmsprop,
            "v ← αv + (1−α)g²; w ← w − lr·g/(√v + ε)",
        ),
        OptimizerSpec(
            "rprop",
            (
                Numbers(
                    "etas",
                    [0.5, 1.2],
                    "(η₋, η₊): step-size factors after a sign change / no sign change",
                    ranges=(Range(0.0, 1.0, low_open=True, high_open=True), Range(1.0, None, low_open=True)),
                    labels=("eta_minus", "eta_plus"),
                ),
                Numbers(
                    "step_sizes",
                    [1e-6, 50.0],
                    "(min, max) per-element step size; the initial step is lr",
                    ranges=(POSITIVE, POSITIVE),
                    labels=("min", "max"),
                ),
            ),
            _rprop,
            "w ← w − step·sign(g), step adapted per element; full-batch method",
            takes_weight_decay=False,
            check=_check_step_sizes,
        ),
        OptimizerSpec("adam", _ADAM_OPTIONS, _adam, "bias-corrected moments; L2 weight decay on g"),
        OptimizerSpec("adamw", _ADAM_OPTIONS, _adamw, "bias-corrected moments; decoupled weight decay"),
        OptimizerSpec(
            "ftrl",
            (
                Float("beta", 1.0, "β, smooths the per-coordinate rate α/(β + √n)", range=NON_NEGATIVE),
                Float("l1", 0.0, "λ1, |z| ≤ λ1 gives an exact zero weight", range=NON_NEGATIVE),
                Float("l2", 0.0, "λ2, paper convention (twice Keras' l2)", range=NON_NEGATIVE),
                Float("lr_power", -0.5, "p; n^(−p) replaces √n (−0.5: the paper)", range=Range(None, 0.0)),
                Float("initial_accumulator_value", 0.0, "starting n (paper 0.0, Keras 0.1)", range=NON_NEGATIVE),
                Bool(
                    "keep_initial_weights",
                    True,
                    "start z so the first step starts from the model's initialization (false: the paper's z = 0, "
                    "which wipes a CNN's initialization and leaves it at chance)",
                ),
            ),
            _ftrl,
            "FTRL-Proximal, α = learning_rate; regularizes with l1/l2, not weight_decay",
            takes_weight_decay=False,
        ),
        OptimizerSpec(
            "lbfgs",
            (
                Int("max_iter", 20, "inner iterations (closure evaluations ≈ 1.25×) per optimizer step"),
                Int("history_size", 100, "number of (s, y) pairs kept"),
                Choice(
                    "line_search",
                    "strong_wolfe",
                    "strong_wolfe, or none for fixed steps of size lr",
                    choices=("strong_wolfe", None),
                ),
                Float("tolerance_grad", 1e-7, "stop when max |g| falls below this", range=NON_NEGATIVE),
                Float("tolerance_change", 1e-9, "stop when the loss or step changes less", range=NON_NEGATIVE),
            ),
            _lbfgs,
            "quasi-Newton; the engine passes a closure that re-evaluates the loss",
            takes_weight_decay=False,
            single_group=True,
        ),
    )
}

_SEPARATE = {
    "lr": "the learning rate is the separate learning_rate argument",
    "learning_rate": "the learning rate is the separate learning_rate argument",
    "alpha": "for ftrl, α is the separate learning_rate argument",
    "weight_decay": "weight_decay is a separate argument",
}

# the API checks a job's optimizer against service/jobs/hyperparameters.py: stop at import if they drift
check_same_names("optimizer", list(_SPECS), OPTIMIZERS)

# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


def optimizer_names() -> list[str]:
    """Registered optimizer names, in registry order."""
    return list(_SPECS)


def _spec(name: str) -> OptimizerSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownOptimizer(name, _SPECS) from None


def optimizer_defaults(name: str) -> dict[str, object]:
    """Each option of ``name`` with its default (for CLI help and for storing the resolved config)."""
    return defaults(_spec(name).options)


def takes_weight_decay(name: str) -> bool:
    """False for the optimizers that refuse weight_decay (rprop, lbfgs, ftrl)."""
    return _spec(name).takes_weight_decay


def optimizer_help(name: str) -> dict[str, str]:
    """One line per option: its meaning and default, for CLI help and docs."""
    return {p.name: f"{p.help} (default {p.default!r})" for p in _spec(name).options}


def resolve_optimizer_options(name: str, options: Mapping[str, object]) -> dict[str, object]:
    """Validate ``options`` for optimizer ``name`` and fill defaults; unknown option names are errors."""
    spec = _spec(name)
    return resolve_options(name, spec.options, options, check=spec.check, separate=_SEPARATE)


def build_optimizer(
    name: str,
    param_groups: Iterable[torch.Tensor] | Iterable[ParamGroup],
    *,
    learning_rate: float,
    weight_decay: float,
    options: Mapping[str, object],
) -> Optimizer:
    """Build optimizer ``name`` over ``param_groups`` (tensors, or dicts as from ``parameter_groups``).

    Per group: ``lr = learning_rate × group["lr_multiplier"]`` (multiplier 1 when absent) unless the group
    sets ``lr`` itself; ``weight_decay`` is the group's own value when it has one (``parameter_groups``
    puts 0 on norm layers and biases), else the ``weight_decay`` argument. Extra keys (``name``,
    ``lr_multiplier``) stay in the optimizer's groups and in its state_dict.

    Optimizers without weight decay (rprop, lbfgs, ftrl; ftrl has ``l2``) refuse an effective
    weight_decay > 0 rather than silently ignoring it.

    lbfgs: torch's LBFGS takes exactly one param group. The groups are merged into one when they agree on
    ``lr`` (weight decay is 0 for all, see above); groups with different rates (e.g. a lower-rate
    backbone) are an error, since L-BFGS has one step size for the whole parameter vector.

    Raises UnknownOptimizer or InvalidHyperparameter (naming the parameter, value and allowed range).
    """
    spec = _spec(name)
    lr = check_number("learning_rate", learning_rate, POSITIVE)
    decay = check_number("weight_decay", weight_decay, NON_NEGATIVE)
    resolved = resolve_optimizer_options(name, options)
    groups = _groups_with_rates(param_groups, lr, decay)
    if not spec.takes_weight_decay:
        for group in groups:
            if group["weight_decay"] > 0:
                fix = "use its l1/l2 options" if name == "ftrl" else "add an L2 term to the loss"
                raise InvalidHyperparameter(
                    f"{name} does not apply weight_decay: it must be 0, got {group['weight_decay']!r} "
                    f"(in group {group.get('name', '?')!r}); set weight_decay to 0 or {fix}"
                )
            del group["weight_decay"]  # not a key these optimizers know
    if spec.single_group:
        groups = [_merge_groups(name, groups)]
    return spec.build(groups, resolved)


def needs_closure(optimizer: Optimizer) -> bool:
    """True when ``optimizer.step`` must be given a closure that zeroes grads, re-evaluates the loss,
    calls backward and returns the loss (L-BFGS evaluates it several times per step)."""
    return isinstance(optimizer, torch.optim.LBFGS)


# ---------------------------------------------------------------------------------------------------------
# Group handling
# ---------------------------------------------------------------------------------------------------------


def _groups_with_rates(
    param_groups: Iterable[torch.Tensor] | Iterable[ParamGroup], learning_rate: float, weight_decay: float
) -> list[ParamGroup]:
    items = list(param_groups)
    if not items:
        raise InvalidHyperparameter("the optimizer got no parameters (is every parameter frozen?)")
    if all(isinstance(item, torch.Tensor) for item in items):
        items = [{"params": items}]
    elif not all(isinstance(item, dict) for item in items):
        raise TypeError("param_groups must be all tensors or all dicts")
    groups: list[ParamGroup] = []
    for i, item in enumerate(items):
        group = dict(item)  # type: ignore[call-overload]  # a dict, checked above
        label = f"param group {group.get('name', i)!r}"
        multiplier = check_number(f"{label}: lr_multiplier", group.get("lr_multiplier", 1.0), POSITIVE)
        group["lr_multiplier"] = multiplier
        if "lr" in group:
            group["lr"] = check_number(f"{label}: lr", group["lr"], POSITIVE)
        else:
            group["lr"] = learning_rate * multiplier
        group["weight_decay"] = check_number(
            f"{label}: weight_decay", group.get("weight_decay", weight_decay), NON_NEGATIVE
        )
        group["params"] = list(group["params"]) if not isinstance(group["params"], torch.Tensor) else [group["params"]]
        groups.append(group)
    return groups


def _merge_groups(name: str, groups: list[ParamGroup]) -> ParamGroup:
    rates = {g["lr"] for g in groups}
    if len(rates) > 1:
        listing = ", ".join(f"{g.get('name', i)}: {g['lr']:g}" for i, g in enumerate(groups))
        raise InvalidHyperparameter(
            f"{name} takes one learning rate for all parameters, but the param groups have {listing}; "
            "drop lr_multipliers or choose another optimizer"
        )
    merged = {k: v for k, v in groups[0].items() if k not in ("params", "name")}
    merged["params"] = [p for g in groups for p in g["params"]]
    merged["name"] = "all" if len(groups) > 1 else groups[0].get("name", "all")
    return merged
