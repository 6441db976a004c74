"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's ``lr_find``).

Train for up to ``steps`` mini-batches while the rate grows exponentially from ``start_rate`` to
``end_rate``, then put the model and optimizer back exactly as they were::

    rate(i) = start_rate · (end_rate / start_rate)^(i / (steps − 1)),   i = 0 … steps − 1

Each param group gets ``rate(i) × its lr_multiplier``, so per-group ratios hold as in training. The loss
of every batch (measured before that batch's update) goes into a bias-corrected exponential moving
average, β = 0.98::

    avg ← β·avg + (1 − β)·loss;   smoothed(i) = avg / (1 − β^(i+1))

The sweep stops early when the smoothed loss exceeds ``divergence_factor`` (4) times the lowest smoothed
loss so far, or when a batch loss is NaN or infinite.

**Suggested rate**: the rate where the smoothed loss falls fastest against log10(rate), i.e. the most
negative value of ``numpy.gradient(smoothed, log10(rate))`` over a window that

* leaves out the first 10 % and the last 5 % of the points (at least one each), where the average is
  still warming up and where the loss blows up, and
* ends at the lowest smoothed loss (the descent towards it, not noise after it).

There is no suggestion when the window holds fewer than 3 points, or when the smoothed loss falls by
less than 2 % (``MIN_DROP``) from the window's start to its minimum: the model did not learn within the
sweep (more ``steps``, or another optimizer or model), and any "steepest" point would be noise. The
rate at the lowest smoothed loss is reported too; a tenth of it is the other common rule of thumb.

lbfgs and rprop are refused: neither takes the learning rate as its step size on every batch.
"""

import copy
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from training.assemble import build_model_and_optimizer
from training.config import TrainConfig
from training.data import DatasetBundle, load_dataset
from training.distributed import pick_device
from training.engine import update_parameters
from training.errors import InvalidHyperparameter, TrainingError
from training.optim import needs_closure, resolve_optimizer_options
from training.settings import TrainingSettings
from training.train import epoch_batches, resolve_config, split_dataset

START_RATE = 1e-7
END_RATE = 10.0
STEPS = 100
BETA = 0.98  # smoothing of the loss average
DIVERGENCE_FACTOR = 4.0  # stop when the smoothed loss exceeds this times its best
MIN_DROP = 0.02  # no suggestion unless the smoothed loss falls by this fraction (see the module docstring)

# Optimizers the range test refuses, and why (the message the user sees).
UNSUPPORTED = {
    "lbfgs": (
        "L-BFGS picks its own step length by a line search over several loss evaluations per step and builds "
        "its curvature estimate from consecutive steps, so a per-batch rate sweep measures neither; train it "
        "with learning_rate 1.0 and a large batch (e.g. --batch-size 1024)"
    ),
    "rprop": (
        "Rprop reads the learning rate once, as every weight's initial step size, and then adapts the steps "
        "from gradient signs alone, so raising the rate batch by batch changes nothing after the first step; "
        "its rate barely matters: keep the default or try 1e-3 to 1e-2"
    ),
}

StopReason = Literal["completed", "diverged", "non-finite loss", "out of batches"]


class RangeTestUnsupported(InvalidHyperparameter):
    """The optimizer does not use the learning rate as the range test assumes (lbfgs, rprop)."""


class NoSuggestion(TrainingError):
    """The sweep gave too few points, or a loss that never fell, to suggest a rate."""


@dataclass(frozen=True)
class RangeTest:
    rates: tuple[float, ...]  # base rate (multiplier 1) used for each batch
    losses: tuple[float, ...]  # raw batch loss, before that batch's update
    smoothed: tuple[float, ...]  # bias-corrected moving average of ``losses``
    stop_reason: StopReason
    suggested_rate: float | None  # steepest descent of the smoothed loss (see the module docstring)
    min_loss_rate: float | None  # rate at the lowest smoothed loss

    @property
    def suggestion_index(self) -> int | None:
        return None if self.suggested_rate is None else self.rates.index(self.suggested_rate)


# ---------------------------------------------------------------------------------------------------------
# The sweep on a given model and optimizer
# ---------------------------------------------------------------------------------------------------------


def check_supported(optimizer_name: str) -> None:
    """Raise RangeTestUnsupported for an optimizer the range test cannot measure."""
    if optimizer_name in UNSUPPORTED:
        raise RangeTestUnsupported(
            f"the LR range test does not work with {optimizer_name}: {UNSUPPORTED[optimizer_name]}"
        )


def sweep_rates(start_rate: float, end_rate: float, steps: int) -> list[float]:
    """The exponentially growing rates, ``start_rate`` first and ``end_rate`` last."""
    if not (math.isfinite(start_rate) and math.isfinite(end_rate) and 0 < start_rate < end_rate):
        raise InvalidHyperparameter(
            f"the range test needs 0 < start rate < end rate, got start {start_rate!r} and end {end_rate!r}"
        )
    if steps < 2:
        raise InvalidHyperparameter(f"the range test needs at least 2 steps, got {steps}")
    ratio = end_rate / start_rate
    return [start_rate * ratio ** (i / (steps - 1)) for i in range(steps)]


def range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    loss_fn: nn.Module,
    device: torch.device,
    amp: bool = False,
    grad_clip: float | None = None,
    start_rate: float = START_RATE,
    end_rate: float = END_RATE,
    steps: int = STEPS,
    beta: float = BETA,
    divergence_factor: float = DIVERGENCE_FACTOR,
) -> RangeTest:
    """Sweep the rate over at most ``steps`` batches and restore everything it touched.

    Afterwards the model's and the optimizer's state_dicts are exactly what they were (deep copies are
    loaded back, also when the sweep raises), gradients are cleared, the torch RNG state is restored,
    and the model is back in its previous train/eval mode. ``batches`` may end early ("out of batches").
    """
    if needs_closure(optimizer):
        check_supported("lbfgs")
    if isinstance(optimizer, torch.optim.Rprop):
        check_supported("rprop")
    rates = sweep_rates(start_rate, end_rate, steps)
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = torch.get_rng_state()
    saved_cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    was_training = model.training

    used: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    stop_reason: StopReason = "completed"
    average, best = 0.0, math.inf
    model.train()
    try:
        batch_iter = iter(batches)
        for step, rate in enumerate(rates):
            batch = next(batch_iter, None)
            if batch is None:
                stop_reason = "out of batches"
                break
            for group in optimizer.param_groups:
                group["lr"] = rate * group.get("lr_multiplier", 1.0)
            _, loss_tensor = update_parameters(
                model,
                *batch,
                optimizer,
                loss_fn=loss_fn,
                device=device,
                amp=amp,
                grad_clip=grad_clip,
                use_closure=False,
            )
            loss = float(loss_tensor)
            if not math.isfinite(loss):
                stop_reason = "non-finite loss"
                break
            average = beta * average + (1.0 - beta) * loss
            value = average / (1.0 - beta ** (step + 1))
            used.append(rate)
            losses.append(loss)
            smoothed.append(value)
            best = min(best, value)
            if value > divergence_factor * best:
                stop_reason = "diverged"
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        optimizer.zero_grad(set_to_none=True)
        torch.set_rng_state(saved_rng)
        if saved_cuda_rng is not None:
            torch.cuda.set_rng_state_all(saved_cuda_rng)
        model.train(was_training)

    return RangeTest(
        rates=tuple(used),
        losses=tuple(losses),
        smoothed=tuple(smoothed),
        stop_reason=stop_reason,
        suggested_rate=suggest_rate(used, smoothed),
        min_loss_rate=used[int(np.argmin(smoothed))] if smoothed else None,
    )


def suggest_rate(rates: list[float], smoothed: list[float]) -> float | None:
    """The rate of steepest descent of ``smoothed`` against log10(rate), or None (see the module docstring)."""
    count = len(rates)
    if count == 0:
        return None
    start = max(1, count // 10)
    end = min(count - max(1, count // 20), int(np.argmin(smoothed)) + 1)  # exclusive
    if end - start < 3:
        return None
    window = np.asarray(smoothed[start:end])
    if window.min() > (1.0 - MIN_DROP) * window[0]:
        return None
    slopes = np.gradient(window, np.log10(np.asarray(rates[start:end])))
    steepest = int(np.argmin(slopes))
    return rates[start + steepest] if slopes[steepest] < 0 else None


# ---------------------------------------------------------------------------------------------------------
# The sweep from a training config
# ---------------------------------------------------------------------------------------------------------


def find_learning_rate(
    config: TrainConfig,
    *,
    settings: TrainingSettings,
    start_rate: float = START_RATE,
    end_rate: float = END_RATE,
    steps: int = STEPS,
) -> RangeTest:
    """The range test on the model, data, optimizer and options ``imgcls train`` would use for ``config``.

    The config's learning rate, policy, warmup and epochs do not apply: the sweep sets the rate itself and
    runs as many epochs of shuffled, augmented batches as ``steps`` needs.
    """
    check_supported(config.optimizer)
    sweep_rates(start_rate, end_rate, steps)  # fail on bad bounds before loading data
    config, data, train, device = set_up_for_updates(config, settings=settings)
    model, optimizer = build_model_and_optimizer(config, data, device)
    return range_test(
        model,
        optimizer,
        endless_batches(config, data, train, device),
        loss_fn=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        device=device,
        amp=device.type == "cuda",
        grad_clip=config.grad_clip,
        start_rate=start_rate,
        end_rate=end_rate,
        steps=steps,
    )


def set_up_for_updates(
    config: TrainConfig, *, settings: TrainingSettings
) -> tuple[TrainConfig, DatasetBundle, tuple[torch.Tensor, torch.Tensor], torch.device]:
    """What the tools that time or sweep parameter updates share: the config checked and resolved (see
    ``resolve_for_updates``), torch's threads set, the device, the dataset and its training split."""
    resolve_optimizer_options(config.optimizer, config.optimizer_options)  # unknown names and bad values
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    data = load_dataset(
        config.dataset, fashion_mnist_dir=settings.fashion_mnist_dir, image_size=config.image_size, seed=config.seed
    )
    train = split_dataset(data, config).train
    return resolve_for_updates(config, train_images=len(train[1])), data, train, device


def resolve_for_updates(config: TrainConfig, *, train_images: int) -> TrainConfig:
    """Weight decay and optimizer options resolved as ``imgcls train`` resolves them.

    The learning-rate policy is replaced by ``fixed``: tools that set the rate themselves (the range test,
    the batch-size sweep) neither use nor check it.
    """
    fixed = config.model_copy(update={"lr_policy": "fixed", "lr_policy_options": {}})
    return resolve_config(fixed, train_images=train_images, world_size=1)


def endless_batches(
    config: TrainConfig,
    data: DatasetBundle,
    train: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches epoch after epoch, each epoch shuffled and augmented as ``imgcls train`` does."""
    for epoch in itertools.count():
        empty = True
        for batch in epoch_batches(config, data, train, epoch, device=device):
            empty = False
            yield batch
        if empty:
            return


# ---------------------------------------------------------------------------------------------------------
# The plot
# ---------------------------------------------------------------------------------------------------------


def plot_range_test(result: RangeTest, path: Path, *, title: str) -> None:
    """Smoothed loss (raw batch losses faint) against the rate on a log axis, the suggestion marked."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(result.rates, result.losses, color="tab:blue", alpha=0.25, linewidth=1, label="batch loss")
    axis.plot(result.rates, result.smoothed, color="tab:blue", linewidth=2, label=f"smoothed (β = {BETA})")
    if result.suggested_rate is not None:
        index = result.suggestion_index
        assert index is not None
        axis.axvline(result.suggested_rate, color="tab:red", linestyle="--", linewidth=1)
        axis.plot(
            [result.suggested_rate],
            [result.smoothed[index]],
            "o",
            color="tab:red",
            label=f"suggested {result.suggested_rate:.2e} (steepest descent)",
        )
    if result.smoothed:
        low = min(min(result.losses), min(result.smoothed))
        high = min(max(result.smoothed), 1.5 * result.smoothed[0])
        margin = 0.05 * max(high - low, 1e-6)
        axis.set_ylim(low - margin, high + margin)  # the blow-up at the end is cut off: it is not the story
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    axis.grid(alpha=0.3)
    axis.grid(alpha=0.1, which="minor")
    axis.legend()
    axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
