"""What a run shows: a JSON line per epoch, TensorBoard events, and PNG plots a person can read.

Files in the run folder: ``metrics.jsonl`` (one JSON object per epoch), ``tensorboard/`` (events),
``curves.png`` (loss, accuracy and learning rate) and ``confusion_matrix.png`` (test set).
"""

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch
from torch.utils.tensorboard import SummaryWriter

from service.repository.run_folder import RunFolder


class RunLog:
    """Epoch metrics to stdout (one JSON line each), ``metrics.jsonl`` and TensorBoard."""

    def __init__(self, folder: RunFolder, *, echo: bool = True) -> None:
        self.path = folder.metrics
        self.echo = echo
        self.writer = SummaryWriter(log_dir=str(folder.tensorboard))

    def epoch(self, metrics: dict[str, Any], *, step_losses: Sequence[float], step_rates: Sequence[float]) -> None:
        line = json.dumps(metrics, sort_keys=False)
        with self.path.open("a") as handle:
            handle.write(line + "\n")
        if self.echo:
            print(line, file=sys.stdout, flush=True)
        epoch = int(metrics["epoch"])
        for key, value in metrics.items():
            if key != "epoch" and isinstance(value, int | float):
                self.writer.add_scalar(f"epoch/{key}", value, epoch)
        first_step = int(metrics["step"]) - len(step_losses)
        for offset, (loss, rate) in enumerate(zip(step_losses, step_rates, strict=True)):
            self.writer.add_scalar("step/loss", loss, first_step + offset)
            self.writer.add_scalar("step/learning_rate", rate, first_step + offset)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = RunFolder(run_dir).metrics
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every point of a per-step TensorBoard scalar (``step/loss``, ``step/learning_rate``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = RunFolder(run_dir).tensorboard
    if not events.is_dir():
        return []
    accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})  # 0: keep every point
    accumulator.Reload()
    if tag not in accumulator.Tags().get("scalars", []):
        return []
    return [(event.step, event.value) for event in accumulator.Scalars(tag) if math.isfinite(event.value)]


def plot_curves(history: Sequence[dict[str, Any]], path: Path, *, title: str, run_dir: Path, augmented: bool) -> None:
    """Loss and accuracy per epoch, and the learning rate of every step, side by side."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(14, 4))
    loss_ax.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    train_label = "train (augmented batches)" if augmented else "train"
    acc_ax.plot(epochs, [row["train_accuracy"] for row in history], "o-", label=train_label)
    if any(row.get("val_loss") is not None for row in history):
        loss_ax.plot(epochs, [row.get("val_loss") for row in history], "s-", label="validation")
        acc_ax.plot(epochs, [row.get("val_accuracy") for row in history], "s-", label="validation")
    rates = step_scalars(run_dir, "step/learning_rate")
    steps_per_epoch = int(history[-1]["step"]) / int(history[-1]["epoch"]) if history else 1.0
    lr_ax.plot([(step + 1) / steps_per_epoch for step, _ in rates], [rate for _, rate in rates], color="tab:green")
    for axis, label in ((loss_ax, "loss"), (acc_ax, "accuracy"), (lr_ax, "learning rate (every step)")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    loss_ax.legend()
    acc_ax.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Counts (true class, predicted class)."""
    matrix = torch.zeros(classes, classes, dtype=torch.long)
    matrix.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    return matrix


def plot_confusion(matrix: torch.Tensor, class_names: Sequence[str], path: Path, *, title: str) -> None:
    """Row-normalized confusion matrix with counts in each cell."""
    counts = matrix.numpy()
    rows = counts.sum(axis=1, keepdims=True).clip(min=1)
    size = max(5.0, 0.6 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(counts / rows, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 20:
        for row in range(len(class_names)):
            for col in range(len(class_names)):
                share = counts[row, col] / rows[row, 0]
                axis.text(
                    col,
                    row,
                    str(counts[row, col]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share > 0.5 else "black",
                )
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
