"""FTRL-Proximal against a plain numpy transcription of the reference equations (McMahan et al. 2013)."""

import io

import numpy as np
import pytest
import torch

from training.errors import InvalidHyperparameter
from training.optim import Ftrl


def ftrl_reference(
    w0: np.ndarray,
    grads: list[np.ndarray],
    *,
    alpha: float,
    beta: float,
    l1: float,
    l2: float,
    lr_power: float,
    n0: float = 0.0,
) -> list[np.ndarray]:
    """The reference equations, coordinate by coordinate, with n^(−p) in place of √n."""
    w, z, n = w0.copy(), np.zeros_like(w0), np.full_like(w0, n0)
    history = []
    for g in grads:
        for i in range(w.size):
            n_new = n.flat[i] + g.flat[i] ** 2
            sigma = (n_new ** (-lr_power) - n.flat[i] ** (-lr_power)) / alpha
            z.flat[i] = z.flat[i] + g.flat[i] - sigma * w.flat[i]
            n.flat[i] = n_new
            if abs(z.flat[i]) <= l1:
                w.flat[i] = 0.0
            else:
                w.flat[i] = -(z.flat[i] - np.sign(z.flat[i]) * l1) / ((beta + n.flat[i] ** (-lr_power)) / alpha + l2)
        history.append(w.copy())
    return history


@pytest.mark.parametrize(
    ("lr_power", "l1", "l2", "n0"),
    [(-0.5, 0.0, 0.0, 0.0), (-0.5, 0.05, 0.3, 0.0), (-0.3, 0.02, 0.1, 0.1), (0.0, 0.01, 0.0, 0.0)],
)
def test_matches_reference_over_100_steps(lr_power: float, l1: float, l2: float, n0: float) -> None:
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(100)]
    kw = {"beta": 1.0, "l1": l1, "l2": l2, "lr_power": lr_power}
    expected = ftrl_reference(w0, grads, alpha=0.2, n0=n0, **kw)

    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Ftrl([w], lr=0.2, initial_accumulator_value=n0, keep_initial_weights=False, **kw)  # the paper's z = 0
    worst = 0.0
    for g, want in zip(grads, expected, strict=True):
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        got = w.detach().numpy()
        assert np.array_equal(got == 0.0, want == 0.0)  # the same exact zeros
        nonzero = want != 0.0
        if nonzero.any():
            worst = max(worst, float(np.max(np.abs(got[nonzero] - want[nonzero]) / np.abs(want[nonzero]))))
    assert worst <= 1e-6


@pytest.mark.parametrize(("lr_power", "l2", "n0"), [(-0.5, 0.0, 0.0), (-0.5, 0.3, 0.1), (-0.3, 0.1, 0.0)])
def test_kept_initial_weights_give_steps_from_the_initialization(lr_power: float, l2: float, n0: float) -> None:
    """Without λ1, z₀ = −d₀·w₀ makes every step w ← w − g/d, d = (β + n^(−p))/α + λ2, from w₀ itself."""
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) * 1e-3 for _ in range(50)]  # small, as a CNN's gradients are
    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Ftrl([w], lr=0.2, beta=1.0, l2=l2, lr_power=lr_power, initial_accumulator_value=n0)
    expected, n = w0.copy(), np.full_like(w0, n0)
    for g in grads:
        n = n + g**2
        expected = expected - g / ((1.0 + n ** (-lr_power)) / 0.2 + l2)
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-9, atol=1e-12)


def test_the_papers_start_wipes_an_initialization_and_ours_keeps_it() -> None:
    """A BatchNorm scale starts at 1: one small gradient step should leave it near 1, not near 0."""
    kept = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    paper = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    for w, keep in ((kept, True), (paper, False)):
        w.grad = torch.full((4,), 1e-3, dtype=torch.float64)
        Ftrl([w], lr=0.1, keep_initial_weights=keep).step()
    assert torch.allclose(kept, torch.full((4,), 1.0 - 1e-4, dtype=torch.float64), rtol=1e-3)
    assert float(paper.detach().max()) < 2e-3  # (|g|·w₀ − α·g)/(β + |g|): the scale is gone


@pytest.mark.parametrize("l1", [0.0, 0.05])
def test_a_rate_change_keeps_the_weights(l1: float) -> None:
    """A schedule writes a new α between steps; with a zero gradient the next step must not move w."""
    rng = np.random.default_rng(2)
    w = torch.nn.Parameter(torch.tensor(rng.normal(size=20), dtype=torch.float64))
    opt = Ftrl([w], lr=0.1, l1=l1)
    for _ in range(5):
        w.grad = torch.tensor(rng.normal(size=20), dtype=torch.float64)
        opt.step()
    before = w.detach().clone()
    for rate in (0.5, 0.01):
        opt.param_groups[0]["lr"] = rate
        w.grad = torch.zeros(20, dtype=torch.float64)
        opt.step()
        torch.testing.assert_close(w.detach(), before, rtol=1e-12, atol=1e-12)
    g = torch.tensor(rng.normal(size=20), dtype=torch.float64)
    w.grad = g
    opt.step()
    if l1 == 0.0:  # and the next step is taken at the new rate: w ← w − g/d with d = (β + √n)/0.01
        n = opt.state[w]["n"]
        torch.testing.assert_close(w.detach(), before - g / ((1.0 + n.sqrt()) / 0.01), rtol=1e-9, atol=1e-12)


def test_l1_gives_exact_zeros() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(1000, dtype=torch.float64))
    opt = Ftrl([w], lr=0.1, l1=1.0)
    for _ in range(20):
        w.grad = torch.randn(1000, dtype=torch.float64) * 0.5
        opt.step()
    zeros = int((w == 0.0).sum())
    assert 0 < zeros < 1000
    assert zeros == int((opt.state[w]["z"].abs() <= 1.0).sum())  # exactly the coordinates with |z| ≤ λ1

    plain = torch.nn.Parameter(torch.zeros(1000, dtype=torch.float64))
    opt_plain = Ftrl([plain], lr=0.1, l1=0.0)
    torch.manual_seed(0)
    for _ in range(20):
        plain.grad = torch.randn(1000, dtype=torch.float64) * 0.5
        opt_plain.step()
    assert int((plain == 0.0).sum()) < zeros  # without λ1 (almost) nothing is exactly 0


def test_parameters_without_gradient_are_untouched() -> None:
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.full((2,), 5.0))
    opt = Ftrl([a, b], lr=0.1)
    a.grad = torch.tensor([0.1, -0.2, 0.3])
    opt.step()
    assert torch.equal(b.detach(), torch.full((2,), 5.0))
    assert b not in opt.state
    assert not torch.equal(a.detach(), torch.ones(3))


def test_state_dict_round_trip() -> None:
    torch.manual_seed(1)
    grads = [torch.randn(4, 2) for _ in range(10)]
    w1 = torch.nn.Parameter(torch.randn(4, 2))
    opt1 = Ftrl([w1], lr=0.3, l1=0.01, l2=0.1)
    for g in grads[:5]:
        w1.grad = g.clone()
        opt1.step()

    buffer = io.BytesIO()
    torch.save(opt1.state_dict(), buffer)
    buffer.seek(0)
    w2 = torch.nn.Parameter(w1.detach().clone())
    opt2 = Ftrl([w2], lr=99.0)  # hyperparameters come back from the state dict
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    assert opt2.param_groups[0]["lr"] == 0.3 and opt2.param_groups[0]["l2"] == 0.1

    for g in grads[5:]:
        w1.grad, w2.grad = g.clone(), g.clone()
        opt1.step()
        opt2.step()
    assert torch.equal(w1, w2)


def test_closure_loss_is_returned() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    opt = Ftrl([w], lr=0.5)

    def closure() -> float:
        opt.zero_grad()
        loss = ((w - 1.0) ** 2).sum()
        loss.backward()
        return float(loss.detach())

    assert opt.step(closure) == 2.0


@pytest.mark.parametrize(
    ("name", "value"), [("lr", 0.0), ("beta", -1.0), ("l1", -0.1), ("l2", -0.1), ("lr_power", 0.5)]
)
def test_bad_hyperparameters(name: str, value: float) -> None:
    with pytest.raises(InvalidHyperparameter, match=f"ftrl: {name} must be"):
        Ftrl([torch.nn.Parameter(torch.zeros(1))], **{name: value})
