"""``imgcls models import-torchvision ARCH --weights FILE.pth``: torchvision's ImageNet weights, published.

The file (read and checked by ``training.pretrained``: the sha256 prefix in its name, ``weights_only``,
every key and shape) is loaded into the registry's architecture with 3 input channels and 1000 classes,
exported to ONNX with the parity check, and published as a new version with:

- ImageNet's 1000 labels, from torchvision's weights enum (``meta["categories"]``), unique as the
  manifest requires: torchvision names the bird "crane bird" and the machine "crane", the swimsuits
  "maillot" and "maillot tank suit";
- the eval transform of the weights enum entry whose URL ends with this file's name (resize, crop,
  interpolation, mean/std: 256/224/bilinear for most, 232 for resnet50's V2 weights, bicubic for
  efficientnet_b0), or of the architecture's default entry for a file renamed by the user; photos with
  transparency composited on white, as for the photo models imgcls trains;
- ``explain.onnx`` for the architectures with class activation maps (ResNets, efficientnet_b0);
- ``weights.pt`` (so it can be fine-tuned), ``metrics`` empty and ``calibration`` "uncalibrated"
  (temperature 1.0): there are no ImageNet images here to measure or calibrate on;
- ``lineage.imported``: kind "torchvision", the file name, its sha256, when, and the command.

Like ``imgcls publish``, the first version of a model becomes its production version. A name whose
latest version has other labels is refused, so its clients never see the label set change.
"""

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec
import torch
from torchvision.models import WeightsEnum, get_model_weights
from torchvision.transforms import InterpolationMode

from service.repository import (
    Imported,
    Lineage,
    Manifest,
    ModelNotFound,
    ModelRepository,
    Preprocessing,
    RepositoryError,
    VersionRef,
)
from service.repository.manifest import TensorSpec
from service.repository.notify import announce_change, promote
from service.repository.store import EXPLAIN_FILE, PRODUCTION, check_name
from service.version import code_version
from training.data.datasets import PHOTO_BACKGROUND
from training.errors import InvalidHyperparameter, UnknownModel
from training.explain_export import explainable, export_explain
from training.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from training.models import create_model
from training.pretrained import fit_weights, read_weights_file

# Registry names that torchvision publishes ImageNet-1k weights for (the same architecture, key for key).
IMPORTABLE = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "convnext_tiny",
)
IMAGENET_CLASSES = 1000
INTERPOLATIONS: dict[InterpolationMode, Literal["bilinear", "bicubic"]] = {
    InterpolationMode.BILINEAR: "bilinear",
    InterpolationMode.BICUBIC: "bicubic",
}


def default_name(architecture: str) -> str:
    return f"{architecture}-imagenet"


def import_torchvision(
    architecture: str,
    weights_path: Path,
    *,
    repository_root: Path,
    command: str,
    name: str | None = None,
    redis_url: str | None = None,
) -> VersionRef:
    """Publish ``weights_path`` as the next version of ``name`` (default ``<architecture>-imagenet``).

    Raises, before anything is published: ``UnknownModel`` for an architecture without torchvision
    ImageNet weights, ``InvalidHyperparameter`` for a bad name or one that holds other labels,
    ``UnusableWeights`` for the file, ``ExportError`` when onnxruntime and torch disagree.
    """
    if architecture not in IMPORTABLE:
        raise UnknownModel(architecture, IMPORTABLE)
    name = name or default_name(architecture)
    try:
        check_name("model name", name)
    except RepositoryError as exc:
        raise InvalidHyperparameter(str(exc)) from None
    weights = read_weights_file(weights_path)
    entry = weights_entry(architecture, weights.name)
    labels = tuple(entry.meta["categories"])
    repository = ModelRepository(repository_root)
    check_same_labels(repository, name, labels)

    model = create_model(architecture, in_channels=3, num_classes=IMAGENET_CLASSES)
    model.load_state_dict(fit_weights(weights, model, architecture=architecture))
    model.eval()
    preprocessing = preprocessing_of(entry)
    imported_at = datetime.now(UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="import-torchvision-") as scratch:
        onnx_path, weights_copy = Path(scratch) / "model.onnx", Path(scratch) / "weights.pt"
        export_onnx(
            model,
            onnx_path,
            input_shape=(3, *preprocessing.input_size),
            metadata={
                "labels": json.dumps(list(labels)),
                "preprocessing": json.dumps(msgspec.to_builtins(preprocessing)),
                "source": weights.name,
                "code_version": code_version(),
            },
        )
        torch.save(model.state_dict(), weights_copy)
        explain_path = Path(scratch) / EXPLAIN_FILE if explainable(architecture) else None
        explain = (
            export_explain(model, explain_path, architecture=architecture, input_shape=(3, *preprocessing.input_size))
            if explain_path is not None
            else None
        )
        manifest = Manifest(
            name=name,
            architecture=architecture,
            labels=labels,
            input=TensorSpec(name=INPUT_NAME, datatype="FP32", shape=(-1, 3, *preprocessing.input_size)),
            output=TensorSpec(name=OUTPUT_NAME, datatype="FP32", shape=(-1, IMAGENET_CLASSES)),
            preprocessing=preprocessing,
            temperature=1.0,
            metrics={},
            lineage=Lineage(
                dataset="imagenet-1k",
                config={"model": architecture, "torchvision_weights": str(entry)},
                imported=Imported(
                    kind="torchvision",
                    source=weights.name,
                    sha256=weights.sha256,
                    imported_at=imported_at,
                    command=command,
                ),
            ),
            onnx_sha256="",  # stamped by ModelRepository.publish, as weights_sha256
            weights_sha256=None,
            created_at=imported_at,
            code_version=code_version(),
            calibration="uncalibrated",
            explain=explain,
        )
        published = repository.publish(manifest, onnx_path, weights_copy, explain_path=explain_path)
    if PRODUCTION not in repository.aliases(name):
        promote(repository, name, published.version, redis_url=redis_url)
    else:
        announce_change(redis_url, name)
    return published


def weights_entry(architecture: str, file_name: str) -> WeightsEnum:
    """torchvision's weights enum entry for this file: the one whose URL ends with its name, else the
    architecture's default (a file the user renamed)."""
    enum = get_model_weights(architecture)
    for entry in enum:
        if entry.url.rsplit("/", 1)[-1] == file_name:
            return entry
    return enum.DEFAULT


def preprocessing_of(entry: WeightsEnum) -> Preprocessing:
    transforms = entry.transforms()  # torchvision.transforms._presets.ImageClassification
    return Preprocessing(
        color_mode="RGB",
        input_size=(transforms.crop_size[0], transforms.crop_size[0]),
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        resize=transforms.resize_size[0],
        interpolation=INTERPOLATIONS[transforms.interpolation],
        layout="NCHW",
        background=PHOTO_BACKGROUND,  # transparent pixels on white, as for every photo model imgcls trains
    )


def check_same_labels(repository: ModelRepository, name: str, labels: tuple[str, ...]) -> None:
    try:
        versions = repository.versions(name)
    except ModelNotFound:
        return
    if versions and repository.manifest(name, versions[-1]).labels != labels:
        raise InvalidHyperparameter(
            f"{name} v{versions[-1]} classifies other labels than ImageNet's: import under another --name"
        )
