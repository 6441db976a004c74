"""``imgcls train``, ``evaluate``, ``export``, ``publish`` and ``models`` through the real entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from service.cli import cli
from tests.training.conftest import FASHION_MNIST
from training.cli.options import config_options, given_values

SMALL = [
    "--model",
    "lenet5",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--train-subset",
    "1024",
    "--test-subset",
    "300",
    "--optimizer",
    "adam",
    "--learning-rate",
    "0.01",
    "--lr-policy",
    "fixed",
    "--threads",
    "2",
]


def imgcls(*args: str | Path, root: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "IMGCLS_MODEL_ROOT": str(root / "models"),
        "IMGCLS_RUNS_DIR": str(root / "runs"),
        "IMGCLS_FASHION_MNIST_DIR": str(FASHION_MNIST),
    }
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("cli")
    (root / "recipe.yaml").write_text("epochs: 1\nlabel_smoothing: 0.05\nseed: 3\n")
    result = imgcls("train", "--config", root / "recipe.yaml", *SMALL, "--output-dir", root / "run", root=root)
    return root, result


def test_train_prints_config_json_lines_and_publishes(trained: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, result = trained
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["epoch"] == 1 and 0 < lines[0]["val_accuracy"] <= 1
    assert lines[-1]["status"] == "completed"
    assert lines[-1]["published"] == {"name": "fashion-mnist", "version": 1}
    assert lines[-1]["best_epoch"] == lines[-1]["metrics"]["best_epoch"] == 1  # the epoch exported
    assert "early_stop" not in lines[-1]
    assert "label_smoothing: 0.05" in result.stderr  # the file's value, in the printed resolved config
    assert "seed: 3" in (root / "run" / "config.yaml").read_text()
    assert "test accuracy" in result.stderr


def test_models_list_show_promote(trained: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = trained
    listing = imgcls("models", "list", root=root)
    assert listing.returncode == 0
    assert "fashion-mnist" in listing.stdout and "production" in listing.stdout
    shown = json.loads(imgcls("models", "show", "fashion-mnist", "production", root=root).stdout)
    assert shown["version"] == 1 and shown["labels"][9] == "Ankle boot"
    promoted = imgcls("models", "promote", "fashion-mnist", "1", "--alias", "staging", root=root)
    assert promoted.stdout.strip() == "fashion-mnist: staging -> v1"
    missing = imgcls("models", "show", "nope", root=root)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == "error: ModelNotFound: no model named 'nope' in the repository (known: fashion-mnist)"
    )


def test_evaluate_runs_the_onnx_file(trained: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, result = trained
    report = imgcls("evaluate", "fashion-mnist", "--limit", "300", "--confusion-png", root / "cm.png", root=root)
    assert report.returncode == 0, report.stderr
    evaluation = json.loads(report.stdout)
    trained_accuracy = json.loads(result.stdout.splitlines()[-1])["metrics"]["test_accuracy"]
    assert evaluation["accuracy"] == pytest.approx(trained_accuracy, abs=1e-9)  # onnxruntime agrees with torch
    assert len(evaluation["per_class_accuracy"]) == 10
    assert sum(map(sum, evaluation["confusion_matrix"])) == 300
    assert (root / "cm.png").stat().st_size > 0


def test_export_and_publish_a_run(trained: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = trained
    exported = imgcls("export", root / "run", "-o", root / "again.onnx", root=root)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["max_abs_diff"] < 1e-4
    published = imgcls("publish", root / "run", "--name", "copy", root=root)
    assert json.loads(published.stdout)["name"] == "copy"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["train", "--model", "resnet9"], 2, "error: UnknownModel: resnet9 (known: cnn, cnn_wide, convnext_tiny, "),
        (["train", "--optimizer", "nesterov", "--optimizer-option", "momentum=0"], 2, "Nesterov without momentum"),
        (["train", "--learning-rate", "-1"], 2, "learning_rate: Input should be greater than 0"),
        (["train", "--lr-policy", "poly", "--lr-policy-option", "power=-1"], 2, "power"),
        (["train", "--epochs", "many"], 2, "'many' is not a valid integer"),
        (["train", "--dataset", "cifar"], 2, "UnknownDataset: cifar (known:"),
        (["train", "--augment", "mixup"], 2, "'mixup' is not one of 'none', 'crop-flip', 'photo'"),
        (["train", "--dataset", "folder:/nonexistent"], 1, "UnusableData"),
        (["train", "--resume", "/nonexistent"], 2, "is not a run folder"),
        (["train", "--ema", "1"], 2, "ema: Input should be less than 1"),
        (["train", "--ema", "0"], 2, "ema: Input should be greater than 0"),
        (["train", "--tta", "rotate"], 2, "tta: Input should be 'none' or 'flip'"),
        (["train", "--seeds", "0,1,0"], 2, "seed 0 given twice"),
        (["train", "--seeds", "0,x"], 2, "'x' is not a non-negative integer"),
        (["train", "--seeds", "4"], 2, "at least two seeds"),
        (["train", "--seeds", "0,1", "--seed", "2"], 2, "--seeds gives the seeds"),
        (["train", "--publish-median"], 2, "--publish-median goes with --seeds"),
        (["nonsense"], 2, "No such command 'nonsense'"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, message: str
) -> None:
    monkeypatch.setenv("IMGCLS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("IMGCLS_MODEL_ROOT", str(tmp_path / "models"))
    result = CliRunner().invoke(cli, args)  # in-process: the same code path without a torch import per case
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_missing_dataset_files_say_how_to_get_them(tmp_path: Path) -> None:
    result = imgcls("train", "--data-dir", tmp_path / "empty", root=tmp_path)
    assert result.returncode == 1
    assert "dataset-fashion-mnist" in result.stderr and "IMGCLS_FASHION_MNIST_DIR" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_explains_every_option(tmp_path: Path) -> None:
    result = imgcls("train", "--help", root=tmp_path)
    assert result.returncode == 0
    for option in ("--learning-rate", "--optimizer-option", "--lr-policy", "--early-stopping-patience", "--resume"):
        assert option in result.stdout


def test_augment_takes_a_name_and_alone_means_crop_flip() -> None:
    @click.command()
    @config_options()
    def show(**options: object) -> None:
        click.echo(given_values(options).get("augment", "unset"))

    assert CliRunner().invoke(show, ["--augment", "--epochs", "1"]).output.strip() == "crop-flip"  # the old flag
    assert CliRunner().invoke(show, ["--augment", "photo+randaugment"]).output.strip() == "photo+randaugment"
    assert CliRunner().invoke(show, []).output.strip() == "unset"  # the dataset decides
