"""``imgcls evaluate`` on an imported ONNX version: a labelled folder, measured as the import measured it."""

import json
from pathlib import Path

from click.testing import CliRunner

from service.cli import cli
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.repository import ModelRepository
from tests.service.importing.onnx_models import LABELS, OnnxFiles
from tests.service.importing.test_publish import labelled_folder


def test_an_imported_version_is_evaluated_on_its_folder(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    root = tmp_path / "models"
    photos = labelled_folder(tmp_path / "photos", per_label=3)
    repository = ModelRepository(root)
    for model in (onnx_files.nhwc_softmax, onnx_files.fixed_batch):
        import_onnx(
            repository, model, name="brought", labels=LABELS, options=ImportOptions(), source=model.name,
            command="t", evaluate_on=photos,
        )  # fmt: skip
    runner = CliRunner()
    for version in (1, 2):
        manifest = repository.manifest("brought", version)
        result = runner.invoke(cli, ["evaluate", "brought", str(version), "--model-root", str(root)])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["dataset"] == f"folder:{photos.resolve()}" and report["images"] == 9
        assert report["accuracy"] == manifest.metrics["test_accuracy"] and report["ece"] == manifest.metrics["ece"]
        assert sum(map(sum, report["confusion_matrix"])) == 9
        assert report["per_class_accuracy"] == {label: manifest.metrics[f"accuracy/{label}"] for label in LABELS}


def test_an_imported_version_without_a_folder_says_to_give_one(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    root = tmp_path / "models"
    model = onnx_files.fixed_batch
    import_onnx(ModelRepository(root), model, name="b", labels=LABELS, options=ImportOptions(), source="f", command="t")
    result = CliRunner().invoke(cli, ["evaluate", "b", "--model-root", str(root)])
    assert result.exit_code == 1
    assert "was imported, not trained here, and has no dataset of its own: give --dataset folder:PATH" in result.output
