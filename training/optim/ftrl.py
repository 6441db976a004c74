"""FTRL-Proximal (McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD 2013).

torch.optim has no FTRL; this is a transcription of the paper's per-coordinate update (Algorithm 1), with
Keras' generalisation of the square root to a power. For every coordinate i, with gradient g_i, current
weight w_i and per-coordinate state z_i (linear term) and n_i (sum of squared gradients)::

    σ_i = (n_i_new^(−p) − n_i^(−p)) / α        with n_i_new = n_i + g_i²
    z_i ← z_i + g_i − σ_i · w_i                (old w_i)
    n_i ← n_i_new
    w_i = 0                                              if |z_i| ≤ λ1
    w_i = −(z_i − sign(z_i)·λ1) / ((β + n_i^(−p))/α + λ2)  otherwise

p = ``lr_power`` ≤ 0; p = −0.5 is the paper's rule, where n^(−p) = √n and the effective per-coordinate
learning rate is α / (β + √n_i). p = 0 gives a constant rate α / (β + 1).

Conventions (they differ between implementations; ours is the paper's):

* **l2 = λ2 as in the paper**, added once to the denominator. TensorFlow/Keras add ``2 · l2`` there, so
  their ``l2`` is half of ours: Keras ``l2_regularization_strength=0.005`` equals our ``l2=0.01``.
* **initial_accumulator_value = 0.0** (the paper: n starts at 0). Keras starts n at 0.1.
* α is the param group's ``lr``, so per-group learning rates and the learning-rate schedulers
  (which write ``group["lr"]``) apply to α. The closed form makes w proportional to α (through d), so
  when α changes between steps z is first rescaled so that the current weights stay where they are
  (``(z − sign(z)·λ1)·d_new/d_old``; coordinates with |z| ≤ λ1 stay 0): a schedule or the LR range test
  changes the step size from then on, as for every other optimizer, instead of rescaling the network.
  The paper keeps α constant, where this never applies.
* **No weight decay.** FTRL regularizes through λ1 (sparsity: exact zeros) and λ2; a ``weight_decay``
  group key, if present, is ignored here (the registry rejects weight_decay > 0 for ftrl).
* **keep_initial_weights = True** (ours; the paper starts from w = 0, where both agree). The weights are
  the closed-form solution of (z, n) after every step. With z starting at 0 the initial weights w₀ enter
  only through the first σ·w₀ term, and the first step gives w = (√n·w₀ − α·g)/(β + √n) ≈ |g|·w₀ for a
  small gradient (β = 1): a network's initialization (a BatchNorm scale of 1, He-initialized filters) is
  wiped to nearly zero in one step and the net stays at chance. So z starts at the value whose closed form
  is w₀ itself::

      z₀ = −(d₀·w₀ + λ1·sign(w₀)),   d₀ = (β + n₀^(−p))/α + λ2

  which centres the β/α proximal term on w₀ instead of on 0. Without λ1 every later step is then exactly
  w ← w − g / d with d = (β + n^(−p))/α + λ2 (per coordinate; for p = −0.5: Adagrad with rate
  α/(β + √n + αλ2)), starting from the initialization. ``keep_initial_weights=False`` is the paper's
  z₀ = 0 (tested step by step against its equations).
* Parameters whose ``.grad`` is None are skipped (no state, not touched). Sparse gradients are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from training.errors import InvalidHyperparameter


class Ftrl(Optimizer):
    """FTRL-Proximal; see the module docstring for the equations and conventions.

    Args:
        params: tensors or param-group dicts, as for any torch optimizer.
        lr: α, the learning-rate scale (> 0). Dimensionless rate per unit of accumulated gradient norm.
        beta: β ≥ 0, smooths the per-coordinate rate while n is small (the paper uses β = 1).
        l1: λ1 ≥ 0; coordinates with |z| ≤ λ1 become exactly 0.
        l2: λ2 ≥ 0, paper convention (twice Keras' ``l2_regularization_strength``).
        lr_power: p ≤ 0; −0.5 is the paper's square root.
        initial_accumulator_value: starting n ≥ 0 (0.0 paper, 0.1 Keras).
        keep_initial_weights: start z so that the closed form reproduces the weights the optimizer was given
            (True, ours) or at 0 as in the paper (False: the first step forgets a nonzero initialization).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        *,
        beta: float = 1.0,
        l1: float = 0.0,
        l2: float = 0.0,
        lr_power: float = -0.5,
        initial_accumulator_value: float = 0.0,
        keep_initial_weights: bool = True,
    ) -> None:
        checks = {
            "lr": (lr, lr > 0, "> 0"),
            "beta": (beta, beta >= 0, ">= 0"),
            "l1": (l1, l1 >= 0, ">= 0"),
            "l2": (l2, l2 >= 0, ">= 0"),
            "lr_power": (lr_power, lr_power <= 0, "<= 0"),
            "initial_accumulator_value": (initial_accumulator_value, initial_accumulator_value >= 0, ">= 0"),
        }
        for name, (value, ok, allowed) in checks.items():
            if not ok:
                raise InvalidHyperparameter(f"ftrl: {name} must be {allowed}, got {value!r}")
        defaults = {
            "lr": lr,
            "beta": beta,
            "l1": l1,
            "l2": l2,
            "lr_power": lr_power,
            "initial_accumulator_value": initial_accumulator_value,
            "keep_initial_weights": keep_initial_weights,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One FTRL update of every parameter that has a gradient. Returns the closure's loss, if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha: float = group["lr"]
            beta: float = group["beta"]
            l1: float = group["l1"]
            l2: float = group["l2"]
            power = -float(group["lr_power"])  # n^power replaces √n; power >= 0
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                if g.is_sparse:
                    raise RuntimeError("Ftrl does not support sparse gradients")
                state = self.state[w]
                if not state:
                    state["n"] = torch.full_like(
                        w, group["initial_accumulator_value"], memory_format=torch.preserve_format
                    )
                    state["z"] = torch.zeros_like(w, memory_format=torch.preserve_format)
                    if group.get("keep_initial_weights", False):
                        start = (beta + state["n"].pow(power)) / alpha + l2  # d₀ (0^0 = 1 as for n^0 below)
                        state["z"] = -(start * w + l1 * w.sign())
                    state["alpha"] = alpha
                z: torch.Tensor = state["z"]
                n: torch.Tensor = state["n"]
                n_new = n + g * g
                if power == 0.5:
                    root_old, root_new = n.sqrt(), n_new.sqrt()
                else:
                    root_old, root_new = n.pow(power), n_new.pow(power)
                if state["alpha"] != alpha:  # a schedule changed α: rescale z so the weights stay where they are
                    kept = (beta + root_old) / alpha + l2
                    was = (beta + root_old) / state["alpha"] + l2
                    rescaled = l1 * z.sign() + (z - l1 * z.sign()) * (kept / was)
                    z.copy_(torch.where(z.abs() <= l1, z, rescaled))
                    state["alpha"] = alpha
                sigma = (root_new - root_old) / alpha
                z.add_(g - sigma * w)
                n.copy_(n_new)
                denominator = (beta + root_new) / alpha + l2
                solved = (l1 * z.sign() - z) / denominator
                w.copy_(torch.where(z.abs() <= l1, torch.zeros_like(w), solved))
        return loss
