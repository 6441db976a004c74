"""Train the same model, data, budget and seed under several optimizers or learning-rate policies.

Each variant is a full ``training.train.run`` (never published) into ``<output_dir>/<variant>/``, so every
variant keeps its config, checkpoints, metrics, plots and ONNX file. Then, in ``output_dir``::

    comparison.png    training loss per step, validation loss and accuracy per epoch, and the test accuracy,
                      wall time and rate of each variant as bars (training/compare_report.py)
    comparison.md     the table below, in markdown
    comparison.json   the same rows as JSON (training/compare_result.py)
    lr_find-<variant>.png   with ``auto_lr``: each range test's curve

Table columns: variant, optimizer, policy, learning rate and where it came from (given, default, range
test), batch size, test accuracy, ECE (after temperature scaling), best validation accuracy, training
seconds (the epochs alone) and wall seconds (the whole variant: range test, data, training, calibration,
export), and status (completed; diverged: NaN while training; failed: its range test gave no rate).

Per-variant choices, each overridable:

* **learning rate** (``learning_rates[variant]``): comparing optimizers, each gets its default from
  ``DEFAULT_LEARNING_RATES`` (they differ by orders of magnitude, so one shared rate would favour one of
  them; each default is one under which it trains this network, see docs/training.md); comparing
  policies, the config's rate. With ``auto_lr`` (optimizers only), every optimizer without a given rate
  first runs the LR range test (training/lr_find.py) on the same model, data and batch size and trains at
  the suggested rate; lbfgs and rprop, which the range test cannot measure, keep their default. A range
  test that gives no rate (it diverged at once, or the loss never fell) records the variant as "failed"
  with the reason, and the others go on.
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

import torch

from training.assemble import build_model_and_optimizer
from training.batches import batches_per_epoch
from training.compare_report import markdown_table, plot_comparison
from training.compare_result import RateSource, Status, VariantResult
from training.config import ConfigError, TrainConfig, build_config
from training.data import load_dataset
from training.engine import TrainingDiverged
from training.errors import InvalidHyperparameter, OutputExists, UnknownOptimizer, UnknownPolicy
from training.lr_find import STEPS, UNSUPPORTED, RangeTest, find_learning_rate, plot_range_test
from training.optim import build_scheduler, optimizer_names, policy_names
from training.reporting import read_history
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
    rate_source: RateSource  # "given" or "default" (a range test may replace a default)


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
        variants.append(Variant(name, config, "given" if name in learning_rates else "default"))
    return varying, variants


def check_variants(variants: Sequence[Variant], *, settings: TrainingSettings) -> int:
    """Build every variant's optimizer and policy on a throwaway model, as its run will: every name and value
    a run would refuse fails here, before anything trains. Loads the dataset once (for sizes and classes);
    returns the number of classes."""
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
    return len(data.labels)


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
    auto_lr: bool = False,
    range_test_steps: int = STEPS,
    range_test_bounds: tuple[float, float] | None = None,
    announce: Callable[[str], None] | None = None,
) -> Comparison:
    """Plan and check every variant, train each into ``output_dir/<variant>``, then draw and tabulate.

    ``auto_lr`` (optimizers only): range-test each optimizer that has no given rate first and train it at the
    suggested rate (``range_test_steps`` batches, rates from ``range_test_bounds``, default lr_find's
    1e-7 to 10). ``output_dir`` must not exist (OutputExists). ``announce``, when given, is called with one
    line of text before and after each variant (the CLI prints them).
    """
    if auto_lr and policies:
        raise ConfigError("--auto-lr picks a rate per optimizer: use it with --optimizers, not --policies")
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
    classes = check_variants(variants, settings=settings)
    output_dir.mkdir(parents=True)
    say = announce or (lambda line: None)

    results = []
    for number, variant in enumerate(variants, start=1):
        say(
            f"[{number}/{len(variants)}] {variant.name}: {variant.config.optimizer}, {variant.config.lr_policy}, "
            f"batch {variant.config.batch_size}"
        )
        started = time.perf_counter()
        config, source, test = variant.config, variant.rate_source, None
        if auto_lr and source == "default" and config.optimizer in UNSUPPORTED:
            say(f"    no range test for {config.optimizer} ({UNSUPPORTED[config.optimizer].split(';')[0]})")
        elif auto_lr and source == "default":
            bounds = {"start_rate": range_test_bounds[0], "end_rate": range_test_bounds[1]} if range_test_bounds else {}
            test = find_learning_rate(config, settings=settings, steps=range_test_steps, **bounds)
            plot_range_test(test, output_dir / f"lr_find-{variant.name}.png", title=f"{variant.name}: LR range test")
            if test.suggested_rate is not None:
                config, source = config.model_copy(update={"learning_rate": test.suggested_rate}), "range test"
        if test is not None and test.suggested_rate is None:
            result = _failed(variant, test, time.perf_counter() - started, output_dir / variant.name)
        else:
            say(f"    learning rate {config.learning_rate:g} ({source})")
            result = _train(variant.name, config, source, test, started, settings, output_dir / variant.name)
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
    plot_comparison(results, comparison.figure, title=title, classes=classes)
    comparison.table_markdown.write_text(f"# {title}\n\n{markdown_table(results)}\n")
    comparison.table_json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return comparison


def _train(
    name: str,
    config: TrainConfig,
    source: RateSource,
    test: RangeTest | None,
    started: float,
    settings: TrainingSettings,
    run_dir: Path,
) -> VariantResult:
    status: Status = "completed"
    metrics: dict[str, float] = {}
    message = None
    try:
        metrics = run(config, settings=settings, output_dir=run_dir, progress=False, echo=False).metrics
    except TrainingDiverged as error:
        status, message = "diverged", str(error)
    history = read_history(run_dir)
    val = [row["val_accuracy"] for row in history if row.get("val_accuracy") is not None]
    return VariantResult(
        variant=name,
        optimizer=config.optimizer,
        lr_policy=config.lr_policy,
        learning_rate=config.learning_rate,
        learning_rate_source=source,
        batch_size=config.batch_size,
        status=status,
        test_accuracy=metrics.get("test_accuracy"),
        ece=metrics.get("ece"),
        best_val_accuracy=max(val) if val else None,
        train_seconds=round(sum(float(row["seconds"]) for row in history), 2),
        wall_seconds=round(time.perf_counter() - started, 2),
        run_dir=str(run_dir),
        message=message,
        suggested_rate=test.suggested_rate if test else None,
        min_loss_rate=test.min_loss_rate if test else None,
    )


def _failed(variant: Variant, test: RangeTest, seconds: float, run_dir: Path) -> VariantResult:
    """The row of a variant whose range test gave no rate: nothing trained, the reason in ``message``."""
    batches = len(test.rates)
    if test.stop_reason in ("diverged", "non-finite loss"):
        last = f", at rate {test.rates[-1]:.2g}" if test.rates else ""
        why = f"its LR range test diverged before the loss fell ({test.stop_reason} after {batches} batch(es){last})"
    else:
        why = f"its LR range test found no rate (the smoothed loss did not fall over {batches} batches)"
    message = f"{why}; not trained: give it a rate with --learning-rates {variant.name}=X"
    return VariantResult(
        variant=variant.name,
        optimizer=variant.config.optimizer,
        lr_policy=variant.config.lr_policy,
        learning_rate=None,
        learning_rate_source="range test",
        batch_size=variant.config.batch_size,
        status="failed",
        test_accuracy=None,
        ece=None,
        best_val_accuracy=None,
        train_seconds=0.0,
        wall_seconds=round(seconds, 2),
        run_dir=str(run_dir),
        message=message,
        min_loss_rate=test.min_loss_rate,
    )


def _summary(result: VariantResult) -> str:
    if result.status != "completed":
        return f"{result.status} ({result.message})"
    return (
        f"test accuracy {result.test_accuracy:.4f}, ECE {result.ece:.4f}, "
        f"{result.train_seconds:.1f} s training, {result.wall_seconds:.1f} s in all"
    )
