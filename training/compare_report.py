"""The comparison's table and figure (``imgcls compare``): one row and one colour per variant.

The figure has four panels side by side: training loss per step (x in epochs, so different batch sizes
line up), validation loss and validation accuracy per epoch, and a bar per variant with its test accuracy,
wall time and the learning rate it trained at with where that rate came from. Every axis is fitted to the
variants that learned: a variant still at chance would otherwise stretch the accuracy axis to 0.1 and
flatten the curves that matter; it is drawn (off the axis where it falls below) and labelled "at chance".
"""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from training.compare_result import VariantResult
from training.reporting import read_history, step_scalars

COLUMNS = (  # (field, heading, format of a number)
    ("variant", "variant", ""),
    ("optimizer", "optimizer", ""),
    ("lr_policy", "policy", ""),
    ("learning_rate", "learning rate", "g"),
    ("learning_rate_source", "rate from", ""),
    ("batch_size", "batch", "d"),
    ("test_accuracy", "test accuracy", ".4f"),
    ("ece", "ECE", ".4f"),
    ("best_val_accuracy", "best val accuracy", ".4f"),
    ("train_seconds", "training s", ".1f"),
    ("wall_seconds", "wall s", ".1f"),
    ("status", "status", ""),
)
AT_CHANCE_MARGIN = 0.05  # a final validation accuracy within this of 1/classes counts as "at chance"


def markdown_table(results: Sequence[VariantResult]) -> str:
    def cell(value: object, spec: str) -> str:
        return "—" if value is None else format(value, spec)

    header = "| " + " | ".join(heading for _, heading, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(cell(getattr(r, key), spec) for key, _, spec in COLUMNS) + " |" for r in results]
    return "\n".join([header, rule, *rows])


def rate_label(result: VariantResult) -> str:
    """``lr 0.3 (range test)``, or ``no rate`` for a variant that failed before training."""
    if result.learning_rate is None:
        return "no rate"
    return f"lr {result.learning_rate:.3g} ({result.learning_rate_source})"


def fitted_limits(
    values: Sequence[float], *, floor: float | None = None, ceiling: float | None = None
) -> tuple[float, float]:
    """(low, high) around ``values`` (not empty) with an 8 % margin, clipped to [floor, ceiling]."""
    low, high = float(min(values)), float(max(values))
    margin = 0.08 * max(high - low, 1e-3)
    low, high = low - margin, high + margin
    return (low if floor is None else max(floor, low), high if ceiling is None else min(ceiling, high))


def plot_comparison(results: Sequence[VariantResult], path: Path, *, title: str, classes: int) -> None:
    """Training loss per step, validation loss and accuracy per epoch, and the final accuracies as bars."""
    figure, (step_ax, val_loss_ax, val_acc_ax, bar_ax) = plt.subplots(
        1, 4, figsize=(22, 5.2), gridspec_kw={"width_ratios": [1.2, 1, 1, 1.1]}
    )
    chance = 1.0 / max(classes, 1)
    fit_loss: list[float] = []  # the points the axes are fitted to: variants that learned
    fit_val_loss: list[float] = []
    fit_accuracy: list[float] = []
    for index, result in enumerate(results):
        color = plt.get_cmap("tab20")(index % 20) if len(results) > 10 else f"C{index}"
        history = read_history(Path(result.run_dir))
        val_accuracy = [row.get("val_accuracy") for row in history]
        learned = bool(val_accuracy) and (val_accuracy[-1] or 0.0) > chance + AT_CHANCE_MARGIN
        label = f"{result.variant} ({rate_label(result)})" + ("" if learned or not history else ", at chance")
        if history:
            steps_per_epoch = int(history[0]["step"]) // int(history[0]["epoch"])
            losses = step_scalars(Path(result.run_dir), "step/loss")
            if losses:
                epochs = [(step + 1) / max(steps_per_epoch, 1) for step, _ in losses]
                values = [loss for _, loss in losses]
                smoothed = smooth(values)
                step_ax.plot(epochs, values, color=color, alpha=0.25, linewidth=0.8)
                step_ax.plot(epochs, smoothed, color=color, linewidth=1.8, label=label)
                if learned:
                    fit_loss += [*smoothed[len(smoothed) // 10 :], min(values)]
            marks = [row["epoch"] for row in history]
            if any(value is not None for value in val_accuracy):
                val_loss = [row.get("val_loss") for row in history]
                val_loss_ax.plot(marks, val_loss, "o-", color=color, label=label)
                val_acc_ax.plot(marks, val_accuracy, "o-", color=color, label=label)
                if learned:
                    fit_val_loss += [v for v in val_loss if v is not None]
                    fit_accuracy += [v for v in val_accuracy if v is not None]
        if result.status != "completed":
            step_ax.plot([], [], color=color, linestyle=":", label=f"{result.variant}: {result.status}")
    if fit_loss:
        step_ax.set_ylim(*fitted_limits(fit_loss, floor=0.0))
    if fit_val_loss:
        val_loss_ax.set_ylim(*fitted_limits(fit_val_loss, floor=0.0))
    if fit_accuracy:
        # the last epochs decide the comparison: fit to every point above the median's lower half
        top = sorted(fit_accuracy)[len(fit_accuracy) // 4 :]
        val_acc_ax.set_ylim(*fitted_limits(top, ceiling=1.0))
    plot_final_accuracy(bar_ax, results, chance=chance)
    step_ax.set_xlabel("epoch (per training step)")
    step_ax.set_ylabel("training loss (faint: per batch; solid: smoothed)")
    val_loss_ax.set_ylabel("validation loss")
    val_acc_ax.set_ylabel("validation accuracy (axis fitted to the learned runs)")
    for axis in (val_loss_ax, val_acc_ax):
        axis.set_xlabel("epoch")
    for axis in (step_ax, val_loss_ax, val_acc_ax):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_final_accuracy(axis: plt.Axes, results: Sequence[VariantResult], *, chance: float) -> None:
    """One horizontal bar per variant: test accuracy, with the wall time and the rate written beside it."""
    names = [r.variant for r in results]
    accuracies = [r.test_accuracy if r.test_accuracy is not None else 0.0 for r in results]
    colors = [plt.get_cmap("tab20")(i % 20) if len(results) > 10 else f"C{i}" for i in range(len(results))]
    positions = np.arange(len(results))[::-1]  # the first variant on top
    axis.barh(positions, accuracies, color=colors)
    axis.set_yticks(positions, names)
    learned = [a for a in accuracies if a > chance + AT_CHANCE_MARGIN]
    low, high = fitted_limits(learned or [chance, 1.0], ceiling=1.0)
    low = min(low, max(learned) - 0.02) if learned else low  # room even when all are equal
    axis.set_xlim(low, high + 0.6 * (high - low))  # room for the text to the right of the bars
    axis.set_xticks([tick for tick in axis.get_xticks() if low <= tick <= min(high, 1.0)])  # none in the text room
    for y, result, accuracy in zip(positions, results, accuracies, strict=True):
        if result.status != "completed" or result.test_accuracy is None:
            text = f"{result.status} · {rate_label(result)}"
        else:
            text = f"{accuracy:.4f} · {result.wall_seconds:.0f} s · {rate_label(result)}"
        axis.text(max(accuracy, low), y, " " + text, va="center", fontsize=7)
    axis.set_xlabel("test accuracy (axis cut; bars below it are near chance)")
    axis.set_title("final test accuracy · wall time · learning rate", fontsize=9)
    axis.grid(alpha=0.3, axis="x")


def smooth(values: Sequence[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average (the same rule as the LR range test, shorter memory)."""
    average, out = 0.0, []
    for count, value in enumerate(values, start=1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta**count))
    return out
