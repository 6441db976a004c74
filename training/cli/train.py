"""``imgcls train``: every TrainConfig field as an option, a config file, and resume."""

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click
import msgspec
import yaml

from training.cli.options import CONFIG_FILE_OPTION, DATA_DIR_OPTION, config_options, given_values, settings_from
from training.config import ConfigError, TrainConfig, build_config, read_config_file
from training.optim import optimizer_names, policy_names
from training.seeds import parse_seeds, run_seeds, spread_table
from training.settings import TrainingSettings
from training.train import run


class StopOnInterrupt:
    """First Ctrl-C: finish cleanly at the next batch, keeping the last epoch's checkpoint. Second: abort."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this batch (Ctrl-C again to abort)…", file=sys.stderr)


@click.command(context_settings={"max_content_width": 110})
@CONFIG_FILE_OPTION
@click.option("--output-dir", type=click.Path(path_type=Path), help="Run folder (must not exist).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), help="Continue an interrupted run folder.")
@DATA_DIR_OPTION
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@click.option(
    "--seeds",
    "seeds_text",
    metavar="N,N,...",
    help="Train once per seed (at least two, each once) into --output-dir/seed-N; print each run's test accuracy "
    "and ECE with their mean ± std, and write seeds.json. Publishes nothing unless --publish-median.",
)
@click.option(
    "--publish-median",
    is_flag=True,
    help="With --seeds: publish the run whose test accuracy is the median (the lower middle one for an even count).",
)
@config_options()
def train(
    config_file: Path | None,
    output_dir: Path | None,
    resume_dir: Path | None,
    data_dir: Path | None,
    model_root: Path | None,
    quiet: bool,
    seeds_text: str | None,
    publish_median: bool,
    **options: Any,
) -> None:
    """Train a model on a dataset, calibrate it, export it to ONNX and publish it.

    Options come from defaults, then --config FILE, then the command line. The resolved config is
    printed and saved in the run folder. Prints one JSON line of metrics per epoch on stdout. The epoch
    with the best validation accuracy is the one exported (best_epoch in the summary).

    \b
    Optimizers: {optimizers}
    LR policies: {policies}
    """
    settings = settings_from(data_dir=data_dir, model_root=model_root)
    given = given_values(options)
    if resume_dir is not None:
        if given or config_file or output_dir:
            raise ConfigError("--resume continues a run with its saved config: give no other training options")
        saved = resume_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"{resume_dir} is not a run folder (no config.yaml)")
        config = build_config(yaml.safe_load(saved.read_text()))
    else:
        config = build_config(read_config_file(config_file) if config_file else {}, given)
    if seeds_text is not None:
        seeds = parse_seeds(seeds_text)
        if resume_dir is not None or "seed" in given or "publish" in given:
            raise ConfigError(
                "--seeds gives the seeds and publishes only with --publish-median: not with --resume, --seed or "
                "--publish/--no-publish (resume one seed's folder on its own)"
            )
        train_seeds(config, seeds, settings, output_dir=output_dir, publish_median=publish_median, quiet=quiet)
        return
    if publish_median:
        raise ConfigError("--publish-median goes with --seeds")

    stop = StopOnInterrupt()
    previous = signal.signal(signal.SIGINT, stop.handle)
    try:
        result = run(
            config,
            settings=settings,
            output_dir=resume_dir or output_dir,
            resume=resume_dir is not None,
            should_stop=stop,
            progress=not quiet,
            echo=not quiet,
        )
    finally:
        signal.signal(signal.SIGINT, previous)

    if result.rank != 0:
        return  # under torchrun, rank 0 reports for all
    summary: dict[str, Any] = {
        "status": result.status,
        "run_dir": str(result.run_dir),
        "epochs": result.epochs_completed,
    }
    if result.status == "interrupted":
        click.echo(
            f"interrupted after epoch {result.epochs_completed}; continue with: imgcls train --resume {result.run_dir}",
            err=True,
        )
    else:
        metrics = result.metrics
        summary["metrics"] = {k: v for k, v in metrics.items() if "/" not in k}
        summary["best_epoch"] = result.best_epoch
        if result.early_stop is not None:
            summary["early_stop"] = msgspec.to_builtins(result.early_stop)
        line = (
            f"test accuracy {metrics['test_accuracy']:.4f}, ECE {metrics['ece']:.4f} "
            f"(uncalibrated {metrics['ece_uncalibrated']:.4f})"
        )
        if result.published is not None:
            summary["published"] = {"name": result.published.name, "version": result.published.version}
            line += f"; published {result.published.name} v{result.published.version} at {result.published.path}"
        click.echo(line, err=True)
    click.echo(json.dumps(summary))
    if result.status == "interrupted":
        sys.exit(130)


train.help = (train.help or "").format(optimizers=", ".join(optimizer_names()), policies=", ".join(policy_names()))


def train_seeds(
    config: TrainConfig,
    seeds: tuple[int, ...],
    settings: TrainingSettings,
    *,
    output_dir: Path | None,
    publish_median: bool,
    quiet: bool,
) -> None:
    """``--seeds``: the runs, a table of their spread on stderr, the summary as one JSON line on stdout."""
    stop = StopOnInterrupt()
    previous = signal.signal(signal.SIGINT, stop.handle)
    try:
        summary, interrupted = run_seeds(
            config,
            seeds,
            settings=settings,
            output_dir=output_dir,
            publish_median=publish_median,
            should_stop=stop,
            progress=not quiet,
            echo=not quiet,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted is not None:
        click.echo(
            f"interrupted in {interrupted.run_dir} (no summary); continue that seed with: imgcls train --resume "
            f"{interrupted.run_dir}",
            err=True,
        )
        sys.exit(130)
    click.echo(spread_table(summary), err=True)
    if summary["published"] is not None:
        published = summary["published"]
        click.echo(f"published seed {published['seed']}: {published['name']} v{published['version']}", err=True)
    click.echo(json.dumps(summary))
