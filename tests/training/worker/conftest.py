"""The whole fine-tuning stack, real parts only: a private redis-server, the API (uvicorn, in a thread) and
``imgcls worker`` processes, over a copy of the session's published model and a zip of Fashion-MNIST PNGs."""

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from service.settings import ServiceSettings
from tests.conftest import FASHION_MNIST
from tests.redis_server import RedisServer, redis_server
from tests.service.api.server import running_server
from training.data import DatasetBundle, load_dataset

# Fashion-MNIST classes the dataset holds, under new names (so the label set differs from the base's)
CLASSES = {7: "sneaker", 8: "bag", 9: "ankle-boot"}
FAST = {"epochs": 2, "batch_size": 16, "learning_rate": 0.01}
TIMINGS = {"job_heartbeat_s": 0.3, "job_lost_after_s": 1.5, "job_recovery_interval_s": 0.3}


@pytest.fixture(scope="session")
def dataset_zip() -> bytes:
    """A zip in ImageFolder layout: 40 PNG files of each of three Fashion-MNIST classes."""
    fashion: DatasetBundle = load_dataset("fashion-mnist", fashion_mnist_dir=FASHION_MNIST)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for fashion_class, name in CLASSES.items():
            for index in (fashion.train_labels == fashion_class).nonzero().flatten()[:40].tolist():
                png = io.BytesIO()
                Image.fromarray(fashion.train_images[index, 0].numpy(), "L").save(png, "PNG")
                archive.writestr(f"{name}/{index}.png", png.getvalue())
    return buffer.getvalue()


@dataclass
class Stack:
    url: str
    redis: RedisServer
    folder: Path
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.folder / f"worker-{len(self.workers)}.log").open("wb")
        command = [sys.executable, "-m", "service.cli", "worker", "--loglevel", "info"]
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL to the worker and its pool processes: a node that dies, with no chance to clean up."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def upload(self, data: bytes) -> str:
        answer = httpx.post(f"{self.url}/v1/datasets", content=data, headers={"Content-Type": "application/zip"})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def submit(self, dataset: str, **fields: Any) -> dict[str, Any]:
        body = {"base_model": "fashion-mnist", "dataset": dataset, "hyperparameters": FAST, **fields}
        answer = httpx.post(f"{self.url}/v1/fine-tuning/jobs", json=body)
        assert answer.status_code == 201, answer.text
        job: dict[str, Any] = answer.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/v1/fine-tuning/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job

    def wait(self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if until(job):
                return job
            assert time.monotonic() < deadline, f"job {job_id} stuck at {job['status']}: {job}\n{self.logs()}"
            time.sleep(0.1)

    def finished(self, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
        return self.wait(job_id, lambda job: job["status"] in ("succeeded", "failed", "cancelled"), timeout_s)

    def events(self, job_id: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/v1/fine-tuning/jobs/{job_id}/events", params={"limit": 100})
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()["data"]
        return events

    def logs(self) -> str:
        return "\n".join(path.read_text()[-3000:] for path in sorted(self.folder.glob("worker-*.log")))


@pytest.fixture
def stack_factory(trained_repository: Path, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Builds the stack (Redis persistent when asked); every part stops when the test ends."""
    with ExitStack() as cleanup:

        def build(*, persistent: bool = False, workers: int = 1) -> Stack:
            model_root = Path(shutil.copytree(trained_repository, tmp_path / "models"))
            (tmp_path / "redis").mkdir()
            redis = cleanup.enter_context(redis_server(tmp_path / "redis", persistent=persistent))
            paths = {"model_root": model_root, "data_root": tmp_path / "data"}
            settings = ServiceSettings(
                **paths, redis_url=redis.url, auth_enabled=False, intra_op_threads=1, watch_interval_s=0.2, **TIMINGS
            )
            url = cleanup.enter_context(running_server(settings))
            env = {
                **os.environ,
                "IMGCLS_MODEL_ROOT": str(model_root),
                "IMGCLS_DATA_ROOT": str(tmp_path / "data"),
                "IMGCLS_RUNS_DIR": str(tmp_path / "runs"),
                "IMGCLS_REDIS_URL": redis.url,
                "OMP_NUM_THREADS": "1",
                **{f"IMGCLS_{k.upper()}": str(v) for k, v in TIMINGS.items()},
            }
            stack = Stack(url, redis, tmp_path, env)
            cleanup.callback(stop_all, stack.workers)
            for _ in range(workers):
                stack.start_worker()
            return stack

        yield build


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
