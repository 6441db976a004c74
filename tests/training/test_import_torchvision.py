"""What an imported torchvision version declares: labels and preprocessing from torchvision's weights enum.

The whole import (export, parity, publish) runs through the command, in
tests/training/cli/test_import_torchvision_command.py.
"""

from pathlib import Path

import pytest
from torchvision.models import get_model_weights

from service.repository import Lineage, Manifest, ModelRepository, Preprocessing
from service.repository.manifest import TensorSpec
from tests.training.torchvision_files import torchvision_file
from training.errors import InvalidHyperparameter, UnknownModel
from training.import_torchvision import IMPORTABLE, import_torchvision, preprocessing_of, weights_entry
from training.models import model_names


def test_every_importable_architecture_is_in_the_registry_with_1000_unique_imagenet_labels() -> None:
    assert set(IMPORTABLE) <= set(model_names())
    for architecture in IMPORTABLE:
        categories = weights_entry(architecture, "renamed.pth").meta["categories"]
        assert len(categories) == 1000 and len(set(categories)) == 1000
        assert {"crane", "crane bird", "maillot", "maillot tank suit"} <= set(categories)


@pytest.mark.parametrize(
    ("file_name", "resize", "interpolation"),
    [
        ("resnet50-0676ba61.pth", 256, "bilinear"),  # IMAGENET1K_V1
        ("resnet50-11ad3fa6.pth", 232, "bilinear"),  # IMAGENET1K_V2, the default
        ("my-resnet50.pth", 232, "bilinear"),  # renamed: the default entry's
    ],
)
def test_the_file_name_picks_the_weights_entry_and_its_preprocessing(
    file_name: str, resize: int, interpolation: str
) -> None:
    preprocessing = preprocessing_of(weights_entry("resnet50", file_name))
    assert (preprocessing.resize, preprocessing.interpolation, preprocessing.input_size) == (
        resize,
        interpolation,
        (224, 224),
    )
    assert preprocessing.mean == (0.485, 0.456, 0.406) and preprocessing.std == (0.229, 0.224, 0.225)
    assert (preprocessing.color_mode, preprocessing.layout) == ("RGB", "NCHW")


def test_efficientnet_b0_is_bicubic_as_torchvision_evaluates_it() -> None:
    entry = weights_entry("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth")
    assert entry == get_model_weights("efficientnet_b0").IMAGENET1K_V1
    assert preprocessing_of(entry).interpolation == "bicubic"


def test_unknown_architectures_and_bad_names_fail_before_reading_the_file(tmp_path: Path) -> None:
    absent = tmp_path / "absent.pth"
    with pytest.raises(UnknownModel, match=r"lenet5 \(known: convnext_tiny, efficientnet_b0, "):
        import_torchvision("lenet5", absent, repository_root=tmp_path, command="test")
    with pytest.raises(InvalidHyperparameter, match="invalid model name 'Bad Name'"):
        import_torchvision("resnet18", absent, repository_root=tmp_path, command="test", name="Bad Name")
    assert ModelRepository(tmp_path).models() == []


def test_a_name_that_holds_other_labels_is_refused(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "models")
    (tmp_path / "model.onnx").write_bytes(b"onnx")  # publishing copies and hashes; it does not run the file
    other = Manifest(
        name="parts",
        architecture="resnet18",
        labels=("bolt", "nut"),
        input=TensorSpec(name="input", datatype="FP32", shape=(-1, 3, 224, 224)),
        output=TensorSpec(name="logits", datatype="FP32", shape=(-1, 2)),
        preprocessing=Preprocessing(color_mode="RGB", input_size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3),
        temperature=1.0,
        metrics={"test_accuracy": 1.0, "ece": 0.0, "ece_uncalibrated": 0.0},
        lineage=Lineage(dataset="folder:/parts", config={}),
        onnx_sha256="",
        weights_sha256=None,
        created_at="2026-12-03T00:00:00+00:00",
        code_version="test",
    )
    repository.publish(other, tmp_path / "model.onnx", None)
    weights = torchvision_file(tmp_path / "downloads", "mobilenet_v3_small")
    with pytest.raises(InvalidHyperparameter, match="parts v1 classifies other labels than ImageNet's"):
        import_torchvision(
            "mobilenet_v3_small", weights, repository_root=tmp_path / "models", command="test", name="parts"
        )
    assert repository.versions("parts") == [1]


def test_a_resnet_is_published_with_its_explain_graph(tmp_path: Path) -> None:
    weights = torchvision_file(tmp_path / "downloads", "resnet18")
    ref = import_torchvision("resnet18", weights, repository_root=tmp_path / "models", command="test")
    manifest = ModelRepository(tmp_path / "models").verify(ref.name, ref.version)  # explain.onnx's sha256 too
    assert manifest.explain is not None
    assert (manifest.explain.file, manifest.explain.pooling, manifest.explain.map_size) == (
        "explain.onnx",
        "average",
        (7, 7),
    )
    assert manifest.explain.max_abs_diff <= 1e-3
