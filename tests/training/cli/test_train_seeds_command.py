"""``imgcls train --seeds``: one run per seed, the spread as a table and seeds.json, the median run published."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.repository import ModelRepository
from tests.training.cli.test_train_command import SMALL
from tests.training.conftest import FASHION_MNIST


def test_seeds_train_each_report_the_spread_and_publish_the_median(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGCLS_MODEL_ROOT", str(tmp_path / "models"))
    monkeypatch.setenv("IMGCLS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("IMGCLS_FASHION_MNIST_DIR", str(FASHION_MNIST))
    group = tmp_path / "group"
    args = ["train", *SMALL, "--threads", "1", "--quiet", "--seeds", "0,1,2", "--output-dir", str(group)]
    result = CliRunner().invoke(cli, [*args, "--publish-median"])
    assert result.exit_code == 0, result.output

    summary = json.loads((group / "seeds.json").read_text())
    assert json.loads(result.stdout.strip().splitlines()[-1])["spread"] == summary["spread"]
    assert [row["seed"] for row in summary["runs"]] == [0, 1, 2]
    assert [Path(row["run_dir"]).name for row in summary["runs"]] == ["seed-0", "seed-1", "seed-2"]
    accuracies = [row["test_accuracy"] for row in summary["runs"]]
    assert len(set(accuracies)) > 1  # the seeds do differ
    mean = sum(accuracies) / 3
    std = (sum((a - mean) ** 2 for a in accuracies) / 2) ** 0.5
    assert summary["spread"]["test_accuracy"] == pytest.approx({"mean": mean, "std": std}, abs=1e-5)
    assert "ece" in summary["spread"] and "seed" not in summary["config"]
    assert f"{mean:.4f} ± {std:.4f}" in result.stderr

    median_seed = sorted(summary["runs"], key=lambda row: row["test_accuracy"])[1]["seed"]
    assert summary["published"]["seed"] == median_seed
    manifest = ModelRepository(tmp_path / "models").manifest("fashion-mnist", summary["published"]["version"])
    assert manifest.lineage.config["seed"] == median_seed
    assert len(ModelRepository(tmp_path / "models").versions("fashion-mnist")) == 1  # only the median run

    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "already exists" in again.stderr
