"""``imgcls models import-torchvision ARCH --weights FILE.pth [--name NAME]``.

Its own module (``imgcls models`` itself imports no torch): torch and the exporter are imported when the
command runs.
"""

import json
import shlex
from pathlib import Path

import click

from training.settings import TrainingSettings


@click.command("import-torchvision")
@click.argument("architecture", metavar="ARCH")
@click.option(
    "--weights",
    "weights",
    type=click.Path(path_type=Path),
    required=True,
    help="torchvision's ImageNet weights file, e.g. resnet18-f37072fd.pth (downloaded elsewhere).",
)
@click.option("--name", help="Model name to publish under [default: ARCH-imagenet].")
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
def import_torchvision(architecture: str, weights: Path, name: str | None, model_root: Path | None) -> None:
    """Publish torchvision's ImageNet weights for ARCH as a fine-tunable 1000-class model.

    ARCH: resnet18, resnet34, resnet50, mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0 or
    convnext_tiny.

    Checks the sha256 prefix in the file's name (resnet18-f37072fd.pth: the file's sha256 starts with
    f37072fd), loads it with weights_only=True, checks every key and shape against ARCH, exports to ONNX
    with the onnxruntime-vs-torch check, and publishes it with ImageNet's labels and preprocessing, and
    weights.pt for fine-tuning. Uncalibrated: there are no ImageNet images here to calibrate on.
    """
    from training.import_torchvision import default_name
    from training.import_torchvision import import_torchvision as run_import

    settings = TrainingSettings()
    name = name or default_name(architecture)
    command = shlex.join(
        ["imgcls", "models", "import-torchvision", architecture, "--weights", weights.name, "--name", name]
    )
    published = run_import(
        architecture,
        weights,
        repository_root=model_root or settings.model_root,
        command=command,
        name=name,
        redis_url=settings.redis_url,
    )
    click.echo(f"imported {weights.name} as {published.name} v{published.version} at {published.path}", err=True)
    click.echo(json.dumps({"name": published.name, "version": published.version, "path": str(published.path)}))
