"""Every ONNX file, label list and option the import must refuse: one clear error naming its check, and
nothing published (no version, no staging folder left behind)."""

import os
import re
from collections.abc import Callable
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from service.importing.checks import supported_opset
from service.importing.errors import ImportRejected, InvalidImportOptions, UnsafeExternalData
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.repository import ModelRepository
from tests.service.importing import onnx_models
from tests.service.importing.onnx_models import LABELS, OnnxFiles

SMALL = ImportOptions(resize=8)  # the node-by-node models take 8x8 images


def refused(tmp_path: Path, model: Path, *, labels: tuple[str, ...] = LABELS, options: ImportOptions = SMALL) -> str:
    """The check ``import_onnx`` names when it refuses ``model``, once it is certain nothing was published."""
    repository = ModelRepository(tmp_path / "models")
    with pytest.raises(ImportRejected) as caught:
        import_onnx(repository, model, name="brought", labels=labels, options=options, source=model.name, command="t")
    assert repository.models() == [] or repository.versions("brought") == []
    leftovers = [p.name for p in (tmp_path / "models").rglob("*")] if (tmp_path / "models").exists() else []
    assert [name for name in leftovers if name.startswith(".staging")] == []
    assert str(caught.value).startswith(f"{caught.value.check}: ")
    return caught.value.check


def not_onnx(path: Path) -> Path:
    path.write_bytes(b"this is a text file, not a model\n" * 10)
    return path


def truncated(path: Path) -> Path:
    whole = onnx_models.graph_model(path).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


BAD_MODELS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "not ONNX": (not_onnx, "onnx file"),
    "truncated": (truncated, "onnx file"),
    "two inputs": (lambda p: onnx_models.graph_model(p, extra_input=True), "input"),
    "3-D input": (lambda p: onnx_models.graph_model(p, input_shape=["N", 3, 8]), "input"),
    "no channel axis": (lambda p: onnx_models.graph_model(p, input_shape=["N", 5, 8, 8]), "input"),
    "fixed batch of 4": (lambda p: onnx_models.graph_model(p, input_shape=[4, 3, 8, 8]), "input"),
    "output width 4 for 3 labels": (lambda p: onnx_models.graph_model(p, classes=4), "output"),
    "unknown operator": (lambda p: onnx_models.graph_model(p, head_op=("", "FancyMatMul")), "onnx checker"),
    "custom domain": (lambda p: onnx_models.graph_model(p, head_op=("com.example", "MatMul")), "domains"),
    "opset newer than onnxruntime": (lambda p: onnx_models.graph_model(p, opset=supported_opset("") + 1), "opset"),
    "trial inference fails": (lambda p: onnx_models.graph_model(p, reshape_to=2), "trial inference"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_a_bad_model_is_refused_naming_its_check(tmp_path: Path, case: str) -> None:
    make, check = BAD_MODELS[case]
    assert refused(tmp_path, make(tmp_path / "model.onnx")) == check


def test_the_supported_opset_is_the_one_onnxruntime_loads() -> None:
    newest = supported_opset("")
    assert newest >= 17
    ort.InferenceSession(onnx_models.graph_model_bytes(opset=newest))
    with pytest.raises(Exception, match=r"[Oo]pset"):
        ort.InferenceSession(onnx_models.graph_model_bytes(opset=newest + 1))


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/weights.bin", "..", ".hidden.bin"])
def test_external_data_outside_the_models_folder_is_refused_before_it_is_read(tmp_path: Path, location: str) -> None:
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "sub").mkdir()
    onnx_models.save_external_weights(folder / "sub" / "model.onnx", "weights.bin")  # would fit, if it were read
    model = onnx_models.external_data_model(folder / "model.onnx", location)
    with pytest.raises(UnsafeExternalData, match="plain file name"):
        import_onnx(
            ModelRepository(tmp_path / "models"), model, name="x", labels=LABELS, options=SMALL, source="m", command="t"
        )
    assert not (tmp_path / "models").exists() or ModelRepository(tmp_path / "models").models() == []


def test_external_data_through_a_link_or_missing_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    onnx_models.save_external_weights(secret, "secret.bin")
    folder = tmp_path / "upload"
    folder.mkdir()
    os.symlink(secret, folder / "weights.bin")
    linked = onnx_models.external_data_model(folder / "model.onnx", "weights.bin")
    assert refused(tmp_path, linked) == "external data"
    missing = onnx_models.external_data_model(folder / "other.onnx", "absent.bin")
    assert refused(tmp_path, missing) == "external data"


def test_external_data_beside_the_model_is_read_in_and_published_as_one_file(tmp_path: Path) -> None:
    folder = tmp_path / "upload"
    folder.mkdir()
    model = onnx_models.external_data_model(folder / "model.onnx", "weights.bin")
    onnx_models.save_external_weights(model, "weights.bin")
    repository = ModelRepository(tmp_path / "models")
    report = import_onnx(repository, model, name="ext", labels=LABELS, options=SMALL, source="model.onnx", command="t")
    published = repository.path("ext", report.manifest.version)
    assert sorted(p.name for p in published.iterdir()) == ["manifest.json", "model.onnx"]
    proto = onnx.load_model(published / "model.onnx", load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    assert report.manifest.lineage.config["external_data"] is True


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (("cat", "dog", "cat"), "duplicate labels: 'cat' (labels 1 and 3)"),
        (("cat", "", "fish"), "label 2 is empty"),
        (("cat", "  ", "fish"), "label 2 is empty"),
        (("cat",), "at least two"),
    ],
)
def test_bad_labels_are_refused(tmp_path: Path, labels: tuple[str, ...], message: str) -> None:
    model = onnx_models.graph_model(tmp_path / "model.onnx")
    with pytest.raises(ImportRejected, match=re.escape(message)):
        import_onnx(
            ModelRepository(tmp_path / "models"), model, name="x", labels=labels, options=SMALL, source="m", command="t"
        )


@pytest.mark.parametrize(
    ("options", "check"),
    [
        (ImportOptions(resize=8, layout="NHWC"), "input"),  # channels 8 on axis 3
        (ImportOptions(resize=8, input_size=16), "input size"),  # the model's 8x8 is fixed
        (ImportOptions(resize=4), "resize"),  # smaller than the crop
        (ImportOptions(resize=8, color="L"), "color"),  # the model takes 3 channels
        (ImportOptions(resize=8, mean=(0.5,), std=(0.5,)), "preprocessing"),  # one value for 3 channels
        (ImportOptions(resize=8, output="probabilities"), "trial inference"),  # its rows do not sum to 1
    ],
)
def test_options_that_contradict_the_model_are_refused(tmp_path: Path, options: ImportOptions, check: str) -> None:
    assert refused(tmp_path, onnx_models.graph_model(tmp_path / "model.onnx"), options=options) == check


def test_a_dynamic_input_size_must_be_given(tmp_path: Path) -> None:
    model = onnx_models.graph_model(tmp_path / "model.onnx", input_shape=["N", 3, "H", "W"])
    with pytest.raises(InvalidImportOptions, match="--input-size"):
        import_onnx(
            ModelRepository(tmp_path / "m"),
            model,
            name="x",
            labels=LABELS,
            options=ImportOptions(),
            source="m",
            command="t",
        )
    report = import_onnx(
        ModelRepository(tmp_path / "m"),
        model,
        name="x",
        labels=LABELS,
        options=ImportOptions(input_size=24),
        source="m",
        command="t",
    )
    assert report.manifest.preprocessing.input_size == (24, 24) and report.manifest.preprocessing.resize == 27


def test_calibrating_a_model_that_outputs_probabilities_is_refused(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    with pytest.raises(InvalidImportOptions, match="temperature scaling needs logits"):
        import_onnx(
            ModelRepository(tmp_path / "m"),
            onnx_files.nhwc_softmax,
            name="x",
            labels=LABELS,
            options=ImportOptions(),
            source="m",
            command="t",
            calibrate_on=tmp_path,
        )
