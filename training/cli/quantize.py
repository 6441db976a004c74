"""``imgcls quantize``: add an int8 variant (``model.int8.onnx``) to a published version."""

import json
from pathlib import Path

import click

from service.repository import ModelRepository
from training.cli.options import DATA_DIR_OPTION, settings_from
from training.errors import InvalidHyperparameter
from training.quantize import DEFAULT_CALIBRATION_IMAGES, DEFAULT_MAX_ACCURACY_DROP, quantize_version
from training.quantize_imported import quantize_imported


@click.command()
@click.argument("name")
@click.option("--version", "reference", help="A version number or alias (default: production, else the latest).")
@click.option(
    "--calibration-images",
    type=click.IntRange(min=1),
    default=DEFAULT_CALIBRATION_IMAGES,
    show_default=True,
    help="Training images whose activations set the int8 ranges.",
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0.0, max=1.0),
    default=DEFAULT_MAX_ACCURACY_DROP,
    show_default=True,
    help="Refuse the variant when int8 test accuracy is more than this below fp32 (a fraction: 0.005 = 0.5 points).",
)
@click.option(
    "--calibrate-on",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Imported versions: a labelled folder (<label>/<image>) whose images set the int8 ranges.",
)
@click.option(
    "--evaluate-on",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Imported versions: a labelled folder on which fp32 and int8 are compared.",
)
@DATA_DIR_OPTION
@click.option("--model-root", type=click.Path(path_type=Path), help="Model repository [env IMGCLS_MODEL_ROOT].")
def quantize(
    name: str,
    reference: str | None,
    calibration_images: int,
    max_accuracy_drop: float,
    calibrate_on: Path | None,
    evaluate_on: Path | None,
    data_dir: Path | None,
    model_root: Path | None,
) -> None:
    """Quantize NAME to int8 (onnxruntime static QDQ, per-channel weights) and add it to the version.

    Calibrates on training images of the version's dataset, then tests fp32 and int8 with onnxruntime
    on the test images the version's metrics came from. An imported version (imgcls models import) has
    no dataset: it takes --calibrate-on and --evaluate-on, labelled folders. The variant is recorded in
    the manifest next to fp32; the version's other files do not change, and running it again replaces
    the variant. Prints one JSON object: both accuracies, the drop, and the variant file.
    """
    settings = settings_from(data_dir=data_dir, model_root=model_root)
    repository = ModelRepository(settings.model_root)
    manifest = repository.verify(name, repository.resolve(name, reference))
    if manifest.lineage.imported is not None:
        report = quantize_imported(
            repository,
            manifest,
            calibrate_on=calibrate_on,
            evaluate_on=evaluate_on,
            calibration_images=calibration_images,
            max_accuracy_drop=max_accuracy_drop,
        )
    elif calibrate_on is not None or evaluate_on is not None:
        raise InvalidHyperparameter(
            f"{name} v{manifest.version} was trained here and is calibrated and tested on its own dataset "
            f"({manifest.lineage.dataset}); --calibrate-on and --evaluate-on are for imported versions"
        )
    else:
        report = quantize_version(
            settings.model_root,
            name,
            reference,
            fashion_mnist_dir=settings.fashion_mnist_dir,
            calibration_images=calibration_images,
            max_accuracy_drop=max_accuracy_drop,
        )
    summary = {
        "name": report.name,
        "version": report.version,
        "fp32_test_accuracy": report.fp32_accuracy,
        "int8_test_accuracy": report.int8_accuracy,
        "accuracy_drop": round(report.accuracy_drop, 5),
        "top1_agreement": report.agreement,
        "test_images": report.test_images,
        "variant": str(report.path),
        "method": report.variant.method,
    }
    click.echo(json.dumps(summary))
