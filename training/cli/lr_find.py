"""``imgcls lr-find``: the learning-rate range test, from the same options as ``imgcls train``."""

import json
from pathlib import Path
from typing import Any

import click

from training.cli.options import CONFIG_FILE_OPTION, DATA_DIR_OPTION, config_options, given_values, settings_from
from training.config import build_config, read_config_file
from training.lr_find import (
    END_RATE,
    START_RATE,
    STEPS,
    UNSUPPORTED,
    NoSuggestion,
    find_learning_rate,
    plot_range_test,
)
from training.optim import optimizer_names

POSITIVE = click.FloatRange(min=0.0, min_open=True)


@click.command(context_settings={"max_content_width": 110})
@CONFIG_FILE_OPTION
@DATA_DIR_OPTION
@click.option(
    "--steps",
    type=click.IntRange(min=2),
    default=STEPS,
    show_default=True,
    help="Mini-batches at most; the sweep stops earlier when the loss diverges.",
)
@click.option("--start-rate", type=POSITIVE, default=START_RATE, show_default=True, help="Rate of the first batch.")
@click.option("--end-rate", type=POSITIVE, default=END_RATE, show_default=True, help="Rate of batch --steps.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("lr_find.png"),
    show_default=True,
    help="PNG of the loss against the rate.",
)
@config_options()
def lr_find(
    config_file: Path | None,
    data_dir: Path | None,
    steps: int,
    start_rate: float,
    end_rate: float,
    plot_path: Path,
    **options: Any,
) -> None:
    """Find a learning rate: the LR range test on the model, data and optimizer that `imgcls train` would use.

    Trains on up to --steps mini-batches while the rate grows exponentially from --start-rate to
    --end-rate, then restores the model and optimizer exactly (nothing is saved but the plot). The loss is
    smoothed by a bias-corrected moving average (β 0.98); the sweep stops when the smoothed loss exceeds
    4x its lowest value, or a loss is NaN.

    The suggested rate is where the smoothed loss falls fastest against log10(rate): its steepest
    negative slope, ignoring the first 10 % and last 5 % of the points and anything after the lowest
    loss. No rate is suggested (exit 1, plot still drawn) when the smoothed loss falls by less than 2 %.
    The rate at the lowest smoothed loss is reported as well; a tenth of it is another common choice.
    For --lr-policy onecycle the peak rate can usually sit between the two.

    Takes every `imgcls train` option, so the same command line works; --learning-rate, --lr-policy,
    --warmup-iters and --epochs do not apply (the sweep sets the rate itself). Prints one line on stderr
    and one JSON object on stdout.

    Works with {optimizers}; not with lbfgs (its line search sets the step length) nor rprop (it reads
    the rate only as its initial step size).
    """
    settings = settings_from(data_dir=data_dir)
    config = build_config(read_config_file(config_file) if config_file else {}, given_values(options))
    result = find_learning_rate(config, settings=settings, start_rate=start_rate, end_rate=end_rate, steps=steps)
    plot_range_test(result, plot_path, title=f"LR range test · {config.model} · {config.optimizer} · {config.dataset}")

    summary = {
        "suggested_learning_rate": result.suggested_rate,
        "min_loss_rate": result.min_loss_rate,
        "batches": len(result.rates),
        "start_rate": start_rate,
        "last_rate": result.rates[-1] if result.rates else None,
        "stop_reason": result.stop_reason,
        "optimizer": config.optimizer,
        "model": config.model,
        "plot": str(plot_path),
    }
    swept = (
        f"swept {start_rate:.1e} to {result.rates[-1]:.1e} over {len(result.rates)} batches ({result.stop_reason})"
        if result.rates
        else f"no batch finished ({result.stop_reason})"
    )
    if result.suggested_rate is None:
        click.echo(json.dumps(summary))
        raise NoSuggestion(
            f"{swept}, and the smoothed loss did not fall by 2 %: no rate to suggest (see {plot_path}); "
            "raise --steps or --train-subset, or try another optimizer or model"
        )
    click.echo(
        f"suggested learning rate {result.suggested_rate:.3g} (steepest descent; lowest loss at "
        f"{result.min_loss_rate:.3g}); {swept}; plot: {plot_path}",
        err=True,
    )
    click.echo(json.dumps(summary))


lr_find.help = (lr_find.help or "").format(optimizers=", ".join(n for n in optimizer_names() if n not in UNSUPPORTED))
