"""Learning-rate policies against their formulas, warmup, OneCycleLR parity, scheduler state, errors."""

import io
import math

import pytest
import torch
from torch import nn

from training.errors import InvalidHyperparameter, UnknownPolicy
from training.optim import (
    LearningRatePolicy,
    build_scheduler,
    policy_defaults,
    policy_help,
    policy_names,
    resolve_policy_options,
)

ALL = ["fixed", "step", "multistep", "exp", "inv", "poly", "sigmoid", "cosine", "onecycle"]


def test_registry_names() -> None:
    assert policy_names() == ALL
    for name in ALL:
        assert policy_defaults(name)["warmup_start_ratio"] == 0.1
        assert set(policy_help(name)) == set(policy_defaults(name))
    assert policy_defaults("poly") == {"power": 1.0, "max_iter": None, "warmup_start_ratio": 0.1}


# (policy, options, {iteration: expected multiplier from the formula})
CASES = [
    ("fixed", {}, {0: 1.0, 500: 1.0, 10**6: 1.0}),
    (
        "step",
        {"gamma": 0.5, "step_size": 10},
        {0: 1.0, 5: 1.0, 9: 1.0, 10: 0.5, 11: 0.5, 25: 0.25, 100: 0.5**10},
    ),
    (
        "multistep",
        {"gamma": 0.1, "milestones": [30, 80]},
        {0: 1.0, 29: 1.0, 30: 0.1, 31: 0.1, 79: 0.1, 80: 0.1**2, 200: 0.1**2},
    ),
    ("exp", {"gamma": 0.99}, {0: 1.0, 1: 0.99, 50: 0.99**50, 100: 0.99**100}),
    ("inv", {"gamma": 1e-4, "power": 0.75}, {0: 1.0, 500: (1 + 0.05) ** -0.75, 10_000: 2.0**-0.75}),
    ("poly", {"power": 0.9, "max_iter": 100}, {0: 1.0, 50: 0.5**0.9, 99: 0.01**0.9, 100: 0.0, 150: 0.0}),
    (
        "sigmoid",
        {"gamma": -0.1, "step_size": 50},
        {
            0: 1 / (1 + math.exp(-5.0)),
            49: 1 / (1 + math.exp(-0.1)),
            50: 0.5,
            51: 1 / (1 + math.exp(0.1)),
            100: 1 / (1 + math.exp(5.0)),
        },
    ),
    (
        "cosine",
        {"max_iter": 100, "min_lr_ratio": 0.1},
        {0: 1.0, 50: 0.55, 25: 0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2, 100: 0.1, 120: 0.1},
    ),
]


@pytest.mark.parametrize(("name", "options", "expected"), CASES, ids=[c[0] for c in CASES])
def test_policy_matches_formula(name: str, options: dict[str, object], expected: dict[int, float]) -> None:
    policy = LearningRatePolicy(name, options)
    for iteration, want in expected.items():
        assert policy.multiplier(iteration) == pytest.approx(want, rel=1e-12, abs=1e-15), iteration


def test_sigmoid_with_positive_gamma_rises() -> None:
    policy = LearningRatePolicy("sigmoid", {"gamma": 0.2, "step_size": 10})
    assert policy.multiplier(0) < policy.multiplier(10) == 0.5 < policy.multiplier(20)
    assert policy.multiplier(10**6) == pytest.approx(1.0)
    assert LearningRatePolicy("sigmoid", {"gamma": -1.0, "step_size": 0}).multiplier(10**6) == 0.0  # no overflow


def test_max_iter_defaults_to_total_iters() -> None:
    assert resolve_policy_options("poly", {}, total_iters=1000)["max_iter"] == 1000
    assert resolve_policy_options("cosine", {"max_iter": 10}, total_iters=1000)["max_iter"] == 10  # given wins
    policy = LearningRatePolicy("poly", {"power": 2.0}, total_iters=10)
    assert policy.multiplier(5) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("name", "options"),
    [("step", {"gamma": 0.1, "step_size": 20}), ("cosine", {"max_iter": 100, "min_lr_ratio": 0.0})],
)
def test_warmup_in_front_of_a_policy(name: str, options: dict[str, object]) -> None:
    plain = LearningRatePolicy(name, options)
    warm = LearningRatePolicy(name, {**options, "warmup_start_ratio": 0.2}, warmup_iters=10)
    target = plain.multiplier(10)  # the policy's own value where warmup ends
    assert warm.multiplier(0) == pytest.approx(0.2)
    assert warm.multiplier(5) == pytest.approx(0.2 + (target - 0.2) * 0.5)
    assert warm.multiplier(9) == pytest.approx(0.2 + (target - 0.2) * 0.9)
    for iteration in (10, 11, 25, 60, 100):
        assert warm.multiplier(iteration) == plain.multiplier(iteration)


@pytest.mark.parametrize(
    ("total", "pct_start", "div", "final_div"),
    [(100, 0.3, 25.0, 1e4), (37, 0.25, 10.0, 100.0), (10, 0.5, 5.0, 2.0)],
)
def test_onecycle_matches_torch(total: int, pct_start: float, div: float, final_div: float) -> None:
    max_lr = 0.4
    reference_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=max_lr)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        reference_opt,
        max_lr=max_lr,
        total_steps=total,
        pct_start=pct_start,
        div_factor=div,
        final_div_factor=final_div,
        anneal_strategy="cos",
        cycle_momentum=False,
    )
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=max_lr)
    options = {"pct_start": pct_start, "div_factor": div, "final_div_factor": final_div}
    ours = build_scheduler(opt, "onecycle", options, total_iters=total)
    for _ in range(total):
        assert opt.param_groups[0]["lr"] == pytest.approx(reference_opt.param_groups[0]["lr"], rel=1e-12)
        reference_opt.step()
        reference.step()
        opt.step()
        ours.step()


def test_scheduler_scales_every_group_and_keeps_ratios() -> None:
    opt = torch.optim.SGD(
        [
            {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1},
            {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.01},
        ]
    )
    scheduler = build_scheduler(opt, "step", {"gamma": 0.5, "step_size": 2}, total_iters=None)
    for _ in range(4):
        opt.step()
        scheduler.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.025, 0.0025])


def test_scheduler_state_round_trip() -> None:
    def make() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        return opt, build_scheduler(opt, "cosine", {"min_lr_ratio": 0.01}, total_iters=50, warmup_iters=5)

    opt, scheduler = make()
    for _ in range(12):
        opt.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed_opt, resumed = make()
    resumed_opt.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["scheduler"])
    assert resumed.last_epoch == 12
    for _ in range(10):
        assert resumed_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        for o, s in ((opt, scheduler), (resumed_opt, resumed)):
            o.step()
            s.step()


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


def test_poly_needs_max_iter() -> None:
    with pytest.raises(InvalidHyperparameter, match="poly needs max_iter"):
        resolve_policy_options("poly", {}, total_iters=None)
    with pytest.raises(InvalidHyperparameter, match="cosine needs max_iter"):
        LearningRatePolicy("cosine", {})


def test_unknown_policy() -> None:
    with pytest.raises(UnknownPolicy, match=r"cosin \(known: cosine, exp, fixed, inv, multistep, onecycle"):
        resolve_policy_options("cosin", {}, total_iters=10)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("step", {"gamma": -0.1, "step_size": 10}, r"step: gamma must be in \(0, 1\], got -0.1"),
        ("step", {"gamma": 0.1}, r"step needs step_size"),
        ("step", {"gamma": 0.1, "step_size": 0}, r"step: step_size must be >= 1, got 0"),
        ("exp", {"gamma": 1.5}, r"exp: gamma must be in \(0, 1\], got 1.5"),
        ("exp", {}, r"exp needs gamma"),
        ("inv", {"power": -1.0}, r"inv: power must be > 0, got -1.0"),
        (
            "multistep",
            {"milestones": [30, 20]},
            r"multistep: milestones must be a non-empty, strictly increasing",
        ),
        ("multistep", {"milestones": []}, r"multistep: milestones must be"),
        ("multistep", {}, r"multistep needs milestones"),
        ("sigmoid", {"gamma": 0.0, "step_size": 5}, r"sigmoid: gamma must be non-zero"),
        (
            "cosine",
            {"max_iter": 10, "min_lr_ratio": 1.5},
            r"cosine: min_lr_ratio must be in \[0, 1\], got 1.5",
        ),
        ("onecycle", {"max_iter": 10, "pct_start": 0.05}, r"onecycle: pct_start × max_iter must be > 1"),
        ("onecycle", {"max_iter": 10, "div_factor": 0.5}, r"onecycle: div_factor must be >= 1, got 0.5"),
        ("fixed", {"gamma": 0.1}, r"fixed: unknown option 'gamma' \(allowed: warmup_start_ratio\)"),
        ("fixed", {"warmup_start_ratio": 2}, r"fixed: warmup_start_ratio must be in \[0, 1\], got 2"),
    ],
)
def test_bad_options(name: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidHyperparameter, match=message):
        resolve_policy_options(name, options, total_iters=None)


def test_bad_iteration_counts() -> None:
    with pytest.raises(InvalidHyperparameter, match="total_iters must be an integer >= 1, got 0"):
        resolve_policy_options("fixed", {}, total_iters=0)
    with pytest.raises(InvalidHyperparameter, match="warmup_iters must be an integer >= 0, got -5"):
        LearningRatePolicy("fixed", {}, warmup_iters=-5)
    with pytest.raises(InvalidHyperparameter, match=r"warmup_iters must be <= the run's total iterations \(10\)"):
        LearningRatePolicy("fixed", {}, total_iters=10, warmup_iters=11)
