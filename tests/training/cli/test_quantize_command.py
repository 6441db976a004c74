"""``imgcls quantize`` through the click entry point, and the variant in ``imgcls models``."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli
from tests.training.conftest import FASHION_MNIST
from training.config import TrainConfig
from training.settings import TrainingSettings
from training.train import run


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding one lenet5 trained for a few seconds (fashion-mnist v1)."""
    root = tmp_path_factory.mktemp("quantize-cli")
    config = TrainConfig(
        model="lenet5",
        epochs=1,
        batch_size=64,
        train_subset=1024,
        test_subset=300,
        optimizer="adam",
        learning_rate=0.01,
        lr_policy="fixed",
        threads=2,
    )
    settings = TrainingSettings(model_root=root / "models", runs_dir=root / "runs", fashion_mnist_dir=FASHION_MNIST)
    run(config, settings=settings, output_dir=root / "run", progress=False, echo=False)
    return root / "models"


def imgcls(*args: str, model_root: Path) -> list[str]:
    return [*args, "--model-root", str(model_root)]


def test_quantize_prints_both_accuracies_and_models_shows_the_variant(model_root: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        imgcls(
            "quantize",
            "fashion-mnist",
            "--version",
            "production",
            "--calibration-images",
            "64",
            "--max-accuracy-drop",  # a model of a few seconds (about 0.6): its int8 drop varies with the CPU
            "0.05",  # 3.0 points on an AMD EPYC, under 2 on an Intel Xeon; 300 test images, 0.33 points each
            "--data-dir",
            str(FASHION_MNIST),
            model_root=model_root,
        ),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["name"], summary["version"], summary["test_images"]) == ("fashion-mnist", 1, 300)
    assert summary["fp32_test_accuracy"] - summary["int8_test_accuracy"] == pytest.approx(summary["accuracy_drop"])
    assert summary["accuracy_drop"] <= 0.05
    assert summary["variant"] == str(model_root / "fashion-mnist" / "1" / "model.int8.onnx")
    assert "64 calibration images" in summary["method"]

    listed = json.loads(runner.invoke(cli, imgcls("models", "list", "--json", model_root=model_root)).stdout)
    assert listed["variants"] == {"int8": summary["int8_test_accuracy"]}
    table = runner.invoke(cli, imgcls("models", "list", model_root=model_root)).stdout.splitlines()
    assert "VARIANTS" in table[0] and " int8 " in table[1]
    shown = json.loads(runner.invoke(cli, imgcls("models", "show", "fashion-mnist", model_root=model_root)).stdout)
    assert shown["variants"]["int8"]["file"] == "model.int8.onnx"
    assert shown["variants"]["int8"]["metrics"]["test_accuracy"] == summary["int8_test_accuracy"]


def test_quantize_refuses_bad_options_and_unknown_models(model_root: Path) -> None:
    runner = CliRunner()
    negative = runner.invoke(
        cli, imgcls("quantize", "fashion-mnist", "--max-accuracy-drop", "-0.1", model_root=model_root)
    )
    assert negative.exit_code == 2 and "--max-accuracy-drop" in negative.output
    none = runner.invoke(cli, imgcls("quantize", "fashion-mnist", "--calibration-images", "0", model_root=model_root))
    assert none.exit_code == 2 and "--calibration-images" in none.output
    missing = runner.invoke(cli, imgcls("quantize", "nope", model_root=model_root))
    assert missing.exit_code == 1
    assert missing.stderr.strip() == (
        "error: ModelNotFound: no model named 'nope' in the repository (known: fashion-mnist)"
    )
    folders = runner.invoke(
        cli, imgcls("quantize", "fashion-mnist", "--evaluate-on", str(model_root), model_root=model_root)
    )
    assert folders.exit_code == 2 and "--calibrate-on and --evaluate-on are for imported versions" in folders.stderr
