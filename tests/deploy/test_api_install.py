"""The api image's dependency set, proven without Docker: a fresh virtual environment with only the base
dependencies of pyproject.toml and its `cpu` extra (what the Dockerfile's api target installs) serves a
published model and classifies an image, and has no torch and no onnxruntime-gpu; the service's commands
run without importing the training package, as in the api image, which does not ship it."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_server import free_port
from tests.service.api.conftest import png_bytes
from tests.service.api.server import wait_until_ready
from tests.service.cli.test_imgcls import imgcls_without_training

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install '.[cpu]'`` into a new venv: about a minute, most of it from pip's cache."""
    venv = tmp_path_factory.mktemp("api-install") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", f"{ROOT}[cpu]"]
    subprocess.run(install, check=True, timeout=900, capture_output=True)
    return venv


@pytest.fixture
def served(api_venv: Path, trained_repository: Path, tmp_path: Path) -> Iterator[str]:
    models = shutil.copytree(trained_repository, tmp_path / "models")
    port = free_port()
    env = {**os.environ, "IMGCLS_MODEL_ROOT": str(models), "IMGCLS_PORT": str(port), "IMGCLS_INTRA_OP_THREADS": "1"}
    log = (tmp_path / "serve.log").open("wb")
    command = [str(api_venv / "bin" / "imgcls"), "serve", "--no-auth"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, log=tmp_path / "serve.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_api_dependencies_alone_serve_a_published_model(api_venv: Path, served: str) -> None:
    python = str(api_venv / "bin" / "python")
    missing = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert missing.returncode != 0 and "No module named 'torch'" in missing.stderr
    runtimes = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"], capture_output=True, text=True
    )
    installed = {line.split("==")[0].lower() for line in runtimes.stdout.splitlines()}
    assert "onnxruntime" in installed and "onnxruntime-gpu" not in installed, runtimes.stdout

    answer = httpx.post(
        f"{served}/v1/models/fashion-mnist/classify", content=png_bytes(), headers={"Content-Type": "image/png"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "fashion-mnist" and len(answer.json()["results"][0]["top"]) == 5


def test_training_commands_say_what_this_install_lacks(api_venv: Path) -> None:
    result = subprocess.run([str(api_venv / "bin" / "imgcls"), "train"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: imgcls train needs the training dependencies (torch is not installed): pip install "
        "'imgcls[train]'; this installation has the API's only (as the api image)"
    )


def test_the_service_commands_run_without_the_training_package(api_venv: Path, tmp_path: Path) -> None:
    python = str(api_venv / "bin" / "python")
    serve = imgcls_without_training("serve", "--help", python=python, cwd=tmp_path)
    assert serve.returncode == 0, serve.stderr
    assert "--workers" in serve.stdout
    assert serve.stdout.splitlines()[-1] == "imported: []"

    listing = imgcls_without_training("--help", python=python, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "\n  serve " in listing.stdout and "\n  fine-tune " not in listing.stdout
    assert "Training commands (train, evaluate, fine-tune, worker, ...) need pip install 'imgcls[train]'." in (
        " ".join(listing.stdout.split())
    )

    train = imgcls_without_training("train", python=python, cwd=tmp_path)
    assert train.returncode == 2
    assert train.stderr.strip() == (
        "error: no command 'train' here: this installation has the service's only (serve, classify, api-key, "
        "jobs, up); training's commands need pip install 'imgcls[train]'"
    )
