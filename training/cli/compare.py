"""``imgcls compare``: one model and budget, several optimizers or learning-rate policies, one figure and table."""

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from training.cli.options import (
    CONFIG_FILE_OPTION,
    DATA_DIR_OPTION,
    MAPPING_OPTIONS,
    config_options,
    given_values,
    parse_pairs,
    settings_from,
)
from training.compare import DEFAULT_LEARNING_RATES, LBFGS_BATCH_SIZE
from training.compare import compare as run_comparison
from training.compare_report import markdown_table
from training.config import ConfigError, build_config, read_config_file
from training.lr_find import STEPS
from training.optim import optimizer_names, policy_names


class Names(click.ParamType):
    """Comma-separated names: ``sgd,adam``."""

    name = "NAME,NAME,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        names = tuple(part.strip() for part in str(value).split(",") if part.strip())
        if not names:
            self.fail(f"{value!r}: give at least one name, e.g. sgd,adam", param, ctx)
        return names


class NamedNumbers(click.ParamType):
    """Comma-separated NAME=NUMBER pairs: ``adam=0.001,sgd=0.1``; every number > 0."""

    def __init__(self, kind: type[int] | type[float]) -> None:
        self.kind = kind
        self.name = "NAME=X,..." if kind is float else "NAME=N,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        pairs: dict[str, Any] = {}
        for part in (p.strip() for p in str(value).split(",") if p.strip()):
            name, sep, number = part.partition("=")
            try:
                parsed = self.kind(number)
            except ValueError:
                parsed = None
            if not sep or not name.strip() or parsed is None or not parsed > 0:
                kind = "a number" if self.kind is float else "an integer"
                self.fail(f"{part!r} is not NAME=VALUE with VALUE {kind} > 0, e.g. adam=0.001", param, ctx)
            pairs[name.strip()] = parsed
        return pairs


def split_variant_options(option: str, values: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{"adam.betas": [0.9, 0.99]}`` -> ``{"adam": {"betas": [0.9, 0.99]}}``."""
    options: dict[str, dict[str, Any]] = {}
    for key, value in (values or {}).items():
        variant, sep, name = key.partition(".")
        if not sep or not variant or not name:
            raise click.BadParameter(
                f"{key}={value!r}: the options of the compared optimizers or policies are per variant: "
                f"NAME.KEY=VALUE, e.g. momentum.momentum=0.95",
                param_hint=option,
            )
        options.setdefault(variant, {})[name] = value
    return options


@click.command(context_settings={"max_content_width": 110})
@click.option("--optimizers", type=Names(), help="Optimizers to compare (each with its own default rate).")
@click.option("--policies", type=Names(), help="Learning-rate policies to compare (with the config's optimizer).")
@click.option(
    "--learning-rates",
    type=NamedNumbers(float),
    default={},
    help="Per-variant learning rates, e.g. adam=0.001,sgd=0.1.",
)
@click.option(
    "--batch-sizes",
    type=NamedNumbers(int),
    default={},
    help=f"Per-variant batch sizes, e.g. lbfgs=2048 [default: --batch-size; lbfgs {LBFGS_BATCH_SIZE}].",
)
@click.option(
    "--auto-lr",
    is_flag=True,
    help="Run the LR range test for each optimizer first (same model, data, batch size) and train it at the "
    "suggested rate; lbfgs and rprop keep their default.",
)
@click.option(
    "--range-test-steps",
    type=click.IntRange(min=10),
    default=STEPS,
    show_default=True,
    help="With --auto-lr: batches per range test.",
)
@click.option("--output-dir", type=click.Path(path_type=Path), help="Comparison folder (must not exist).")
@CONFIG_FILE_OPTION
@DATA_DIR_OPTION
@click.option("--quiet", is_flag=True, help="No per-variant lines.")
@config_options()
def compare(
    optimizers: tuple[str, ...] | None,
    policies: tuple[str, ...] | None,
    learning_rates: dict[str, float],
    batch_sizes: dict[str, int],
    auto_lr: bool,
    range_test_steps: int,
    output_dir: Path | None,
    config_file: Path | None,
    data_dir: Path | None,
    quiet: bool,
    **options: Any,
) -> None:
    """Train the same model, data, epochs and seed under several optimizers (--optimizers) or
    learning-rate policies (--policies), then draw one figure and one table of the results.

    Every variant is a full `imgcls train` run (never published) into OUTPUT_DIR/<variant>/. OUTPUT_DIR
    (default <runs_dir>/compare-<UTC time>) also gets comparison.png (training loss per step, validation
    loss and accuracy per epoch, one line per variant), comparison.md and comparison.json (test accuracy,
    ECE after temperature scaling, best validation accuracy, training and wall seconds per variant).
    Everything is checked before the first variant trains; a variant whose loss turns NaN is recorded as
    diverged and the others still run. Prints the table on stderr and one JSON list on stdout.

    \b
    Learning rate per variant: --learning-rates NAME=X, else --learning-rate when given, else
      comparing optimizers with --auto-lr: the LR range test's suggestion (lbfgs, rprop: default);
        a variant whose range test gives no rate is recorded as failed and the others go on
      comparing optimizers: {rates}
      comparing policies: the config's --learning-rate
    Batch size per variant: --batch-sizes NAME=N, else --batch-size, except lbfgs: {lbfgs}
      when --batch-size is not given (L-BFGS needs low-noise gradients)
    Weight decay: --weight-decay for all, else each run's own default (0 for rprop, lbfgs, ftrl).
    Options of the compared optimizers or policies are per variant, NAME.KEY=VALUE:
      --optimizer-option momentum.momentum=0.95   --lr-policy-option step.step_size=200

    \b
    Optimizers: {optimizers}
    LR policies: {policies}
    """
    if bool(optimizers) == bool(policies):
        raise ConfigError("give exactly one of --optimizers and --policies (the list of variants to compare)")
    settings = settings_from(data_dir=data_dir)
    file_values = read_config_file(config_file) if config_file else {}
    given = given_values({k: v for k, v in options.items() if k not in MAPPING_OPTIONS})
    varied = "optimizer" if optimizers else "lr_policy"
    varied_option = f"{varied}_options"
    variant_options = split_variant_options(
        MAPPING_OPTIONS[varied_option][0], parse_pairs(MAPPING_OPTIONS[varied_option][0], options[varied_option])
    )
    for name in MAPPING_OPTIONS:
        if name != varied_option:
            parsed = parse_pairs(MAPPING_OPTIONS[name][0], options[name])
            if parsed is not None:
                given[name] = parsed
    if given.get("publish"):
        raise ConfigError("compare never publishes (its runs are for comparison): drop --publish")
    if varied in given:
        single, listing = ("--optimizer", "--optimizers") if optimizers else ("--lr-policy", "--policies")
        raise ConfigError(f"{single} does not apply when comparing: the variants come from {listing}")
    base = build_config(file_values, given)

    explicit = {**file_values, **given}
    if auto_lr and "learning_rate" in explicit:
        raise ConfigError(
            "--auto-lr chooses each optimizer's rate: drop --learning-rate (or give single rates with --learning-rates)"
        )
    rates = dict(learning_rates)
    sizes = dict(batch_sizes)
    for name in optimizers or policies or ():
        if "learning_rate" in explicit:
            rates.setdefault(name, base.learning_rate)
        if "batch_size" in explicit:
            sizes.setdefault(name, base.batch_size)

    folder = output_dir or settings.runs_dir / f"compare-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    comparison = run_comparison(
        base,
        settings=settings,
        output_dir=folder,
        optimizers=optimizers or (),
        policies=policies or (),
        learning_rates=rates,
        batch_sizes=sizes,
        variant_options=variant_options,
        auto_lr=auto_lr,
        range_test_steps=range_test_steps,
        announce=None if quiet else lambda line: click.echo(line, err=True),
    )
    click.echo(f"\n{markdown_table(comparison.results)}\n", err=True)
    click.echo(f"figure: {comparison.figure}\ntable: {comparison.table_markdown}", err=True)
    click.echo(json.dumps([asdict(result) for result in comparison.results]))


compare.help = (compare.help or "").format(
    rates=", ".join(f"{name} {rate:g}" for name, rate in DEFAULT_LEARNING_RATES.items()),
    lbfgs=LBFGS_BATCH_SIZE,
    optimizers=", ".join(optimizer_names()),
    policies=", ".join(policy_names()),
)
