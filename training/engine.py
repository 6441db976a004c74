"""The training step and the evaluation loop: small functions with explicit arguments.

``train_one_epoch`` knows nothing about data sets, files or configs: it takes batches, a model, an
optimizer and a per-iteration scheduler, and returns what happened. L-BFGS and other optimizers
that re-evaluate the loss get a closure; the others one backward pass per batch.
"""

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from training.ema import WeightAverage
from training.errors import TrainingError
from training.optim import needs_closure


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite: the learning rate is too high for this optimizer."""


@dataclass(frozen=True)
class EpochResult:
    loss: float  # mean training loss over the epoch's images
    accuracy: float  # training accuracy on the augmented batches
    images: int
    seconds: float
    learning_rate: float  # rate of the first parameter group after the epoch's last step
    stopped_early: bool  # should_stop() asked to stop in the middle of the epoch
    step_losses: tuple[float, ...]  # the loss of every batch, in order
    step_rates: tuple[float, ...]  # the first group's learning rate used for every batch

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    logits: torch.Tensor  # float32 (N, classes), on the CPU
    labels: torch.Tensor  # int64 (N,)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA when enabled; a no-op otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    loss_fn: nn.Module,
    device: torch.device,
    amp: bool,
    grad_clip: float | None,
    total_batches: int | None = None,
    description: str = "train",
    progress: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    average: WeightAverage | None = None,
) -> EpochResult:
    """One pass over ``batches``: a parameter update per batch, then ``scheduler.step()`` and, with
    ``average`` (``--ema``), one step of the weights' moving average."""
    model.train()
    use_closure = needs_closure(optimizer)
    loss_sum = correct = images = 0.0
    started = time.perf_counter()
    bar = tqdm(batches, total=total_batches, desc=description, unit="batch", leave=False, disable=not progress)
    stopped = False
    step_losses: list[float] = []
    step_rates: list[float] = []
    for step, (inputs, targets) in enumerate(bar):
        step_rates.append(float(optimizer.param_groups[0]["lr"]))
        logits, loss = update_parameters(
            model,
            inputs,
            targets,
            optimizer,
            loss_fn=loss_fn,
            device=device,
            amp=amp,
            grad_clip=grad_clip,
            use_closure=use_closure,
        )
        scheduler.step()
        if average is not None:
            average.update()
        batch_loss = float(loss)
        if not math.isfinite(batch_loss):
            raise TrainingDiverged(
                f"the training loss became {batch_loss} at batch {step + 1}: lower the learning rate "
                f"(now {optimizer.param_groups[0]['lr']:.3g}) or clip gradients (--grad-clip)"
            )
        step_losses.append(batch_loss)
        count = targets.numel()
        loss_sum += batch_loss * count
        correct += float((logits.argmax(dim=1) == targets).sum())
        images += count
        if step % 10 == 0:
            seconds = time.perf_counter() - started
            bar.set_postfix(
                loss=f"{loss_sum / images:.4f}",
                acc=f"{correct / images:.4f}",
                img_s=f"{images / max(seconds, 1e-9):.0f}",
            )
        if should_stop():
            stopped = True
            break
    bar.close()
    return EpochResult(
        loss=loss_sum / max(images, 1),
        accuracy=correct / max(images, 1),
        images=int(images),
        seconds=time.perf_counter() - started,
        learning_rate=float(optimizer.param_groups[0]["lr"]),
        stopped_early=stopped,
        step_losses=tuple(step_losses),
        step_rates=tuple(step_rates),
    )


def update_parameters(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: nn.Module,
    device: torch.device,
    amp: bool,
    grad_clip: float | None,
    use_closure: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on one batch; returns the (detached) logits and loss of the first evaluation.

    Optimizers that re-evaluate the loss (L-BFGS) get the closure and may call it several times.
    """
    first: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            logits = model(inputs)
            loss = loss_fn(logits.float(), targets)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if not first:
            first.extend((logits.detach(), loss.detach()))
        return loss

    if use_closure:
        optimizer.step(closure)  # type: ignore[arg-type]
    else:
        closure()
        optimizer.step()
    return first[0], first[1]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    loss_fn: nn.Module,
    device: torch.device,
    amp: bool,
) -> Evaluation:
    """Logits for every image (in eval mode), with the mean loss and the top-1 accuracy."""
    was_training = model.training
    model.eval()
    all_logits: list[torch.Tensor] = []
    all_labels: list[torch.Tensor] = []
    try:
        for inputs, targets in batches:
            with autocast(device, amp):
                logits = model(inputs)
            all_logits.append(logits.float().cpu())
            all_labels.append(targets.cpu())
    finally:
        model.train(was_training)
    if not all_logits:
        return Evaluation(math.nan, math.nan, torch.empty(0, 0), torch.empty(0, dtype=torch.long))
    logits = torch.cat(all_logits)
    labels = torch.cat(all_labels)
    loss = float(loss_fn(logits, labels))
    accuracy = float((logits.argmax(dim=1) == labels).float().mean())
    return Evaluation(loss=loss, accuracy=accuracy, logits=logits, labels=labels)
