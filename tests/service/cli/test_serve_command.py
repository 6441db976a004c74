import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.redis_server import free_port
from tests.service.api.conftest import png_bytes
from tests.service.api.server import wait_until_ready


def test_serve_runs_the_service_until_terminated(model_root: Path) -> None:
    port = free_port()
    env = {**os.environ, "IMGCLS_MODEL_ROOT": str(model_root), "IMGCLS_INTRA_OP_THREADS": "1"}
    command = [sys.executable, "-m", "service.cli", "serve", "--no-auth", "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process)
        metrics = httpx.get(f"{url}/metrics")
        assert metrics.status_code == 200
        assert "imgcls_model_info" in metrics.text  # aggregated over both worker processes
        for seed in range(8):  # a new connection each: both workers get some
            answer = httpx.post(f"{url}/v1/models/fashion-mnist/classify", files={"images": png_bytes(seed)})
            assert answer.status_code == 200
        assert predictions_counted(url, expected=8)  # each worker's tally reaches /metrics within a second
        workers = children(process.pid)
        assert len(workers) >= 2  # the two servers (and multiprocessing's resource tracker)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert all_gone(workers), "a worker outlived its supervisor"
    assert f"at {url}" in output
    assert "auth OFF" in output


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def all_gone(pids: list[int]) -> bool:
    """Every process ended (a zombie waiting for init counts as ended) within a few seconds."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not [pid for pid in pids if alive(pid)]:
            return True
        time.sleep(0.1)
    return False


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def predictions_counted(url: str, *, expected: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics").text
        if sum(float(n) for n in re.findall(r"^imgcls_predictions_total\{.*\} (\S+)$", text, re.M)) == expected:
            return True
        time.sleep(0.2)
    return False


def test_serve_refuses_auth_without_keys(model_root: Path) -> None:
    env = {**os.environ, "IMGCLS_MODEL_ROOT": str(model_root), "IMGCLS_AUTH_ENABLED": "true", "IMGCLS_API_KEYS": "[]"}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "imgcls api-key new" in result.stderr


def test_a_bad_setting_is_one_line_naming_the_variable(model_root: Path) -> None:
    env = {**os.environ, "IMGCLS_MODEL_ROOT": str(model_root), "IMGCLS_PORT": "eighty"}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--no-auth"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: invalid settings: IMGCLS_PORT: Input should be a valid integer, unable to parse string as an "
        "integer (got 'eighty')"
    )
