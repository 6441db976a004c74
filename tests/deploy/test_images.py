"""The images themselves, as scripts/containers.sh built them from the Dockerfile: run with buildah (chroot
isolation, the host's network), each process as the image would start it (its CMD, ENV and USER), the data
folder mounted from a temporary directory. The api image serves a published model and answers what the
same code answers outside a container; the worker image fine-tunes through an API run from the api image,
against a Redis of the test's own; the bad inputs of issue 19 say what is wrong.

Skipped unless IMGCLS_TEST_IMAGES is set: scripts/containers.sh builds the images, then runs this file with
it set (and IMGCLS_TIMINGS, a file the start-to-ready time is added to)."""

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from service.settings import ServiceSettings
from tests.conftest import FASHION_MNIST, MODEL
from tests.redis_server import redis_server
from tests.service.api.server import running_server

pytestmark = pytest.mark.skipif(
    not os.environ.get("IMGCLS_TEST_IMAGES"), reason="scripts/containers.sh builds the images and runs these tests"
)

API_IMAGE = "imgcls-api:local"
WORKER_IMAGE = "imgcls-worker:local"
UID = 10001
SCOPES = ["admin", "classify", "train"]
READY_TIMEOUT_S = 120  # a cold start on two busy cores; measured figures: docs/containers.md
CLASSES = {7: "sneaker", 8: "bag", 9: "ankle-boot"}  # the fine-tuning dataset's classes, renamed


def buildah(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"buildah {' '.join(args)}: {result.stderr}"
    return result.stdout


def image_config(image: str) -> dict[str, Any]:
    """The image's Docker configuration: Cmd, Env, User, ExposedPorts, Healthcheck, WorkingDir."""
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image))["Docker"]["config"]
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Container:
    """A working container of an image; ``run`` and ``start`` run a process in it (``buildah run``)."""

    name: str
    image: str
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, command: list[str], env: dict[str, str], volumes: list[str]) -> list[str]:
        options = [f"--env={key}={value}" for key, value in env.items()] + [f"--volume={v}" for v in volumes]
        return ["buildah", "run", "--isolation", "chroot", "--network", "host", *options, self.name, "--", *command]

    def run(
        self,
        command: list[str],
        env: dict[str, str] | None = None,
        volumes: list[str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` to its end; after ``timeout`` it is stopped and the test fails."""
        process = subprocess.Popen(
            self.command(command, env or {}, volumes or []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate(timeout=30)
            pytest.fail(f"{command} still ran after {timeout:g} s:\n{stdout[-2000:]}{stderr[-2000:]}")
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def start(self, command: list[str], env: dict[str, str], volumes: list[str], log_name: str) -> "Process":
        log = self.log_dir / f"{log_name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.command(command, env, volumes), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return Process(process, log)

    def stop(self) -> None:
        for process in self.processes:
            stop(process)


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def stop(process: subprocess.Popen[bytes], timeout: float = 45) -> int:
    """As ``docker stop`` does: SIGTERM to the container's first process (the one ``buildah run`` started),
        SIGKILL to all of them after ``timeout``. Returns the exit status buildah reports (1 for a process that
    ended on the signal, as ``imgcls serve`` does once it has shut down cleanly)."""
    if process.poll() is None:
        for pid in first_processes(process.pid):
            os.kill(pid, signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout=30)


def first_processes(group: int) -> list[int]:
    """The processes of a ``buildah run`` process group that buildah's chroot runner started."""
    found: dict[int, tuple[int, bytes]] = {}  # pid: (parent, argv[0])
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == group:
            found[int(proc.name)] = (int(fields[1]), argv0)
    return [pid for pid, (parent, _) in found.items() if found.get(parent, (0, b""))[1] == b"buildah-chroot-exec"]


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[Any]:
    """Makes working containers of images; stops their processes and removes them when the test ends."""
    made: list[Container] = []

    def make(image: str) -> Container:
        name = f"imgcls-test-{os.getpid()}-{len(made)}"
        buildah("from", "--quiet", "--pull-never", "--name", name, image)
        made.append(Container(name, image, tmp_path))
        return made[-1]

    try:
        yield make
    finally:
        for container in made:
            container.stop()
            subprocess.run(["buildah", "rm", container.name], capture_output=True, timeout=60)


@pytest.fixture
def data_dir(trained_repository: Path, tmp_path: Path) -> Path:
    """The folder mounted on /data: models/ holds the session's published model; owned by the image's user."""
    data = tmp_path / "data"
    shutil.copytree(trained_repository, data / "models")
    for sub in ("datasets", "runs"):
        (data / sub).mkdir()
    for path in [data, *data.rglob("*")]:
        os.chown(path, UID, UID)
    return data


@dataclass
class Key:
    value: str

    def settings(self) -> str:
        digest = hashlib.sha256(self.value.encode()).hexdigest()
        return json.dumps([{"name": "smoke", "sha256": digest, "scopes": SCOPES}])

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


@pytest.fixture
def key() -> Key:
    return Key(secrets.token_urlsafe(24))


def wait_ready(url: str, process: Process, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Seconds until ``url``/healthz/ready answers 200 (while the process runs)."""
    began = time.monotonic()
    while True:
        try:
            if httpx.get(f"{url}/healthz/ready", timeout=5).status_code == 200:
                return time.monotonic() - began
        except httpx.TransportError:
            pass
        alive = process.popen.poll() is None
        assert alive and time.monotonic() - began < timeout_s, f"not ready:\n{process.output()[-4000:]}"
        time.sleep(0.1)


def record(name: str, value: float) -> None:
    timings = os.environ.get("IMGCLS_TIMINGS")
    if timings:
        with open(timings, "a", encoding="utf-8") as out:
            out.write(f"{name} {value:.1f}\n")


def start_api(container: Container, key: Key, volumes: list[str], **env: str) -> tuple[str, Process]:
    port = free_port()
    settings = {"IMGCLS_PORT": str(port), "IMGCLS_API_KEYS": key.settings(), **env}
    process = container.start(image_config(container.image)["Cmd"], settings, volumes, f"api-{port}")
    return f"http://127.0.0.1:{port}", process


def png_files(images: list[Image.Image]) -> list[tuple[str, bytes]]:
    files = []
    for image in images:
        png = io.BytesIO()
        image.save(png, "PNG")
        files.append(("images", png.getvalue()))
    return files


def fashion_images(count: int) -> list[Image.Image]:
    from training.data import load_dataset

    fashion = load_dataset("fashion-mnist", fashion_mnist_dir=FASHION_MNIST)
    return [Image.fromarray(fashion.test_images[i, 0].numpy(), "L") for i in range(count)]


def top_labels(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [result["top"][0]["label"] for result in answer.json()["results"]]


# ---- the api image


def test_the_api_image_serves_a_mounted_repository(containers: Any, data_dir: Path, key: Key) -> None:
    api = containers(API_IMAGE)
    config = image_config(API_IMAGE)
    assert config["User"] == f"{UID}:{UID}" and "8000/tcp" in config["ExposedPorts"]
    url, process = start_api(api, key, [f"{data_dir}:/data"])
    record("api-start-to-ready-s", wait_ready(url, process))

    images = fashion_images(20)
    files = [("images", (f"{i}.png", data, "image/png")) for i, (_, data) in enumerate(png_files(images))]
    answer = httpx.post(f"{url}/v1/models/{MODEL}/classify", files=files, headers=key.headers(), timeout=30)
    served = top_labels(answer)
    assert answer.json()["model"] == MODEL
    # the same model and code outside the container give the same labels, and they are mostly right
    settings = ServiceSettings(model_root=data_dir / "models", auth_enabled=False, intra_op_threads=1)
    with running_server(settings) as here:
        assert top_labels(httpx.post(f"{here}/v1/models/{MODEL}/classify", files=files, timeout=30)) == served
        labels = httpx.get(f"{here}/v1/models/{MODEL}", timeout=10).json()["labels"]
    from training.data import load_dataset

    truth = [labels[int(i)] for i in load_dataset("fashion-mnist", fashion_mnist_dir=FASHION_MNIST).test_labels[:20]]
    assert sum(a == b for a, b in zip(served, truth, strict=True)) >= 12, (served, truth)
    assert httpx.post(f"{url}/v1/models/{MODEL}/classify", files=files[:1]).status_code == 401  # auth is on

    healthcheck = config["Healthcheck"]["Test"]
    assert healthcheck[0] == "CMD"
    result = api.run(healthcheck[1:], env={"IMGCLS_PORT": url.rsplit(":", 1)[1]})
    assert result.returncode == 0, result.stderr
    assert api.run(healthcheck[1:], env={"IMGCLS_PORT": str(free_port())}).returncode == 1

    assert api.run(["id", "-u"]).stdout.strip() == str(UID)
    assert serving_uids(url.rsplit(":", 1)[1]) == {UID}
    for module in ("torch", "training"):
        result = api.run(["python", "-c", f"import {module}"])
        assert result.returncode != 0 and f"No module named '{module}'" in result.stderr
    assert api.run(["sh", "-c", "command -v gcc || command -v cc || command -v c++"]).returncode != 0

    stop(process.popen)
    assert "Application shutdown complete" in process.output(), process.output()[-2000:]


def serving_uids(port: str) -> set[int]:
    """The user ids of this machine's processes running ``imgcls serve`` with IMGCLS_PORT=port."""
    uids = set()
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:
            continue
        if b"serve" in cmdline and f"IMGCLS_PORT={port}".encode() in environ and b"buildah" not in cmdline[0]:
            uids.add(int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1]))
    return uids


def test_without_a_model_volume_the_api_says_so_and_is_not_ready(containers: Any, key: Key) -> None:
    api = containers(API_IMAGE)
    url, process = start_api(api, key, [])
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            live = httpx.get(f"{url}/healthz/live", timeout=5)
            break
        except httpx.TransportError:
            assert process.popen.poll() is None, f"the API exited:\n{process.output()[-3000:]}"
            assert time.monotonic() < deadline, process.output()[-3000:]
            time.sleep(0.2)
    assert live.status_code == 200
    ready = httpx.get(f"{url}/healthz/ready", timeout=5)
    assert ready.status_code == 503 and "/data/models" in ready.json()["reason"], ready.text
    time.sleep(1)
    assert process.popen.poll() is None, "the API exited instead of waiting for a model"
    assert "no model could be loaded from /data/models" in process.output()


def test_a_read_only_repository_serves_and_promotion_says_why_not(containers: Any, data_dir: Path, key: Key) -> None:
    api = containers(API_IMAGE)
    url, process = start_api(api, key, [f"{data_dir / 'models'}:/data/models:ro"])
    wait_ready(url, process)
    files = [("images", ("0.png", png_files(fashion_images(1))[0][1], "image/png"))]
    assert httpx.post(f"{url}/v1/models/{MODEL}/classify", files=files, headers=key.headers()).status_code == 200
    answer = httpx.post(
        f"{url}/v1/models/{MODEL}/promote",
        json={"version": 2, "alias": "production"},
        headers=key.headers(),
        timeout=30,
    )
    assert answer.status_code == 409, answer.text
    assert "the model repository /data/models is read-only" in answer.json()["detail"], answer.text
    assert process.popen.poll() is None


# ---- the worker image


def dataset_zip() -> bytes:
    """ImageFolder layout: 30 PNG files of each of three Fashion-MNIST classes, renamed."""
    from training.data import load_dataset

    fashion = load_dataset("fashion-mnist", fashion_mnist_dir=FASHION_MNIST)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for fashion_class, name in CLASSES.items():
            for index in (fashion.train_labels == fashion_class).nonzero().flatten()[:30].tolist():
                png = io.BytesIO()
                Image.fromarray(fashion.train_images[index, 0].numpy(), "L").save(png, "PNG")
                archive.writestr(f"{name}/{index}.png", png.getvalue())
    return buffer.getvalue()


def test_the_worker_image_fine_tunes_through_the_api_image(
    containers: Any, data_dir: Path, key: Key, tmp_path: Path
) -> None:
    with ExitStack() as cleanup:
        (tmp_path / "redis").mkdir()
        redis = cleanup.enter_context(redis_server(tmp_path / "redis"))
        jobs = {"IMGCLS_REDIS_URL": redis.url, "IMGCLS_JOB_QUEUE": f"smoke-{os.getpid()}"}
        volumes = [f"{data_dir}:/data"]
        api = containers(API_IMAGE)
        url, api_process = start_api(api, key, volumes, IMGCLS_WATCH_INTERVAL_S="0.5", **jobs)
        worker = containers(WORKER_IMAGE)
        worker_config = image_config(WORKER_IMAGE)
        assert worker_config["User"] == f"{UID}:{UID}"
        worker_process = worker.start(worker_config["Cmd"], {"OMP_NUM_THREADS": "1", **jobs}, volumes, "worker")
        wait_ready(url, api_process)

        answer = httpx.post(
            f"{url}/v1/datasets",
            content=dataset_zip(),
            timeout=60,
            headers={"Content-Type": "application/zip", **key.headers()},
        )
        assert answer.status_code == 201, answer.text
        body = {
            "base_model": MODEL,
            "dataset": answer.json()["id"],
            "suffix": "smoke",
            "auto_promote": True,
            "hyperparameters": {"epochs": 1, "batch_size": 16, "learning_rate": 0.01},
        }
        answer = httpx.post(f"{url}/v1/fine-tuning/jobs", json=body, headers=key.headers(), timeout=30)
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]

        deadline = time.monotonic() + 600
        while (job := httpx.get(f"{url}/v1/fine-tuning/jobs/{job_id}", headers=key.headers()).json())["status"] not in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            assert worker_process.popen.poll() is None, worker_process.output()[-4000:]
            assert time.monotonic() < deadline, f"{job['status']}:\n{worker_process.output()[-4000:]}"
            time.sleep(1)
        assert job["status"] == "succeeded", f"{job}\n{worker_process.output()[-4000:]}"
        assert (job["result"]["model"], job["result"]["version"]) == (f"{MODEL}-smoke", 1)

        healthcheck = worker_config["Healthcheck"]["Test"]
        result = worker.run(healthcheck[1:], env=jobs)
        assert result.returncode == 0, result.stderr

        files = [("images", ("0.png", png_files(fashion_images(1))[0][1], "image/png"))]
        deadline = time.monotonic() + 30  # the running API finds the new model within its watch interval
        while (
            answer := httpx.post(
                f"{url}/v1/models/{MODEL}-smoke/classify", files=files, headers=key.headers(), timeout=30
            )
        ).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.5)
        assert answer.json()["version"] == 1 and set(top_labels(answer)) <= set(CLASSES.values())
        stop(worker_process.popen)
        assert "Warm shutdown" in worker_process.output(), worker_process.output()[-2000:]


BUILDAH_EXIT = re.compile(r"subprocess exited with status \d+|Error: exit status \d+")


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:1/0", "not-a-url"])
def test_a_wrong_redis_url_stops_the_worker_with_one_line(containers: Any, redis_url: str) -> None:
    worker = containers(WORKER_IMAGE)
    result = worker.run(image_config(WORKER_IMAGE)["Cmd"], env={"IMGCLS_REDIS_URL": redis_url}, timeout=45)
    assert result.returncode != 0
    # buildah run adds its own report of the exit status ("subprocess exited with status 1", "Error: exit
    # status 1"); a container engine's lines, not the worker's, so they are left out here.
    lines = [line for line in result.stderr.splitlines() if line.strip() and not BUILDAH_EXIT.fullmatch(line.strip())]
    assert len(lines) == 1 and lines[0].startswith(f"error: IMGCLS_REDIS_URL={redis_url}: "), result.stderr


# ---- the GPU images (scripts/containers.sh --gpu): what can be checked without a GPU


GPU_CHECKS = {
    # NVIDIA's CUDA and cuDNN wheels are there and load; the CUDA provider is built in
    "imgcls-api-gpu:local": "import onnxruntime as ort; ort.preload_dlls(); print(ort.get_available_providers())",
    # torch is the CUDA 13 build; without a GPU it says so instead of failing
    "imgcls-worker-gpu:local": "import torch; print(torch.version.cuda, torch.cuda.is_available())",
}
GPU_ANSWERS = {"imgcls-api-gpu:local": "CUDAExecutionProvider", "imgcls-worker-gpu:local": "13."}


@pytest.mark.parametrize("image", GPU_CHECKS)
def test_the_gpu_images_hold_the_cuda_libraries(containers: Any, image: str) -> None:
    if subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True).returncode != 0:
        pytest.skip(f"{image} is built by scripts/containers.sh --gpu")
    config = image_config(image)
    env = dict(item.partition("=")[::2] for item in config["Env"])
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility" and config["User"] == f"{UID}:{UID}"
    result = containers(image).run(["python", "-c", GPU_CHECKS[image]])
    assert result.returncode == 0 and GPU_ANSWERS[image] in result.stdout, result.stdout + result.stderr


# ---- deploy/compose.yaml against the images


COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
SETTINGS_NAMES = """
import json, sys
from pydantic_settings import BaseSettings
import service.settings as modules
names = set()
for module in [modules] + [__import__(name, fromlist=["_"]) for name in sys.argv[1:]]:
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings:
            prefix = value.model_config.get("env_prefix", "")
            names |= {(prefix + field).upper() for field in value.model_fields}
print(json.dumps(sorted(names)))
"""


def compose_services() -> dict[str, dict[str, Any]]:
    import yaml

    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    return services


@pytest.mark.parametrize(("service", "image"), [("api", API_IMAGE), ("worker", WORKER_IMAGE), ("flower", WORKER_IMAGE)])
def test_compose_matches_what_the_images_expose(containers: Any, service: str, image: str) -> None:
    """Image names and build targets, ports, the data volume, the settings' names and the health checks of
    deploy/compose.yaml are what the built images have."""
    spec = compose_services()[service]
    assert spec["image"] == image and spec["build"]["target"] == image.removeprefix("imgcls-").split(":")[0]
    config = image_config(image)
    env = dict(item.partition("=")[::2] for item in config["Env"])
    for port in spec.get("ports", []):
        if service != "flower":  # Flower's port is its command's --port, not the image's
            assert f"{port.rsplit(':', 1)[1]}/tcp" in config["ExposedPorts"], port
    container = containers(image)
    for volume in spec.get("volumes", []):
        target = volume.split(":")[1]
        assert target == env["IMGCLS_DATA_ROOT"], volume
        owner = container.run(["stat", "-c", "%u", target]).stdout.strip()
        assert owner == str(UID), f"{target} belongs to {owner}: a new named volume takes this ownership"
    modules = ["training.settings"] if image == WORKER_IMAGE else []
    known = set(json.loads(container.run(["python", "-c", SETTINGS_NAMES, *modules]).stdout))
    for name, value in (spec.get("environment") or {}).items():
        if name.startswith("IMGCLS_"):
            assert name in known, f"compose sets {name}, which no setting of the {image} image reads"
        if name in env:
            assert str(value) == env[name], f"{name}: compose {value}, image {env[name]}"
    if "healthcheck" in spec:  # compose's own check runs a program the image has
        program = spec["healthcheck"]["test"][1]
        assert container.run(["sh", "-c", f"command -v {program}"]).returncode == 0, program
    else:
        assert config["Healthcheck"]["Test"][0] == "CMD", f"{service} relies on the image's health check"
    if "command" in spec:
        assert container.run(["sh", "-c", f"command -v {spec['command'][0]}"]).returncode == 0, spec["command"]
        assert container.run(["python", "-c", "import flower"]).returncode == 0
