"""``imgcls export`` (checkpoint to ONNX) and ``imgcls publish`` (finished run folder to the repository)."""

import json
from pathlib import Path

import click

from service.repository.run_folder import RunFolder
from training.checkpoint import load_checkpoint
from training.export import export_onnx
from training.models import create_model
from training.publish import publish_run
from training.settings import TrainingSettings
from training.train import preprocessing_of


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True, help="Where to write the .onnx file.")
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True, help="ONNX opset.")
def export(checkpoint: Path, output: Path, opset: int) -> None:
    """Export CHECKPOINT (a .pt file, or a run folder: its best checkpoint) to ONNX.

    The export checks itself: onnx.checker, then onnxruntime against torch (atol 1e-4, rtol 1e-3,
    identical argmax); on failure nothing is written.
    """
    if checkpoint.is_dir():
        checkpoint = RunFolder(checkpoint).best_checkpoint
    state = load_checkpoint(checkpoint)
    preprocessing = preprocessing_of(state)
    model = create_model(state.config["model"], in_channels=preprocessing.channels, num_classes=len(state.labels))
    model.load_state_dict(state.model)
    report = export_onnx(
        model,
        output,
        input_shape=(preprocessing.channels, *preprocessing.input_size),
        opset=opset,
        metadata={"labels": json.dumps(state.labels), "config": json.dumps(state.config)},
    )
    click.echo(json.dumps({"path": str(report.path), "opset": report.opset, "max_abs_diff": report.max_abs_diff}))


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--name", help="Publish under this name (default: the run's).")
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
def publish(run_dir: Path, name: str | None, model_root: Path | None) -> None:
    """Publish a finished RUN_DIR (trained with --no-publish, say) as a new version."""
    settings = TrainingSettings()
    published = publish_run(
        run_dir, repository_root=model_root or settings.model_root, name=name, redis_url=settings.redis_url
    )
    click.echo(json.dumps({"name": published.name, "version": published.version, "path": str(published.path)}))
