"""Train the same model, data, budget and seed under several optimizers or learning-rate policies.

Each variant is a full ``training.train.run`` (never published) into ``<output_dir>/<variant>/``, so every
variant keeps its config, checkpoints, metrics, plots and ONNX file. Then, in ``output_dir``::

    comparison.png    training loss per step (x in epochs, so different batch sizes line up), validation
                      loss and validation accuracy per epoch; one colour per variant
    comparison.md     the table below, in markdown
    comparison.json   the same rows as JSON

Table columns: variant, optimizer, policy, learning rate, batch size, test accuracy, ECE (after
temperature scaling), best validation accuracy, training seconds (the epochs alone) and wall seconds (the
whole run: data, training, calibration, export), and status.

Per-variant choices, each overridable:

* **learning rate** (``learning_rates[variant]``): comparing optimizers, each gets its usual default from
  ``DEFAULT_LEARNING_RATES`` (they differ by orders of magnitude, so one shared rate would favour one of
  them); comparing policies, the config's rate.
* **batch size** (``batch_sizes[variant]``): the config's, except lbfgs, which gets ``LBFGS_BATCH_SIZE``
  (1024): L-BFGS builds its curvature estimate from consecutive steps and needs low-noise gradients.
* **options of the varied optimizer or policy** (``variant_options[variant]``), e.g.
  ``{"momentum": {"momentum": 0.95}}``; the config's own ``optimizer_options`` (comparing policies) or
  ``lr_policy_options`` (comparing optimizers) apply to every variant.
* **policy** (comparing optimizers): the config's, for every optimizer (FTRL included: it rescales its
  state when the rate changes, see training/optim/ftrl.py).
* **weight decay**: the config's; when it is unset each run resolves its own default (5e-4, or 0 for
  rprop, lbfgs and ftrl, which refuse weight decay).

Every variant is checked before the first one trains: names, options, weight decay, the policy against the
variant's iteration count (an unknown optimizer raises UnknownOptimizer with nothing trained). A variant
whose loss becomes NaN is recorded as "diverged" and the others still run.
"""

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch

from training.assemble import build_model_and_optimizer
from training.batches import batches_per_epoch
from training.config import ConfigError, TrainConfig, build_config
from training.data import load_dataset
from training.engine import TrainingDiverged
from training.errors import InvalidHyperparameter, OutputExists, UnknownOptimizer, UnknownPolicy
from training.optim import build_scheduler, optimizer_names, policy_names
from training.reporting import read_history, step_scalars
from training.settings import TrainingSettings
from training.train import resolve_config, run, split_dataset

# The rate each optimizer gets when none is given: its usual starting point for batch ~256.
DEFAULT_LEARNING_RATES: dict[str, float] = {
    "sgd": 0.1,
    "momentum": 0.1,
    "nesterov": 0.1,
    "adagrad": 0.01,
    "adadelta": 1.0,  # the paper's rule: Δ alone sets the step
    "rmsprop": 1e-3,
    "rprop": 1e-3,  # the initial per-weight step size
    "adam": 1e-3,
    "adamw": 1e-3,
    "ftrl": 0.3,  # range test: steepest descent 0.115, lowest loss 0.351 (docs/training.md)
    "lbfgs": 1.0,  # the line search scales the step
}
LBFGS_BATCH_SIZE = 1024

Varying = Literal["optimizer", "lr_policy"]


@dataclass(frozen=True)
class Variant:
    name: str  # the optimizer or policy name; also the run folder's name
    config: TrainConfig


@dataclass(frozen=True)
class VariantResult:
    variant: str
    optimizer: str
    lr_policy: str
    learning_rate: float
    batch_size: int
    status: Literal["completed", "diverged"]
    test_accuracy: float | None
    ece: float | None  # after temperature scaling, on the test set
    best_val_accuracy: float | None
    train_seconds: float  # the epochs' training time, from metrics.jsonl
    wall_seconds: float  # the whole run
    run_dir: str
    message: str | None = None  # why it diverged


@dataclass(frozen=True)
class Comparison:
    output_dir: Path
    varying: Varying
    results: tuple[VariantResult, ...]
    figure: Path
    table_markdown: Path
    table_json: Path


# ---------------------------------------------------------------------------------------------------------
# Planning and checking the variants
# ---------------------------------------------------------------------------------------------------------


def plan_variants(
    base: TrainConfig,
    *,
    optimizers: Sequence[str] = (),
    policies: Sequence[str] = (),
    learning_rates: Mapping[str, float] | None = None,
    batch_sizes: Mapping[str, int] | None = None,
    variant_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[Varying, list[Variant]]:
    """One config per variant (publish off), from exactly one of ``optimizers`` or ``policies``.

    Raises UnknownOptimizer / UnknownPolicy, ConfigError (both or neither list, a repeated name, an override
    for a name that is not a variant, a value the config refuses).
    """
    if bool(optimizers) == bool(policies):
        raise ConfigError("compare either optimizers or learning-rate policies: give exactly one of the two lists")
    varying: Varying = "optimizer" if optimizers else "lr_policy"
    names = list(optimizers or policies)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"each variant once, please: {', '.join(repeated)} repeated")
    known = optimizer_names() if varying == "optimizer" else policy_names()
    for name in names:
        if name not in known:
            raise (UnknownOptimizer if varying == "optimizer" else UnknownPolicy)(name, known)
    own_options = base.optimizer_options if varying == "optimizer" else base.lr_policy_options
    if own_options:
        flag = "--optimizer-option" if varying == "optimizer" else "--lr-policy-option"
        raise ConfigError(
            f"comparing {'optimizers' if varying == 'optimizer' else 'policies'}, options belong to one variant "
            f"each: give them per variant ({flag} NAME.KEY=VALUE), not as {varying}_options {own_options}"
        )
    learning_rates, batch_sizes, variant_options = learning_rates or {}, batch_sizes or {}, variant_options or {}
    for what, mapping in (("learning rate", learning_rates), ("batch size", batch_sizes), ("options", variant_options)):
        strays = sorted(set(mapping) - set(names))
        if strays:
            raise ConfigError(
                f"{what} given for {', '.join(strays)}, which is not a variant (variants: {', '.join(names)})"
            )

    variants = []
    for name in names:
        optimizer = name if varying == "optimizer" else base.optimizer
        default_rate = (
            DEFAULT_LEARNING_RATES.get(name, base.learning_rate) if varying == "optimizer" else base.learning_rate
        )
        default_batch = LBFGS_BATCH_SIZE if optimizer == "lbfgs" else base.batch_size
        update: dict[str, Any] = {
            varying: name,
            "learning_rate": learning_rates.get(name, default_rate),
            "batch_size": batch_sizes.get(name, default_batch),
            "publish": False,
            f"{varying}_options": dict(variant_options.get(name, {})),
        }
        try:
            config = build_config(base.to_dict(), update)
        except ConfigError as error:
            raise ConfigError(f"variant {name}: {error}") from error
        variants.append(Variant(name, config))
    return varying, variants


def check_variants(variants: Sequence[Variant], *, settings: TrainingSettings) -> None:
    """Build every variant's optimizer and policy on a throwaway model, as its run will: every name and value
    a run would refuse fails here, before anything trains. Loads the dataset once (for sizes and classes)."""
    first = variants[0].config
    data = load_dataset(
        first.dataset, fashion_mnist_dir=settings.fashion_mnist_dir, image_size=first.image_size, seed=first.seed
    )
    train_images = len(split_dataset(data, first).train[1])
    for variant in variants:
        try:
            config = resolve_config(variant.config, train_images=train_images, world_size=1)
            _, optimizer = build_model_and_optimizer(config, data, torch.device("cpu"))
            build_scheduler(
                optimizer,
                config.lr_policy,
                config.lr_policy_options,
                total_iters=batches_per_epoch(train_images, config.batch_size) * config.epochs,
                warmup_iters=config.warmup_iters,
            )
        except InvalidHyperparameter as error:
            raise InvalidHyperparameter(f"variant {variant.name}: {error}") from error


# ---------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------


def compare(
    base: TrainConfig,
    *,
    settings: TrainingSettings,
    output_dir: Path,
    optimizers: Sequence[str] = (),
    policies: Sequence[str] = (),
    learning_rates: Mapping[str, float] | None = None,
    batch_sizes: Mapping[str, int] | None = None,
    variant_options: Mapping[str, Mapping[str, Any]] | None = None,
    announce: Callable[[str], None] | None = None,
) -> Comparison:
    """Plan and check every variant, train each into ``output_dir/<variant>``, then draw and tabulate.

    ``output_dir`` must not exist (OutputExists). ``announce``, when given, is called with one line of text
    before and after each variant (the CLI prints them).
    """
    varying, variants = plan_variants(
        base,
        optimizers=optimizers,
        policies=policies,
        learning_rates=learning_rates,
        batch_sizes=batch_sizes,
        variant_options=variant_options,
    )
    if output_dir.exists():
        raise OutputExists(f"output folder {output_dir} already exists: choose another --output-dir")
    check_variants(variants, settings=settings)
    output_dir.mkdir(parents=True)
    say = announce or (lambda line: None)

    results = []
    for number, variant in enumerate(variants, start=1):
        config = variant.config
        say(
            f"[{number}/{len(variants)}] {variant.name}: {config.optimizer}, {config.lr_policy}, "
            f"learning rate {config.learning_rate:g}, batch {config.batch_size}"
        )
        run_dir = output_dir / variant.name
        started = time.perf_counter()
        status: Literal["completed", "diverged"] = "completed"
        metrics: dict[str, float] = {}
        message = None
        try:
            metrics = run(config, settings=settings, output_dir=run_dir, progress=False, echo=False).metrics
        except TrainingDiverged as error:
            status, message = "diverged", str(error)
        wall = time.perf_counter() - started
        history = read_history(run_dir)
        val = [row["val_accuracy"] for row in history if row.get("val_accuracy") is not None]
        result = VariantResult(
            variant=variant.name,
            optimizer=config.optimizer,
            lr_policy=config.lr_policy,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            status=status,
            test_accuracy=metrics.get("test_accuracy"),
            ece=metrics.get("ece"),
            best_val_accuracy=max(val) if val else None,
            train_seconds=round(sum(float(row["seconds"]) for row in history), 2),
            wall_seconds=round(wall, 2),
            run_dir=str(run_dir),
            message=message,
        )
        results.append(result)
        say(f"    {variant.name}: {_summary(result)}")

    comparison = Comparison(
        output_dir=output_dir,
        varying=varying,
        results=tuple(results),
        figure=output_dir / "comparison.png",
        table_markdown=output_dir / "comparison.md",
        table_json=output_dir / "comparison.json",
    )
    title = f"{base.model} on {base.dataset} · {base.epochs} epoch(s) · seed {base.seed} · varying {varying}"
    plot_comparison(results, comparison.figure, title=title)
    comparison.table_markdown.write_text(f"# {title}\n\n{markdown_table(results)}\n")
    comparison.table_json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return comparison


def _summary(result: VariantResult) -> str:
    if result.status != "completed":
        return f"{result.status} ({result.message})"
    return (
        f"test accuracy {result.test_accuracy:.4f}, ECE {result.ece:.4f}, "
        f"{result.train_seconds:.1f} s training, {result.wall_seconds:.1f} s in all"
    )


# ---------------------------------------------------------------------------------------------------------
# Table and figure
# ---------------------------------------------------------------------------------------------------------

COLUMNS = (  # (field, heading, format of a number)
    ("variant", "variant", ""),
    ("optimizer", "optimizer", ""),
    ("lr_policy", "policy", ""),
    ("learning_rate", "learning rate", "g"),
    ("batch_size", "batch", "d"),
    ("test_accuracy", "test accuracy", ".4f"),
    ("ece", "ECE", ".4f"),
    ("best_val_accuracy", "best val accuracy", ".4f"),
    ("train_seconds", "training s", ".1f"),
    ("wall_seconds", "wall s", ".1f"),
    ("status", "status", ""),
)


def markdown_table(results: Sequence[VariantResult]) -> str:
    def cell(value: object, spec: str) -> str:
        return "—" if value is None else format(value, spec)

    header = "| " + " | ".join(heading for _, heading, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(cell(getattr(r, key), spec) for key, _, spec in COLUMNS) + " |" for r in results]
    return "\n".join([header, rule, *rows])


def plot_comparison(results: Sequence[VariantResult], path: Path, *, title: str) -> None:
    """Training loss per step, validation loss and validation accuracy per epoch; one colour per variant."""
    figure, (step_ax, val_loss_ax, val_acc_ax) = plt.subplots(1, 3, figsize=(16, 4.8))
    for index, result in enumerate(results):
        color = plt.get_cmap("tab20")(index % 20) if len(results) > 10 else f"C{index}"
        label = f"{result.variant} (lr {result.learning_rate:g})"
        run_dir = Path(result.run_dir)
        history = read_history(run_dir)
        if history:
            steps_per_epoch = int(history[0]["step"]) // int(history[0]["epoch"])
            losses = step_scalars(run_dir, "step/loss")
            if losses:
                epochs = [(step + 1) / max(steps_per_epoch, 1) for step, _ in losses]
                values = [loss for _, loss in losses]
                step_ax.plot(epochs, values, color=color, alpha=0.3, linewidth=0.8)
                step_ax.plot(epochs, smooth(values), color=color, linewidth=1.8, label=label)
            marks = [row["epoch"] for row in history]
            if any(row.get("val_loss") is not None for row in history):
                val_loss_ax.plot(marks, [row.get("val_loss") for row in history], "o-", color=color, label=label)
                val_acc_ax.plot(marks, [row.get("val_accuracy") for row in history], "o-", color=color, label=label)
        if result.status != "completed":
            step_ax.plot([], [], color=color, linestyle=":", label=f"{result.variant}: {result.status}")
    step_ax.set_xlabel("epoch (per training step)")
    step_ax.set_ylabel("training loss (faint: per batch; solid: smoothed)")
    val_loss_ax.set_ylabel("validation loss")
    val_acc_ax.set_ylabel("validation accuracy")
    for axis in (val_loss_ax, val_acc_ax):
        axis.set_xlabel("epoch")
    for axis in (step_ax, val_loss_ax, val_acc_ax):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def smooth(values: Sequence[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average (the same rule as the LR range test, shorter memory)."""
    average, out = 0.0, []
    for count, value in enumerate(values, start=1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta**count))
    return out
