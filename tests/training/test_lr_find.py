import copy
import math
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from training.config import TrainConfig
from training.data import load_dataset
from training.errors import InvalidHyperparameter, UnknownOptimizer
from training.lr_find import (
    RangeTestUnsupported,
    build_model_and_optimizer,
    endless_batches,
    find_learning_rate,
    plot_range_test,
    range_test,
    resolve_for_updates,
    suggest_rate,
    sweep_rates,
)
from training.settings import TrainingSettings
from training.train import split_dataset

# digits (8x8, loads in milliseconds) and the BatchNorm cnn, which learns within a 60-batch sweep
TINY = {"model": "cnn", "dataset": "digits", "batch_size": 32, "train_subset": 512, "threads": 2}


def assert_same(before: Any, after: Any, where: str = "state") -> None:
    """Equal structure; every tensor torch.equal (same dtype, shape and values)."""
    if isinstance(before, torch.Tensor):
        assert isinstance(after, torch.Tensor), where
        assert before.dtype == after.dtype and torch.equal(before, after), where
    elif isinstance(before, dict):
        assert isinstance(after, dict) and before.keys() == after.keys(), where
        for key in before:
            assert_same(before[key], after[key], f"{where}[{key!r}]")
    elif isinstance(before, list | tuple):
        assert type(before) is type(after) and len(before) == len(after), where
        for index, (a, b) in enumerate(zip(before, after, strict=True)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert before == after, where


def test_the_sweep_restores_the_model_and_optimizer_exactly(settings: TrainingSettings) -> None:
    config = TrainConfig(**TINY, optimizer="adam")
    data = load_dataset(config.dataset, fashion_mnist_dir=settings.fashion_mnist_dir, image_size=None, seed=0)
    train = split_dataset(data, config).train
    config = resolve_for_updates(config, train_images=len(train[1]))
    model, optimizer = build_model_and_optimizer(config, data, torch.device("cpu"))
    loss_fn = nn.CrossEntropyLoss()
    batches = endless_batches(config, data, train, torch.device("cpu"))
    for inputs, targets in islice(batches, 3):  # some Adam moments and BatchNorm statistics to protect
        optimizer.zero_grad()
        loss_fn(model(inputs), targets).backward()
        optimizer.step()
    model_before = copy.deepcopy(model.state_dict())
    optimizer_before = copy.deepcopy(optimizer.state_dict())
    assert optimizer_before["state"]  # Adam moments exist
    rng_before = torch.get_rng_state()
    model.eval()

    result = range_test(model, optimizer, batches, loss_fn=loss_fn, device=torch.device("cpu"), steps=20)

    assert len(result.rates) == 20 and result.stop_reason == "completed"
    assert_same(model_before, model.state_dict(), "model")
    assert_same(optimizer_before, optimizer.state_dict(), "optimizer")
    assert torch.equal(rng_before, torch.get_rng_state())
    assert not model.training  # back in the mode it was in
    assert all(p.grad is None for p in model.parameters())


def test_the_sweep_stops_early_when_the_loss_diverges() -> None:
    torch.manual_seed(0)
    model = nn.Linear(16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(256, 16), torch.randint(4, (256,))
    batches = ((inputs[i : i + 32], targets[i : i + 32]) for _ in range(100) for i in range(0, 256, 32))

    result = range_test(
        model,
        optimizer,
        batches,
        loss_fn=nn.CrossEntropyLoss(),
        device=torch.device("cpu"),
        start_rate=1e-3,
        end_rate=1e6,
        steps=100,
    )

    assert result.stop_reason in ("diverged", "non-finite loss")
    assert len(result.rates) < 100
    if result.stop_reason == "diverged":
        assert result.smoothed[-1] > 4 * min(result.smoothed)
    assert all(math.isfinite(loss) for loss in result.losses)


def test_find_learning_rate_suggests_a_rate_inside_the_sweep_and_plots_it(
    settings: TrainingSettings, tmp_path: Path
) -> None:
    result = find_learning_rate(TrainConfig(**TINY, optimizer="nesterov"), settings=settings, steps=60)

    assert result.rates[0] == pytest.approx(1e-7)
    assert result.rates == tuple(sorted(result.rates))
    assert result.suggested_rate is not None and result.min_loss_rate is not None
    assert result.rates[0] <= result.suggested_rate <= result.rates[-1] <= 10.0
    assert result.suggested_rate <= result.min_loss_rate  # on the way down to the lowest loss
    plot_range_test(result, tmp_path / "lr.png", title="test")
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_suggestion_is_the_steepest_descent_against_log_rate() -> None:
    rates = sweep_rates(1e-6, 1.0, 61)
    # a loss that falls fastest at 1e-3 (a logistic step in log10(rate)), then blows up after 0.1
    loss = [2.0 - 1.5 / (1 + math.exp(-3 * (math.log10(r) + 3))) + (20 * (r - 0.1) if r > 0.1 else 0.0) for r in rates]
    assert suggest_rate(rates, loss) == pytest.approx(1e-3, rel=0.1)
    assert suggest_rate(rates, [2.3] * 61) is None  # flat: nothing learned, no suggestion
    assert suggest_rate(rates, [2.3 + 0.001 * math.sin(i) for i in range(61)]) is None  # noise, < 2 % drop
    assert suggest_rate(rates[:4], loss[:4]) is None  # too few points


@pytest.mark.parametrize("name", ["lbfgs", "rprop"])
def test_optimizers_that_ignore_the_swept_rate_are_refused(name: str, tmp_path: Path) -> None:
    nowhere = TrainingSettings(fashion_mnist_dir=tmp_path / "missing", model_root=tmp_path, runs_dir=tmp_path)
    config = TrainConfig(model="lenet5", dataset="fashion-mnist", optimizer=name)
    with pytest.raises(RangeTestUnsupported, match=f"does not work with {name}"):
        find_learning_rate(config, settings=nowhere)  # before any data is read
    model = nn.Linear(2, 2)
    optimizer = torch.optim.LBFGS(model.parameters()) if name == "lbfgs" else torch.optim.Rprop(model.parameters())
    with pytest.raises(RangeTestUnsupported):
        range_test(model, optimizer, [], loss_fn=nn.CrossEntropyLoss(), device=torch.device("cpu"))


def test_bad_bounds_and_names_fail_before_any_data_is_read(tmp_path: Path) -> None:
    nowhere = TrainingSettings(fashion_mnist_dir=tmp_path / "missing", model_root=tmp_path, runs_dir=tmp_path)
    config = TrainConfig(model="lenet5", dataset="fashion-mnist", optimizer="adam")
    with pytest.raises(InvalidHyperparameter, match="0 < start rate < end rate"):
        find_learning_rate(config, settings=nowhere, start_rate=1.0, end_rate=0.1)
    with pytest.raises(UnknownOptimizer, match="adamax"):
        find_learning_rate(config.model_copy(update={"optimizer": "adamax"}), settings=nowhere)


class MeanSquaredError(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((output - target) ** 2).mean()


def test_on_linear_regression_the_suggestion_matches_the_known_curvature() -> None:
    """Least squares on x ~ N(0, σ²I): the loss mean((x·w − y)²) has Hessian 2σ²·I, one curvature λ for
    every direction. Gradient descent converges fastest at rate 1/λ and diverges above 2/λ. The range test
    must stop after 2/λ, find its lowest smoothed loss near there, and suggest a rate a little below 1/λ
    (steepest descent on the way down: the rule is conservative, never past the optimum)."""
    torch.manual_seed(0)
    features, sigma = 20, 0.5
    curvature = 2 * sigma**2
    w_true = torch.randn(features, 1)
    generator = torch.Generator().manual_seed(1)

    def batches() -> Any:
        while True:
            x = torch.randn(1024, features, generator=generator) * sigma
            yield x, x @ w_true + 0.1 * torch.randn(1024, 1, generator=generator)  # noise: a loss floor of 0.01

    model = nn.Linear(features, 1, bias=False)
    result = range_test(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        batches(),
        loss_fn=MeanSquaredError(),
        device=torch.device("cpu"),
        start_rate=1e-5 / curvature,
        end_rate=1e3 / curvature,
        steps=100,
    )

    assert result.stop_reason == "diverged" and result.rates[-1] > 2 / curvature
    assert result.smoothed[0] == result.losses[0]  # debiased: no start from zero (fastai's avg / (1 − β^t))
    assert result.suggested_rate is not None and result.min_loss_rate is not None
    assert 0.1 / curvature <= result.suggested_rate <= 1 / curvature
    assert 1 / curvature <= result.min_loss_rate <= 10 / curvature  # the smoothed minimum lags 2/λ a little
