"""``imgcls lr-find`` through the click entry point, on digits (no files to read)."""

import json
from pathlib import Path

from click.testing import CliRunner

from service.cli import cli

TINY = ["--model", "cnn", "--dataset", "digits", "--batch-size", "32", "--train-subset", "512", "--threads", "2"]


def test_lr_find_prints_the_suggestion_and_draws_the_plot(tmp_path: Path) -> None:
    plot = tmp_path / "lr.png"
    result = CliRunner().invoke(
        cli, ["lr-find", *TINY, "--optimizer", "nesterov", "--steps", "60", "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert 1e-7 <= summary["suggested_learning_rate"] <= summary["last_rate"] <= 10
    assert summary["batches"] <= 60 and summary["plot"] == str(plot)
    assert f"suggested learning rate {summary['suggested_learning_rate']:.3g}" in result.stderr
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_lr_find_refuses_bad_values_with_exit_code_2(tmp_path: Path) -> None:
    runner = CliRunner()
    steps = runner.invoke(cli, ["lr-find", *TINY, "--steps", "1"])
    assert steps.exit_code == 2 and "--steps" in steps.output
    bounds = runner.invoke(cli, ["lr-find", *TINY, "--start-rate", "1", "--end-rate", "0.1"])
    assert bounds.exit_code == 2
    assert bounds.stderr.strip() == (
        "error: InvalidHyperparameter: the range test needs 0 < start rate < end rate, got start 1.0 and end 0.1"
    )
    lbfgs = runner.invoke(cli, ["lr-find", *TINY, "--optimizer", "lbfgs", "--plot", str(tmp_path / "x.png")])
    assert lbfgs.exit_code == 2
    assert lbfgs.stderr.startswith("error: RangeTestUnsupported: the LR range test does not work with lbfgs: L-BFGS")
    assert not (tmp_path / "x.png").exists()


def test_lr_find_help_documents_the_rule() -> None:
    result = CliRunner().invoke(cli, ["lr-find", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "steepest negative slope" in text and "default: 100" in text and "not with lbfgs" in text
