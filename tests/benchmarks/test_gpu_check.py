import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="a GPU machine runs the check itself, not its refusal")
def test_on_a_machine_without_a_gpu_it_exits_at_once_and_says_why(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(SCRIPT.parents[1])}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--results-dir", str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "no NVIDIA GPU on this machine" in done.stderr and "nothing was measured" in done.stderr
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no result file: nothing to report
    assert time.perf_counter() - started < 30  # at once: no model is made, nothing trains
