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
from training.config import ConfigError, build_config, read_config_file
from training.optim import optimizer_names, policy_names
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
@config_options()
def train(
    config_file: Path | None,
    output_dir: Path | None,
    resume_dir: Path | None,
    data_dir: Path | None,
    model_root: Path | None,
    quiet: bool,
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
