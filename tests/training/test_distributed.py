"""torchrun with two CPU processes (gloo): both train, rank 0 alone writes and publishes."""

import json
import os
import subprocess
import sys
from pathlib import Path

from service.repository import ModelRepository
from tests.training.conftest import FASHION_MNIST


def test_torchrun_two_processes_train_one_model(tmp_path: Path) -> None:
    env = {**os.environ, "IMGCLS_FASHION_MNIST_DIR": str(FASHION_MNIST), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "training.train",
        "--model",
        "lenet5",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--train-subset",
        "512",
        "--test-subset",
        "200",
        "--optimizer",
        "adam",
        "--learning-rate",
        "0.01",
        "--lr-policy",
        "fixed",
        "--threads",
        "1",
        "--quiet",
        "--output-dir",
        str(tmp_path / "run"),
        "--model-root",
        str(tmp_path / "models"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]  # written once, by rank 0
    assert all(row["processes"] == 2 for row in rows)
    assert rows[0]["step"] == 8  # 512 images / (32 per batch x 2 processes)
    summaries = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"status"')]
    assert [s["status"] for s in summaries] == ["completed"]  # one report, from rank 0
    assert ModelRepository(tmp_path / "models").versions("fashion-mnist") == [1]  # published once
