"""``imgcls fine-tune``: a fine-tuning job run locally, in this process (the worker runs the same steps)."""

import json
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import click
import msgspec

from service.jobs.hyperparameters import FineTuneConfig, build_finetune_config
from service.repository.run_folder import TrialFolder
from training.cli.options import MAPPING_OPTIONS, parse_pairs, settings_from
from training.cli.train import StopOnInterrupt
from training.finetune import FineTuneJob, fine_tune


def hyperparameter_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """One option per FineTuneConfig field, named as ``imgcls train`` names it (all default None: not given)."""
    for name, field in reversed(FineTuneConfig.model_fields.items()):
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description or ''}{'' if default in (None, {}) else f' [default: {default}]'}"
        flag = "--" + name.replace("_", "-")
        if name in MAPPING_OPTIONS:
            option, metavar, what = MAPPING_OPTIONS[name]
            function = click.option(option, name, multiple=True, metavar=metavar, help=f"{what}; repeatable")(function)
        elif field.annotation is bool:
            function = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)(function)
        else:
            function = click.option(flag, name, type=_click_type(field.annotation), default=None, help=help_text)(
                function
            )
    return function


def _click_type(annotation: Any) -> click.ParamType:
    """``int``, ``float | None`` ... -> click's INT, FLOAT; anything else (names) STRING."""
    kinds = [kind for kind in get_args(annotation) if kind is not type(None)] or [annotation]
    known: dict[Any, click.ParamType] = {int: click.INT, float: click.FLOAT}
    return known.get(kinds[0], click.STRING)


@click.command("fine-tune", context_settings={"max_content_width": 110})
@click.option(
    "--base",
    required=True,
    metavar="NAME[:VERSION]",
    help="Published model to start from (VERSION: a number or an alias; default: production).",
)
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="ImageFolder tree: one sub-folder of images per class.",
)
@click.option("--dataset-id", help="Id of a stored dataset (recorded as dataset:<id>); default: the folder's path.")
@click.option("--dataset-sha256", help="sha256 of the dataset's archive, for the lineage.")
@click.option("--job-id", help="Job id; give the same id and --output-dir again to resume [default: a new one].")
@click.option(
    "--output-dir", type=click.Path(path_type=Path), help="Job folder [default: IMGCLS_RUNS_DIR/finetune-<job id>]."
)
@click.option(
    "--publish-name",
    help="Model name to publish under [default: the base's when the labels are the same, else <base>-<dataset>].",
)
@click.option("--auto-promote", is_flag=True, help="Make the new version production (if it passes --min-accuracy).")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), help="Test accuracy needed for --auto-promote.")
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
@hyperparameter_options
def finetune(
    base: str,
    data: Path,
    dataset_id: str | None,
    dataset_sha256: str | None,
    job_id: str | None,
    output_dir: Path | None,
    publish_name: str | None,
    auto_promote: bool,
    min_accuracy: float | None,
    model_root: Path | None,
    quiet: bool,
    **options: Any,
) -> None:
    """Fine-tune a published model on a folder of images and publish the result as a new version.

    The dataset is decoded into the base model's input (color mode, size, mean/std); the head is replaced
    when the labels differ; the backbone is frozen for --freeze-backbone-epochs, then trained at
    --backbone-lr-multiplier times the rate; the epoch with the best validation accuracy is published,
    and --early-stopping-patience epochs without a better one end the run (0: off). Prints one JSON
    object: status, version, metrics (best_epoch: the epoch published), early_stop when it stopped early.
    """
    settings = settings_from(model_root=model_root)
    name, _, version = base.partition(":")
    hyperparameters = {
        key: parse_pairs(MAPPING_OPTIONS[key][0], tuple(value or ())) if key in MAPPING_OPTIONS else value
        for key, value in options.items()
    }
    config = build_finetune_config(hyperparameters)
    job_id = job_id or f"local-{uuid.uuid4().hex[:12]}"
    output_dir = output_dir or settings.runs_dir / f"finetune-{job_id}"

    stop = StopOnInterrupt()
    previous = signal.signal(signal.SIGINT, stop.handle)
    try:
        job = FineTuneJob(
            job_id=job_id,
            base=name,
            base_version=version or None,
            dataset_dir=data,
            dataset_id=dataset_id,
            dataset_sha256=dataset_sha256,
            config=config,
            publish_name=publish_name,
        )
        result = fine_tune(
            job,
            TrialFolder(output_dir),
            settings,
            auto_promote=auto_promote,
            min_accuracy=min_accuracy,
            should_stop=stop,
            echo=not quiet,
        )
    finally:
        signal.signal(signal.SIGINT, previous)

    summary: dict[str, Any] = {
        "status": result.status,
        "job_id": job_id,
        "output_dir": str(output_dir),
        "base": {"name": result.base.name, "version": result.base.version},
        "epochs": result.epochs_completed,
        "hyperparameters": result.config.to_dict(),
    }
    if result.published is not None:
        summary["published"] = {"name": result.published.name, "version": result.published.version}
        summary["promoted"] = result.promoted
        summary["metrics"] = {k: v for k, v in result.metrics.items() if "/" not in k}
        early_stop = TrialFolder(output_dir).run.read_result().early_stop
        if early_stop is not None:
            summary["early_stop"] = msgspec.to_builtins(early_stop)
    click.echo(json.dumps(summary))
    if result.status == "stopped":
        again = f"imgcls fine-tune --base {base} --data {data} --job-id {job_id} --output-dir {output_dir}"
        click.echo(f"stopped after epoch {result.epochs_completed}; continue with: {again} (same options)", err=True)
        sys.exit(130)
