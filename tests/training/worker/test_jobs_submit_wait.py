"""``imgcls jobs submit --wait`` with a real worker: a folder of images goes up, the job trains, and the
command follows it to the published model (the stack: tests/training/worker/conftest.py)."""

import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from service.cli import cli
from tests.training.worker.conftest import FAST, Stack


def test_submit_and_wait_for_the_published_model(
    stack_factory: Callable[..., Stack], dataset_zip: bytes, tmp_path: Path
) -> None:
    stack = stack_factory()
    folder = tmp_path / "shoes"
    zipfile.ZipFile(io.BytesIO(dataset_zip)).extractall(folder)  # the ImageFolder tree the command zips again
    options = [
        "--epochs",
        str(FAST["epochs"]),
        "--batch-size",
        str(FAST["batch_size"]),
        "--learning-rate",
        str(FAST["learning_rate"]),
    ]
    args = ["jobs", "submit", str(folder), "--base", "fashion-mnist", *options, "--metadata", "team=shoes"]
    result = CliRunner().invoke(cli, [*args, "--wait", "--url", stack.url])
    assert result.exit_code == 0, f"{result.output}\n{stack.logs()}"

    job_id = re.search(r"^job (ft_\w+) queued: fashion-mnist v1, 1 trial$", result.stdout, re.MULTILINE)
    assert job_id is not None, result.stdout
    job = stack.job(job_id[1])
    model = job["result"]["model"]
    assert job["status"] == "succeeded" and model == f"fashion-mnist-{job['dataset']}"
    assert result.stdout.splitlines()[-1].startswith(f"job {job['id']} succeeded: published {model} v1")
    assert re.search(r"2/2 \[", result.stderr), result.stderr  # the bar reached every epoch
    assert "val_accuracy=" in result.stderr and "running" in result.stderr and "trial 0 succeeded" in result.stderr

    listed = CliRunner().invoke(cli, ["jobs", "--url", stack.url, "list", "--metadata", "team=shoes"])
    assert listed.exit_code == 0, listed.output
    assert re.search(rf"^{job['id']}  succeeded .* published {model} v1", listed.stdout, re.MULTILINE), listed.stdout
