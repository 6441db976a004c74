"""``imgcls batch-sweep``: training images/second and peak memory per batch size on this device."""

import json
from pathlib import Path
from typing import Any

import click

from training.batch_sweep import DEFAULT_BATCH_SIZES, STEPS, WARMUP_STEPS, format_table, plot_batch_sweep
from training.batch_sweep import sweep_batch_sizes as run_sweep
from training.cli.options import CONFIG_FILE_OPTION, DATA_DIR_OPTION, config_options, given_values, settings_from
from training.config import build_config, read_config_file


class BatchSizes(click.ParamType):
    """Comma-separated integers >= 1: ``16,32,48``."""

    name = "N,N,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        parts = [part.strip() for part in str(value).split(",") if part.strip()]
        try:
            sizes = tuple(int(part) for part in parts)
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers, e.g. 16,32,64", param, ctx)
        if not sizes or min(sizes) < 1:
            self.fail(f"{value!r}: give at least one batch size, each >= 1", param, ctx)
        return sizes


@click.command(context_settings={"max_content_width": 110})
@CONFIG_FILE_OPTION
@DATA_DIR_OPTION
@click.option(
    "--batch-sizes",
    type=BatchSizes(),
    default=",".join(map(str, DEFAULT_BATCH_SIZES)),
    show_default=True,
    help="Batch sizes to measure, in this order.",
)
@click.option(
    "--warmup-steps",
    type=click.IntRange(min=0),
    default=WARMUP_STEPS,
    show_default=True,
    help="Untimed training steps per size.",
)
@click.option(
    "--steps", type=click.IntRange(min=1), default=STEPS, show_default=True, help="Timed training steps per size."
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("batch_sweep.png"),
    show_default=True,
    help="PNG of images/second and peak memory against batch size.",
)
@config_options()
def batch_sweep(
    config_file: Path | None,
    data_dir: Path | None,
    batch_sizes: tuple[int, ...],
    warmup_steps: int,
    steps: int,
    plot_path: Path,
    **options: Any,
) -> None:
    """Measure training throughput (images/second) and peak memory for a range of batch sizes.

    For each size: a fresh model and optimizer, --warmup-steps untimed steps, then --steps timed training
    steps (forward, backward, optimizer step) on one batch already on the device, so data loading and
    augmentation are not timed. One untimed step runs before the first size, so one-time set-up is
    charged to none.

    \b
    Peak memory, by device:
      CUDA: torch.cuda.max_memory_allocated during the size (model, gradients, optimizer
            state, batch, activations), above what was allocated before it.
      CPU:  growth of the process's peak resident set size (VmHWM, reset per size through
            /proc/self/clear_refs) above the resident size before the size; an estimate that
            includes allocator caches. Without clear_refs: growth of the lifetime peak
            (ru_maxrss), which reads 0 when an earlier size peaked higher.

    Takes every `imgcls train` option, so the same command line works; --batch-size, --epochs and the
    learning-rate policy do not apply. Prints a table on stderr, one JSON object per size on stdout.
    """
    settings = settings_from(data_dir=data_dir)
    config = build_config(read_config_file(config_file) if config_file else {}, given_values(options))
    sweep = run_sweep(config, settings=settings, batch_sizes=batch_sizes, warmup_steps=warmup_steps, steps=steps)
    plot_batch_sweep(sweep, plot_path)
    click.echo(f"# {sweep.model} · {sweep.optimizer} on {sweep.device}; peak memory: {sweep.memory_measure}", err=True)
    click.echo(format_table(sweep), err=True)
    click.echo(f"# plot: {plot_path}", err=True)
    for row in sweep.rows:
        click.echo(json.dumps({**row.to_dict(), "device": sweep.device, "model": sweep.model}))
