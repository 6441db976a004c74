"""Fine-tuning jobs through the real stack: the API, one CPU worker and Redis, each its own process.

    .venv/bin/python benchmarks/jobs.py                 # one job, then a burst of 10
    .venv/bin/python benchmarks/jobs.py --burst 0       # the one job only

The base is benchmarks/finetune.py's: the default recipe's ``cnn`` trained on the seven Fashion-MNIST
classes that are not sneaker, bag and ankle-boot (published once under ``--root``, about two minutes);
the dataset, 200 PNG images of each of those three classes (600), zipped as a user would upload it.

Figures:
- one job with default hyperparameters and ``auto_promote``: seconds from the submit (POST
  /v1/fine-tuning/jobs) to the new version answering POST /v1/models/<new>/classify, split into queue
  wait, the worker's run (train, calibrate, export, publish) and the API loading the new version;
  validation and test accuracy;
- a burst of ``--burst`` jobs submitted at once to the one worker: each job's wait in the queue, the
  wall time until the last one finished, and the jobs per hour that gives.
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import record
from finetune import BASE_NAME, seven_class_base, write_dataset
from serve_load_tools import Server, free_port, launch

from training.settings import TrainingSettings

FINISHED = ("succeeded", "failed", "cancelled")


def zip_folder(folder: Path, target: Path) -> bytes:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*.png")):
            archive.write(path, path.relative_to(folder).as_posix())
    return target.read_bytes()


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            return redis, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def wait_finished(client: httpx.Client, job_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.perf_counter() + timeout_s
    while True:
        job: dict[str, Any] = client.get(f"/v1/fine-tuning/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        if time.perf_counter() > deadline:
            raise SystemExit(f"job {job_id} not finished after {timeout_s:.0f} s: {job['status']}")
        time.sleep(0.05)


def one_job(client: httpx.Client, dataset: str, sample: bytes) -> dict[str, Any]:
    started = time.perf_counter()
    answer = client.post(
        "/v1/fine-tuning/jobs", json={"base_model": BASE_NAME, "dataset": dataset, "auto_promote": True}
    )
    answer.raise_for_status()
    job = wait_finished(client, answer.json()["id"], timeout_s=600)
    finished = time.perf_counter()
    if job["status"] != "succeeded":
        raise SystemExit(f"the job did not succeed: {json.dumps(job['error'])}")
    result = job["result"]
    while True:  # the API notices the new model (Redis notification) and loads it
        classify = client.post(
            f"/v1/models/{result['model']}/classify", content=sample, headers={"Content-Type": "image/png"}
        )
        if classify.status_code == 200 and classify.json()["version"] == result["version"]:
            break
        time.sleep(0.02)
    answering = time.perf_counter()
    trial = job["trials"][0]
    return {
        "submit_to_classify_s": round(answering - started, 1),
        "queue_wait_s": round(seconds_between(job["created_at"], job["started_at"]), 2),
        "worker_run_s": round(seconds_between(job["started_at"], job["finished_at"]), 1),
        "finished_to_classify_s": round(answering - finished, 2),
        "published": f"{result['model']} v{result['version']}",
        "promoted": result["promoted"],
        "epochs": trial["epochs_completed"],
        "val_accuracy": result["metrics"]["val_accuracy"],
        "test_accuracy": result["metrics"]["test_accuracy"],
        "first_answer": classify.json()["results"][0]["top"][0]["label"],
    }


def burst(client: httpx.Client, dataset: str, count: int) -> dict[str, Any]:
    started = time.perf_counter()
    ids = []
    for index in range(count):
        answer = client.post(
            "/v1/fine-tuning/jobs", json={"base_model": BASE_NAME, "dataset": dataset, "suffix": f"burst-{index}"}
        )
        answer.raise_for_status()
        ids.append(answer.json()["id"])
    jobs = [wait_finished(client, job_id, timeout_s=60 * count) for job_id in ids]
    wall = time.perf_counter() - started
    waits = [seconds_between(job["created_at"], job["started_at"]) for job in jobs]
    runs = [seconds_between(job["started_at"], job["finished_at"]) for job in jobs]
    return {
        "jobs": count,
        "succeeded": sum(job["status"] == "succeeded" for job in jobs),
        "wall_s": round(wall, 1),
        "jobs_per_hour": round(count / wall * 3600),
        "queue_wait_s": {
            "first": round(waits[0], 1),
            "median": round(statistics.median(waits), 1),
            "last": round(waits[-1], 1),
        },
        "worker_run_s": {"median": round(statistics.median(runs), 1), "max": round(max(runs), 1)},
    }


@dataclass
class Run:
    """A fresh work folder holding a copy of the base only (so every run starts alike), and the dataset."""

    work: Path
    base_version: int
    archive: bytes  # the 600-image dataset as a zip
    sample: bytes  # one PNG of it


def prepare(root: Path, name: str) -> Run:
    settings = TrainingSettings(model_root=root / "models", runs_dir=root / "runs")
    base_version, _ = seven_class_base(settings)
    folder = root / "data" / "fmnist-3"
    if not folder.is_dir():
        write_dataset(settings, folder)
    work = root / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(root / "models" / BASE_NAME, work / "models" / BASE_NAME)
    archive = zip_folder(folder, work / "fmnist-3.zip")
    return Run(work, base_version, archive, next((folder / "bag").iterdir()).read_bytes())


@dataclass
class Stack:
    port: int
    api: Server
    worker: Server


@contextlib.contextmanager
def running_stack(work: Path) -> Iterator[Stack]:
    """A private Redis, ``imgcls serve`` and one ``imgcls worker`` over ``work``/models, each its own
    process, all ready; every one stopped on exit."""
    redis, redis_url = start_redis(work / "redis")
    env = {
        **os.environ,
        "IMGCLS_MODEL_ROOT": str(work / "models"),
        "IMGCLS_DATA_ROOT": str(work / "data"),
        "IMGCLS_RUNS_DIR": str(work / "runs"),
        "IMGCLS_REDIS_URL": redis_url,
    }
    imgcls = str(Path(sys.executable).parent / "imgcls")
    port = free_port()
    servers: list[Server] = []
    try:
        api = launch(
            "api",
            [imgcls, "serve", "--no-auth", "--port", str(port)],
            env,
            Path.cwd(),
            work / "api.log",
            port=port,
            path="/",
            lua=Path(),
        )
        servers.append(api)
        api.wait_ready("/healthz/ready", timeout_s=60)
        worker = launch("worker", [imgcls, "worker"], env, Path.cwd(), work / "worker.log", port=0, path="", lua=Path())
        servers.append(worker)
        while b"ready." not in (work / "worker.log").read_bytes():  # Celery's "celery@host ready."
            if worker.proc.poll() is not None or time.perf_counter() - worker.launched > 120:
                raise SystemExit(f"the worker did not start:\n{worker.log_tail()}")
            time.sleep(0.1)
        yield Stack(port, api, worker)
    finally:
        for server in reversed(servers):
            server.stop()
        redis.terminate()
        redis.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("var/benchmarks/finetune"), help="models, data, runs")
    parser.add_argument("--burst", type=int, default=10, help="jobs submitted at once after the first (0: none)")
    record.add_arguments(parser, "jobs")
    args = parser.parse_args()
    result = record.begin(args.result_name, args)
    run = prepare(args.root.resolve(), "jobs-run")
    with (
        running_stack(run.work) as stack,
        httpx.Client(base_url=f"http://127.0.0.1:{stack.port}", timeout=60) as client,
    ):
        uploaded = time.perf_counter()
        dataset = client.post("/v1/datasets", content=run.archive, headers={"Content-Type": "application/zip"})
        dataset.raise_for_status()
        figures: dict[str, Any] = {
            "base": f"{BASE_NAME} v{run.base_version}",
            "dataset": {
                "images": dataset.json()["files"],
                "zip_bytes": len(run.archive),
                "upload_s": round(time.perf_counter() - uploaded, 2),
            },
            "job": one_job(client, dataset.json()["id"], run.sample),
        }
        if args.burst:
            figures["burst"] = burst(client, dataset.json()["id"], args.burst)
    record.save(result, figures, args.results_dir)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
