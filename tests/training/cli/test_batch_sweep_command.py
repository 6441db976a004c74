"""``imgcls batch-sweep`` through the click entry point, on digits (no files to read)."""

import json
from pathlib import Path

from click.testing import CliRunner

from service.cli import cli

TINY = ["--model", "lenet5", "--dataset", "digits", "--train-subset", "256", "--threads", "2"]


def test_batch_sweep_prints_a_table_and_one_json_line_per_size(tmp_path: Path) -> None:
    plot = tmp_path / "sweep.png"
    result = CliRunner().invoke(
        cli,
        ["batch-sweep", *TINY, "--batch-sizes", "16,24", "--warmup-steps", "1", "--steps", "2", "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["batch_size"] for row in rows] == [16, 24]
    for row in rows:
        assert row["status"] == "ok" and row["images_per_second"] > 0 and row["peak_memory_mib"] >= 0
        assert row["device"].startswith("cpu") and row["model"] == "lenet5"
    table = [line.split() for line in result.stderr.splitlines() if line and not line.startswith("#")]
    assert table[0][:3] == ["batch", "images/s", "ms/step"] and [t[0] for t in table[1:]] == ["16", "24"]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_batch_sweep_refuses_bad_values_with_exit_code_2() -> None:
    runner = CliRunner()
    for bad in ("16,x", "0,16", ","):
        result = runner.invoke(cli, ["batch-sweep", *TINY, "--batch-sizes", bad])
        assert result.exit_code == 2, bad
        assert "Invalid value for '--batch-sizes'" in result.output
    steps = runner.invoke(cli, ["batch-sweep", *TINY, "--steps", "0"])
    assert steps.exit_code == 2
    unknown = runner.invoke(cli, ["batch-sweep", *TINY, "--optimizer", "adamax"])
    assert unknown.exit_code == 2 and "unknown optimizer 'adamax' (known: sgd," in unknown.stderr


def test_batch_sweep_help_says_what_the_memory_number_means() -> None:
    result = CliRunner().invoke(cli, ["batch-sweep", "--help"])
    assert result.exit_code == 0
    assert "VmHWM" in result.output and "max_memory_allocated" in result.output
    assert "16,32,48,64,96,128,192,256,384,512" in result.output
