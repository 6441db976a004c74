"""``imgcls models``: what the repository holds. Imports no torch."""

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
import msgspec

from service.repository import ModelRepository
from service.repository.notify import promote as promote_version
from service.settings import RepositorySettings
from training.cli.import_torchvision import import_torchvision

if TYPE_CHECKING:
    from service.importing.publish import ImportReport

ROOT_OPTION = click.option(
    "--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT]."
)


def repository(model_root: Path | None) -> ModelRepository:
    return ModelRepository(model_root or RepositorySettings().model_root)


@click.group()
def models() -> None:
    """List, show, promote and import published models."""


@models.command("list")
@ROOT_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version instead of a table.")
def list_models(model_root: Path | None, as_json: bool) -> None:
    """Every model and version, with aliases, test accuracy, calibration error and variants (int8)."""
    repo = repository(model_root)
    rows: list[dict[str, Any]] = []
    for name in repo.models():
        aliases = repo.aliases(name)
        for version in repo.versions(name):
            manifest = repo.manifest(name, version)
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "aliases": sorted(a for a, v in aliases.items() if v == version),
                    "architecture": manifest.architecture,
                    "test_accuracy": manifest.metrics.get("test_accuracy"),
                    "ece": manifest.metrics.get("ece"),
                    "variants": {key: variant.metrics["test_accuracy"] for key, variant in manifest.variants.items()},
                    "created_at": manifest.created_at,
                }
            )
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo(f"no models in {repo.root} (train one with: imgcls train)")
        return
    click.echo(
        f"{'NAME':<20} {'VERSION':>7} {'ALIASES':<20} {'ARCHITECTURE':<18} {'ACCURACY':>8} {'ECE':>7} "
        f"{'VARIANTS':<8}  CREATED"
    )
    for row in rows:
        click.echo(
            f"{row['name']:<20} {row['version']:>7} {','.join(row['aliases']) or '-':<20} "
            f"{row['architecture']:<18} {figure(row['test_accuracy'], 8)} {figure(row['ece'], 7)} "
            f"{','.join(row['variants']) or '-':<8}  {row['created_at']}"
        )


def figure(value: float | None, width: int) -> str:
    """A metric to four places, or "-" where the version has none (an imported version without --evaluate-on)."""
    return f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}"


@models.command("show")
@click.argument("name")
@click.argument("version", required=False)
@ROOT_OPTION
def show(name: str, version: str | None, model_root: Path | None) -> None:
    """The manifest of NAME at VERSION (a number or an alias; default: production, else the latest).

    Every file is re-hashed first, variants included; ``variants`` lists each variant's file, method and
    test metrics next to the fp32 ones.
    """
    repo = repository(model_root)
    number = repo.resolve(name, version)
    manifest = repo.verify(name, number)
    click.echo(msgspec.json.format(msgspec.json.encode(manifest), indent=2).decode())


@models.command("promote")
@click.argument("name")
@click.argument("version")
@click.option("--alias", default="production", show_default=True, help="The alias to point at VERSION.")
@ROOT_OPTION
def promote(name: str, version: str, alias: str, model_root: Path | None) -> None:
    """Point an alias (production by default) at VERSION; running servers follow it.

    Servers notice within IMGCLS_WATCH_INTERVAL_S seconds, or at once when IMGCLS_REDIS_URL is set here and
    there (a message on the imgcls:repository channel).
    """
    repo = repository(model_root)
    number = repo.resolve(name, version)
    repo.verify(name, number)
    promote_version(repo, name, number, alias=alias, redis_url=RepositorySettings().redis_url)
    click.echo(f"{name}: {alias} -> v{number}")


# ---------------------------------------------------------------- imgcls models import


def floats(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """``0.485,0.456,0.406`` -> a tuple of floats."""
    if value is None:
        return None
    try:
        return tuple(float(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated numbers, e.g. 0.485,0.456,0.406") from None


def size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | tuple[int, int] | None:
    """``224`` (square) or ``224x192`` (height x width)."""
    if value is None:
        return None
    try:
        parts = [int(part) for part in value.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise click.BadParameter(f"{value!r}: give a side (224) or height x width (224x192)")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


@models.command("import")
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The model to publish a version of (new or existing).")
@click.option(
    "--labels",
    "labels_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Text file: one label per line, in the order of the model's output columns.",
)
@click.option("--input-size", callback=size, help="224 or 224x192 (height x width). Default: the model's fixed size.")
@click.option("--resize", type=click.IntRange(min=1), help="Shorter side before the center crop. Default: 8/7 x size.")
@click.option("--mean", callback=floats, help="Per channel, on the [0, 1] scale. Default (RGB): ImageNet's.")
@click.option("--std", callback=floats, help="Per channel. Default (RGB): ImageNet's 0.229,0.224,0.225.")
@click.option("--color", type=click.Choice(["RGB", "L"]), help="Colour mode. Default: from the channel count.")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), help="Default: where the model's channel axis is.")
@click.option(
    "--output",
    type=click.Choice(["logits", "probabilities"]),
    help="What the model outputs. Default: probabilities when the graph ends in a Softmax, else logits.",
)
@click.option(
    "--interpolation",
    type=click.Choice(["nearest", "box", "bilinear", "bicubic"]),
    default="bilinear",
    show_default=True,
    help="Filter of the resize.",
)
@click.option(
    "--calibrate-on",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Labelled folder (<label>/<image>): fit a temperature on it (logits only).",
)
@click.option(
    "--evaluate-on",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Labelled folder: record accuracy, per-class accuracy and ECE in the manifest.",
)
@ROOT_OPTION
def import_model(
    model_file: Path,
    name: str,
    labels_file: Path,
    input_size: int | tuple[int, int] | None,
    resize: int | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    color: Literal["RGB", "L"] | None,
    layout: Literal["NCHW", "NHWC"] | None,
    output: Literal["logits", "probabilities"] | None,
    interpolation: Literal["nearest", "box", "bilinear", "bicubic"],
    calibrate_on: Path | None,
    evaluate_on: Path | None,
    model_root: Path | None,
) -> None:
    """Import MODEL_FILE, an ONNX classifier trained elsewhere, as a new version of --name.

    The file is checked first (docs/models.md lists every check); any failure is one line naming it,
    and nothing is published. The version is served like a trained one, but has no weights.pt: it
    cannot be fine-tuned.
    """
    # imported here, not above: onnx and onnxruntime take a second to load, and `imgcls models list` needs neither
    from service.importing.labels import parse_labels
    from service.importing.options import ImportOptions
    from service.importing.publish import import_onnx

    options = ImportOptions(
        input_size=input_size,
        resize=resize,
        mean=mean,
        std=std,
        color=color,
        layout=layout,
        output=output,
        interpolation=interpolation,
    )
    report = import_onnx(
        repository(model_root),
        model_file,
        name=name,
        labels=parse_labels(labels_file.read_text(encoding="utf-8")),
        options=options,
        source=model_file.name,
        command=shlex.join(["imgcls", *sys.argv[1:]]),
        calibrate_on=calibrate_on,
        evaluate_on=evaluate_on,
        redis_url=RepositorySettings().redis_url,
    )
    for line in import_summary(report):
        click.echo(line)


def import_summary(report: "ImportReport") -> list[str]:
    manifest = report.manifest
    p = manifest.preprocessing
    metrics = manifest.metrics
    calibration = (
        "none (uncalibrated: the model's own probabilities)"
        if manifest.scores == "probabilities"
        else ("none (uncalibrated; --calibrate-on FOLDER fits a temperature)")
    )
    if manifest.calibration == "temperature":
        calibration = (
            f"temperature {manifest.temperature:.3f} on {int(metrics['calibration_images'])} images "
            f"(ECE {metrics['calibration_ece_before']:.4f} -> {metrics['calibration_ece_after']:.4f})"
        )
    source = manifest.lineage.imported.source if manifest.lineage.imported is not None else "?"
    measured = "none (--evaluate-on FOLDER measures them)"
    if "test_accuracy" in metrics:
        measured = (
            f"accuracy {metrics['test_accuracy']:.4f}, ECE {metrics['ece']:.4f} on {int(metrics['test_images'])} images"
        )
    return [
        f"published {manifest.name} v{manifest.version} from {source}",
        f"checks passed: {', '.join(report.checks)}",
        f"batch: {'dynamic' if report.batch_mode == 'dynamic' else 'one image at a time (fixed batch of 1)'}",
        f"input: {manifest.input.name} {list(manifest.input.shape)} {p.layout} {p.color_mode}, resize {p.resize}, "
        f"crop {p.input_size[0]}x{p.input_size[1]}, {p.interpolation}",
        f"output: {manifest.scores}; calibration: {calibration}",
        f"metrics: {measured}",
    ]


models.add_command(import_torchvision)
