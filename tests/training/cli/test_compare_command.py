"""``imgcls compare`` through the click entry point, on digits (no files to read)."""

import json
from pathlib import Path

from click.testing import CliRunner

from service.cli import cli

TINY = [
    "--model",
    "lenet5",
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--train-subset",
    "256",
    "--test-subset",
    "200",
    "--threads",
    "2",
]


def env(root: Path) -> dict[str, str]:
    return {"IMGCLS_MODEL_ROOT": str(root / "models"), "IMGCLS_RUNS_DIR": str(root / "runs")}


def test_compare_two_optimizers(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = CliRunner(env=env(tmp_path)).invoke(
        cli,
        [
            "compare",
            "--optimizers",
            "sgd,adam",
            "--learning-rates",
            "adam=0.003",
            "--lr-policy",
            "fixed",
            *TINY,
            "--output-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["variant"], r["learning_rate"], r["status"]) for r in rows] == [
        ("sgd", 0.1, "completed"),
        ("adam", 0.003, "completed"),
    ]
    assert all(0 <= r["test_accuracy"] <= 1 and 0 <= r["ece"] <= 1 for r in rows)
    assert "[1/2] sgd" in result.stderr and "| variant | optimizer |" in result.stderr
    for name in ("comparison.png", "comparison.md", "comparison.json", "sgd/metrics.jsonl", "adam/model.onnx"):
        assert (out / name).is_file(), name
    assert not (tmp_path / "models").exists()  # never published


def test_compare_refuses_bad_values_with_exit_code_2(tmp_path: Path) -> None:
    runner = CliRunner(env=env(tmp_path))
    out = tmp_path / "cmp"
    cases = [
        (["--optimizers", "sgd,adam", "--learning-rates", "adam=abc"], "Invalid value for '--learning-rates'"),
        (["--optimizers", "sgd,adam", "--batch-sizes", "sgd=0"], "Invalid value for '--batch-sizes'"),
        (["--optimizers", "sgd,adamax"], "error: UnknownOptimizer: adamax (known: adadelta"),
        (["--policies", "fixed,warm"], "error: UnknownPolicy: warm"),
        ([], "give exactly one of --optimizers and --policies"),
        (["--optimizers", "sgd,momentum", "--optimizer-option", "momentum=0.9"], "NAME.KEY=VALUE"),
        (["--optimizers", "sgd,adam", "--optimizer", "adam"], "--optimizer does not apply when comparing"),
        (
            ["--optimizers", "sgd,adam", "--auto-lr", "--learning-rate", "0.1"],
            "--auto-lr chooses each optimizer's rate",
        ),
        (["--policies", "fixed,cosine", "--auto-lr"], "--auto-lr picks a rate per optimizer"),
        (["--optimizers", "sgd", "--auto-lr", "--range-test-steps", "3"], "Invalid value for '--range-test-steps'"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, ["compare", *args, *TINY, "--output-dir", str(out)])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert not out.exists()  # nothing trained, nothing written
    out.mkdir()
    taken = runner.invoke(cli, ["compare", "--optimizers", "sgd,adam", *TINY, "--output-dir", str(out)])
    assert taken.exit_code == 1 and "error: OutputExists" in taken.stderr
