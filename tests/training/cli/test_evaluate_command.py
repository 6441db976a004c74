"""``imgcls evaluate``: an imported ONNX version on a labelled folder, measured as the import measured it; the
evaluation report as files (``--report DIR``) and attached to a version without one (``--attach-report``)."""

import csv
import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from service.cli import cli
from service.evaluation.report import decode_report
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


def test_report_writes_the_evaluation_report_as_files(trained_repository: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(trained_repository, tmp_path / "models"))
    folder = tmp_path / "report" / "v1"  # made when missing
    command = ["evaluate", "fashion-mnist", "1", "--model-root", str(root), "--limit", "200", "--report", str(folder)]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["report_files"] == str(folder)
    report = decode_report((folder / "report.json").read_bytes())
    assert (report.dataset, report.images) == ("fashion-mnist", 200)
    assert report.accuracy == summary["accuracy"] and report.ece == summary["ece"]
    assert report.confusion_matrix == tuple(map(tuple, summary["confusion_matrix"]))
    assert {row.label: row.recall for row in report.classes} == summary["per_class_accuracy"]
    with (folder / "classes.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["label"] for row in rows] == list(report.labels)
    assert sum(int(row["support"]) for row in rows) == 200 and float(rows[0]["f1"]) == report.classes[0].f1
    for name in ("confusion_matrix.png", "reliability.png", "thresholds.png"):
        with Image.open(folder / name) as picture:
            picture.verify()  # a whole, valid PNG
            assert picture.format == "PNG" and min(picture.size) > 300, name
    assert sorted(p.name for p in folder.iterdir()) == [
        "classes.csv", "confusion_matrix.png", "reliability.png", "report.json", "thresholds.png"
    ]  # fmt: skip

    attach = CliRunner().invoke(cli, ["evaluate", "fashion-mnist", "1", "--model-root", str(root), "--attach-report"])
    assert attach.exit_code == 1
    assert "fashion-mnist v1 was published with its evaluation report" in attach.output
    assert not (root / "fashion-mnist" / "reports").exists()


def test_attach_report_gives_a_version_without_one_its_report(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    root = tmp_path / "models"
    photos = labelled_folder(tmp_path / "photos", per_label=2)
    repository = ModelRepository(root)
    model = onnx_files.fixed_batch
    import_onnx(repository, model, name="b", labels=LABELS, options=ImportOptions(), source="f", command="t")
    command = ["evaluate", "b", "1", "--model-root", str(root), "--dataset", f"folder:{photos}", "--attach-report"]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["attached_report"] == str(root / "b" / "reports" / "1.json")
    report, attached = repository.report("b", 1)
    assert attached and report.images == 6 and report.accuracy == summary["accuracy"]
    assert report.dataset == f"folder:{photos}"
