"""Int8 variants of imported versions: calibrated and tested on labelled folders, served by the same Predictor."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from service.cli import cli
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.inference.predictor import Predictor, model_file
from service.inference.providers import CPU
from service.repository import ModelRepository
from tests.service.importing.onnx_models import LABELS, OnnxFiles
from tests.service.importing.test_publish import labelled_folder
from training.errors import UnusableData
from training.quantize_imported import quantize_imported


@pytest.mark.parametrize("kind", ["nhwc_softmax", "fixed_batch"])
def test_an_imported_version_gets_an_int8_variant_it_serves(tmp_path: Path, onnx_files: OnnxFiles, kind: str) -> None:
    repository = ModelRepository(tmp_path / "models")
    model = getattr(onnx_files, kind)
    import_onnx(repository, model, name="b", labels=LABELS, options=ImportOptions(), source="m", command="t")
    photos = labelled_folder(tmp_path / "photos", per_label=3)
    report = quantize_imported(
        repository,
        repository.manifest("b", 1),
        calibrate_on=photos,
        evaluate_on=photos,
        calibration_images=6,
        max_accuracy_drop=1.0,
    )
    manifest = repository.verify("b", 1)
    metrics = manifest.variants["int8"].metrics
    assert metrics["calibration_images"] == 6 and metrics["test_images"] == 9
    assert report.int8_accuracy == metrics["test_accuracy"] and 0 <= report.agreement <= 1
    assert "6 calibration images from" in manifest.variants["int8"].method
    int8 = Predictor.for_manifest(
        model_file(repository.path("b", 1), manifest, "int8"), manifest, providers=[CPU], intra_op_threads=1
    )
    probabilities = int8.predict(np.zeros((3, 3, 32, 32), dtype=np.float32))
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.05)  # int8 softmax rounds a little


def test_quantizing_an_imported_version_needs_both_folders(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    root = tmp_path / "models"
    repository = ModelRepository(root)
    import_onnx(
        repository, onnx_files.fixed_batch, name="b", labels=LABELS, options=ImportOptions(), source="m", command="t"
    )
    with pytest.raises(UnusableData, match="give --calibrate-on FOLDER and --evaluate-on FOLDER"):
        quantize_imported(
            repository,
            repository.manifest("b", 1),
            calibrate_on=None,
            evaluate_on=None,
            calibration_images=8,
            max_accuracy_drop=0.01,
        )
    result = CliRunner().invoke(cli, ["quantize", "b", "--model-root", str(root)])
    assert result.exit_code == 1 and "has no dataset of its own" in result.output
    assert repository.verify("b", 1).variants == {}
