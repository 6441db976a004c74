"""The optimizer registry: every name trains, the update rules match the reference, bad input fails loudly."""

import itertools
import math

import pytest
import torch
from torch import nn

from training.errors import InvalidHyperparameter, UnknownOptimizer
from training.optim import (
    build_optimizer,
    needs_closure,
    optimizer_defaults,
    optimizer_help,
    optimizer_names,
    parameter_groups,
    resolve_optimizer_options,
)

ALL = [
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "adadelta",
    "rmsprop",
    "rprop",
    "adam",
    "adamw",
    "ftrl",
    "lbfgs",
]

# A rate per optimizer that makes 3 steps reduce the quadratic loss below.
RATES = {
    "sgd": 0.1,
    "momentum": 0.05,
    "nesterov": 0.05,
    "adagrad": 0.3,
    "adadelta": 1.0,
    "rmsprop": 0.01,
    "rprop": 0.1,
    "adam": 0.05,
    "adamw": 0.05,
    "ftrl": 0.5,
    "lbfgs": 0.5,
}
NO_WEIGHT_DECAY = {"rprop", "lbfgs", "ftrl"}


def test_registry_names() -> None:
    assert optimizer_names() == ALL
    for name in ALL:
        assert set(optimizer_help(name)) == set(optimizer_defaults(name))


def quadratic_problem() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """Least squares on a zero-initialized linear layer: a convex quadratic in its parameters."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=generator)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.7
    model = nn.Linear(3, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    return model, x, y


@pytest.mark.parametrize("name", ALL)
def test_every_optimizer_reduces_a_quadratic_loss(name: str) -> None:
    model, x, y = quadratic_problem()
    decay = 0.0 if name in NO_WEIGHT_DECAY else 1e-4
    groups = parameter_groups(model, weight_decay=decay)
    opt = build_optimizer(name, groups, learning_rate=RATES[name], weight_decay=decay, options={})
    assert needs_closure(opt) == (name == "lbfgs")

    def loss_fn() -> torch.Tensor:
        return nn.functional.mse_loss(model(x), y)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    losses = [float(loss_fn().detach())]
    for _ in range(3):
        if needs_closure(opt):
            opt.step(closure)  # type: ignore[arg-type]  # torch's stub says float; LBFGS takes a tensor
        else:
            closure()
            opt.step()
        losses.append(float(loss_fn().detach()))
    # strictly lower at the end, never higher on the way (lbfgs solves it in its first step)
    assert losses[-1] < losses[0] and all(b <= a for a, b in itertools.pairwise(losses)), losses


# ---------------------------------------------------------------------------------------------------------
# One or two steps against the reference equations, by hand
# ---------------------------------------------------------------------------------------------------------

W0 = [1.0, -2.0]
G1 = [0.5, -0.25]
G2 = [-1.0, 2.0]


def run_steps(name: str, grads: list[list[float]], *, lr: float, wd: float = 0.0, **options: object) -> list[float]:
    w = nn.Parameter(torch.tensor(W0, dtype=torch.float64))
    opt = build_optimizer(name, [w], learning_rate=lr, weight_decay=wd, options=options)
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return w.detach().tolist()


def test_sgd_with_weight_decay() -> None:
    # g ← g + λw; w ← w − lr·g
    lr, wd = 0.1, 0.01
    want = [w - lr * (g + wd * w) for w, g in zip(W0, G1, strict=True)]
    assert run_steps("sgd", [G1], lr=lr, wd=wd) == pytest.approx(want, rel=1e-12)


def test_momentum_two_steps() -> None:
    # b₁ = g₁; w₁ = w₀ − lr·b₁; b₂ = μb₁ + g₂; w₂ = w₁ − lr·b₂
    lr, mu = 0.1, 0.9
    want = []
    for w, g1, g2 in zip(W0, G1, G2, strict=True):
        b1 = g1
        w1 = w - lr * b1
        b2 = mu * b1 + g2
        want.append(w1 - lr * b2)
    assert run_steps("momentum", [G1, G2], lr=lr, momentum=mu) == pytest.approx(want, rel=1e-12)


def test_nesterov_two_steps() -> None:
    # b as momentum; w ← w − lr·(g + μb)
    lr, mu = 0.1, 0.8
    want = []
    for w, g1, g2 in zip(W0, G1, G2, strict=True):
        b1 = g1
        w1 = w - lr * (g1 + mu * b1)
        b2 = mu * b1 + g2
        want.append(w1 - lr * (g2 + mu * b2))
    assert run_steps("nesterov", [G1, G2], lr=lr, momentum=mu) == pytest.approx(want, rel=1e-12)


def test_momentum_default_is_0_9() -> None:
    assert optimizer_defaults("momentum") == {"momentum": 0.9}
    assert optimizer_defaults("nesterov") == {"momentum": 0.9}


def test_adagrad_one_step() -> None:
    # s = g²; w ← w − lr·g/(√s + ε)
    lr, eps = 0.5, 1e-10
    want = [w - lr * g / (math.sqrt(g * g) + eps) for w, g in zip(W0, G1, strict=True)]
    assert run_steps("adagrad", [G1], lr=lr) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_one_step(centered: bool) -> None:
    # v = αv + (1−α)g² (v₀ = 0); centered: m = (1−α)g, root of v − m²; w ← w − lr·g/(√· + ε)
    lr, alpha, eps = 0.01, 0.9, 1e-8
    want = []
    for w, g in zip(W0, G1, strict=True):
        v = (1 - alpha) * g * g
        m = (1 - alpha) * g
        denominator = math.sqrt(v - m * m if centered else v) + eps
        want.append(w - lr * g / denominator)
    got = run_steps("rmsprop", [G1], lr=lr, alpha=alpha, centered=centered)
    assert got == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Options and groups
# ---------------------------------------------------------------------------------------------------------


def test_resolve_fills_defaults_and_converts() -> None:
    assert resolve_optimizer_options("adam", {"betas": [0.8, 0.99]}) == {
        "betas": [0.8, 0.99],
        "eps": 1e-8,
        "amsgrad": False,
    }
    assert resolve_optimizer_options("lbfgs", {"max_iter": 5.0, "line_search": "none"})["line_search"] is None
    assert resolve_optimizer_options("lbfgs", {"max_iter": 5.0})["max_iter"] == 5
    resolve_optimizer_options("adam", {})["betas"].append(1.0)  # type: ignore[attr-defined]
    optimizer_defaults("adam")["betas"].append(1.0)  # type: ignore[attr-defined]
    assert optimizer_defaults("adam")["betas"] == [0.9, 0.999]  # callers get copies


def test_lr_multipliers_set_group_rates() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    groups = parameter_groups(model, weight_decay=0.01, lr_multipliers={"1": 1.0, "*": 0.1})
    opt = build_optimizer("sgd", groups, learning_rate=0.5, weight_decay=0.01, options={})
    rates = {g["name"]: g["lr"] for g in opt.param_groups}
    assert rates == pytest.approx({"decay x0.1": 0.05, "no_decay x0.1": 0.05, "decay x1": 0.5, "no_decay x1": 0.5})
    assert {g["name"]: g["weight_decay"] for g in opt.param_groups}["no_decay x1"] == 0.0


def test_lbfgs_merges_groups_with_one_rate() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    groups = parameter_groups(model, weight_decay=0.0)
    assert len(groups) == 2
    opt = build_optimizer("lbfgs", groups, learning_rate=1.0, weight_decay=0.0, options={})
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == 4


def test_lbfgs_refuses_different_group_rates() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    groups = parameter_groups(model, weight_decay=0.0, lr_multipliers={"0": 0.1})
    with pytest.raises(InvalidHyperparameter, match="lbfgs takes one learning rate"):
        build_optimizer("lbfgs", groups, learning_rate=1.0, weight_decay=0.0, options={})


@pytest.mark.parametrize("name", sorted(NO_WEIGHT_DECAY))
def test_weight_decay_refused_where_not_applied(name: str) -> None:
    with pytest.raises(InvalidHyperparameter, match=rf"{name} does not apply weight_decay.*got 0.01"):
        build_optimizer(name, [nn.Parameter(torch.zeros(2))], learning_rate=0.1, weight_decay=0.01, options={})


# ---------------------------------------------------------------------------------------------------------
# Bad input: the right error, naming the parameter
# ---------------------------------------------------------------------------------------------------------


def build(name: str, *, lr: float = 0.1, wd: float = 0.0, **options: object) -> None:
    build_optimizer(name, [nn.Parameter(torch.zeros(2))], learning_rate=lr, weight_decay=wd, options=options)


@pytest.mark.parametrize("lr", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_learning_rate(lr: float) -> None:
    with pytest.raises(InvalidHyperparameter, match=r"learning_rate must be .*> 0, got"):
        build("sgd", lr=lr)


def test_negative_weight_decay() -> None:
    with pytest.raises(InvalidHyperparameter, match=r"weight_decay must be >= 0, got -0.1"):
        build("sgd", wd=-0.1)


@pytest.mark.parametrize("momentum", [1.0, -0.1])
def test_momentum_out_of_range(momentum: float) -> None:
    with pytest.raises(InvalidHyperparameter, match=rf"momentum: momentum must be in \[0, 1\), got {momentum}"):
        build("momentum", momentum=momentum)


def test_nesterov_without_momentum() -> None:
    with pytest.raises(InvalidHyperparameter, match=r"nesterov: momentum must be in \(0, 1\), got 0.*Nesterov without"):
        build("nesterov", momentum=0.0)


def test_unknown_optimizer() -> None:
    with pytest.raises(UnknownOptimizer, match=r"adamx \(known: adadelta, adagrad, adam, adamw, ftrl"):
        build("adamx")


def test_unknown_option_lists_allowed() -> None:
    with pytest.raises(InvalidHyperparameter, match=r"adam: unknown option 'beta1' \(allowed: amsgrad, betas, eps\)"):
        build("adam", beta1=0.9)
    with pytest.raises(InvalidHyperparameter, match=r"unknown option 'lr' \(allowed: none\); the learning rate"):
        build_optimizer("sgd", [nn.Parameter(torch.zeros(2))], learning_rate=0.1, weight_decay=0.0, options={"lr": 0.1})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("adam", {"betas": [0.9, 1.0]}, r"adam: betas\[1\] \(beta2\) must be in \[0, 1\), got 1.0"),
        ("adam", {"betas": 0.9}, r"adam: betas must be a list of 2 numbers, got 0.9"),
        ("adam", {"eps": 0}, r"adam: eps must be > 0, got 0"),
        ("adam", {"amsgrad": "yes"}, r"adam: amsgrad must be true or false, got 'yes'"),
        ("rmsprop", {"momentum": "0.9"}, r"rmsprop: momentum must be a number in \[0, 1\), got '0.9'"),
        ("rprop", {"etas": [0.5, 1.0]}, r"rprop: etas\[1\] \(eta_plus\) must be > 1, got 1.0"),
        ("rprop", {"step_sizes": [1.0, 0.1]}, r"rprop: step_sizes\[0\] \(min\) must be <= step_sizes\[1\]"),
        ("lbfgs", {"history_size": 2.5}, r"lbfgs: history_size must be an integer >= 1, got 2.5"),
        (
            "lbfgs",
            {"line_search": "armijo"},
            r"lbfgs: line_search must be one of strong_wolfe, none, got 'armijo'",
        ),
        ("ftrl", {"lr_power": 0.5}, r"ftrl: lr_power must be <= 0, got 0.5"),
        ("adadelta", {"rho": 1.5}, r"adadelta: rho must be in \[0, 1\], got 1.5"),
    ],
)
def test_bad_options(name: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidHyperparameter, match=message):
        build_optimizer(name, [nn.Parameter(torch.zeros(2))], learning_rate=0.1, weight_decay=0.0, options=options)


def test_no_parameters() -> None:
    with pytest.raises(InvalidHyperparameter, match="no parameters"):
        build_optimizer("sgd", [], learning_rate=0.1, weight_decay=0.0, options={})
