"""``imgcls models import``: run as a user runs it (a subprocess), its summary, and its refusals (exit 2)."""

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from service.cli import cli
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.repository import ModelRepository
from tests.service.importing.onnx_models import LABELS, OnnxFiles, graph_model
from tests.service.importing.test_publish import labelled_folder


def imgcls(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    command = [sys.executable, "-m", "service.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def labels_file(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(LABELS) + "\n")
    return path


def test_import_with_calibration_and_evaluation_prints_what_it_published(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    root = tmp_path / "models"
    result = imgcls(
        "models", "import", onnx_files.fixed_batch, "--name", "parts", "--labels", labels_file(tmp_path),
        "--resize", "40", "--calibrate-on", labelled_folder(tmp_path / "cal"),
        "--evaluate-on", labelled_folder(tmp_path / "eval", per_label=2), "--model-root", root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "published parts v1 from fixed.onnx"
    assert lines[1].startswith("checks passed: onnx file, external data, domains, opset, onnx checker")
    assert lines[2] == "batch: one image at a time (fixed batch of 1)"
    assert lines[3] == "input: pixels [1, 3, 32, 32] NCHW RGB, resize 40, crop 32x32, bilinear"
    assert lines[4].startswith("output: logits; calibration: temperature ") and "on 12 images (ECE " in lines[4]
    assert lines[5].startswith("metrics: accuracy ") and lines[5].endswith("on 6 images")
    manifest = ModelRepository(root).manifest("parts", 1)
    assert manifest.calibration == "temperature" and manifest.metrics["test_images"] == 6
    assert manifest.lineage.imported is not None
    assert manifest.lineage.imported.command.startswith("imgcls models import ")
    assert "--calibrate-on" in manifest.lineage.imported.command


def test_a_refused_import_is_one_line_and_exit_2(tmp_path: Path) -> None:
    model = graph_model(tmp_path / "two.onnx", extra_input=True)
    root = tmp_path / "models"
    result = imgcls("models", "import", model, "--name", "x", "--labels", labels_file(tmp_path), "--model-root", root)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: ImportRejected: input: the model takes 2 inputs ('x', 'mask'); an image classifier takes one"
    )
    assert not root.exists() or ModelRepository(root).models() == []
    bad_mean = imgcls("models", "import", model, "--name", "x", "--labels", labels_file(tmp_path), "--mean", "a,b")
    assert bad_mean.returncode == 2 and "comma-separated numbers" in bad_mean.stderr


def test_models_list_shows_no_figure_for_a_version_without_metrics(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    root = tmp_path / "models"
    repository = ModelRepository(root)
    import_onnx(
        repository, onnx_files.nhwc_softmax, name="k", labels=LABELS, options=ImportOptions(), source="k", command="t"
    )
    table = CliRunner().invoke(cli, ["models", "list", "--model-root", str(root)]).stdout.splitlines()
    assert table[1].split()[:6] == ["k", "1", "production", "onnx", "-", "-"]
