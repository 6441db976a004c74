"""A bounded soak: mixed traffic on the whole stack for a while, to see whether memory or latency drifts.

    .venv/bin/python benchmarks/soak.py                      # 10 minutes
    .venv/bin/python benchmarks/soak.py --minutes 2          # a quick look

The stack is benchmarks/jobs.py's: ``imgcls serve``, one ``imgcls worker`` and a private Redis, over the
seven-class ``cnn`` base. The traffic, all at once, from this process:
- ``--clients`` loops of POST /v1/models/<base>/classify with a 28x28 PNG (raw body);
- one loop of POST /v2/models/<base>/infer with the same PNG as a BYTES input (JSON);
- a fine-tuning job submitted every ``--job-every`` seconds on the 600-image dataset (the worker runs
  them one after another; each publishes a new version, which the API loads).

Every ``--window`` seconds it records, per kind of request, the count, failures and p50/p99 latency, and
the resident memory of the API and worker processes (their whole process trees). It prints one JSON
object: the windows, and the drift from the first full window to the last (memory in MB, p99 in ms).
"""

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from finetune import BASE_NAME
from jobs import prepare, running_stack
from serve_load_tools import Server, load_average


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and every process below it, in MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return round(total, 1)


@dataclass
class Window:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def record(self, kind: str, seconds: float, ok: bool) -> None:
        self.latencies.setdefault(kind, []).append(seconds)
        if not ok:
            self.failures[kind] = self.failures.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            out[kind] = {
                "requests": len(values),
                "failed": self.failures.get(kind, 0),
                "p50_ms": round(statistics.median(ordered) * 1000, 1),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
            }
        return out


async def classify_loop(client: httpx.AsyncClient, png: bytes, state: dict[str, Any], until: float) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        answer = await client.post(
            f"/v1/models/{BASE_NAME}/classify", content=png, headers={"Content-Type": "image/png"}
        )
        state["window"].record("classify", time.monotonic() - started, answer.status_code == 200)


async def v2_loop(client: httpx.AsyncClient, png: bytes, state: dict[str, Any], until: float) -> None:
    body = {
        "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(png).decode()]}]
    }
    while time.monotonic() < until:
        started = time.monotonic()
        answer = await client.post(f"/v2/models/{BASE_NAME}/infer", json=body)
        state["window"].record("v2_infer", time.monotonic() - started, answer.status_code == 200)


async def job_loop(
    client: httpx.AsyncClient, dataset: str, every_s: float, state: dict[str, Any], until: float
) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        answer = await client.post(
            "/v1/fine-tuning/jobs", json={"base_model": BASE_NAME, "dataset": dataset, "suffix": "soak"}
        )
        state["window"].record("job_submit", time.monotonic() - started, answer.status_code == 201)
        if answer.status_code == 201:
            state["jobs"].append(answer.json()["id"])
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))


async def sampler(api: Server, worker: Server, state: dict[str, Any], window_s: float, until: float) -> None:
    while time.monotonic() < until:
        await asyncio.sleep(window_s)
        window, state["window"] = state["window"], Window()
        state["windows"].append(
            {
                "at_s": round(time.monotonic() - state["started"]),
                **window.summary(),
                "api_rss_mb": tree_rss_mb(api.proc.pid),
                "worker_rss_mb": tree_rss_mb(worker.proc.pid),
            }
        )
        print(json.dumps(state["windows"][-1]), file=sys.stderr)


async def soak(
    args: argparse.Namespace, port: int, api: Server, worker: Server, dataset: str, png: bytes
) -> dict[str, Any]:
    state: dict[str, Any] = {"window": Window(), "windows": [], "jobs": [], "started": time.monotonic()}
    until = time.monotonic() + args.minutes * 60
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as client:
        await asyncio.gather(
            *(classify_loop(client, png, state, until) for _ in range(args.clients)),
            v2_loop(client, png, state, until),
            job_loop(client, dataset, args.job_every, state, until),
            sampler(api, worker, state, args.window, until),
        )
        finished = [(await client.get(f"/v1/fine-tuning/jobs/{job_id}")).json()["status"] for job_id in state["jobs"]]
    windows = state["windows"]
    first, last = windows[0], windows[-1]
    return {
        "minutes": args.minutes,
        "windows": windows,
        "jobs_submitted": len(state["jobs"]),
        "jobs_by_status": {s: finished.count(s) for s in sorted(set(finished))},
        "drift_first_to_last_window": {
            "api_rss_mb": round(last["api_rss_mb"] - first["api_rss_mb"], 1),
            "worker_rss_mb": round(last["worker_rss_mb"] - first["worker_rss_mb"], 1),
            "classify_p99_ms": round(last["classify"]["p99_ms"] - first["classify"]["p99_ms"], 1),
            "v2_infer_p99_ms": round(last["v2_infer"]["p99_ms"] - first["v2_infer"]["p99_ms"], 1),
        },
        "rss_mb_range": {  # a worker's tree holds a training process only while a trial runs
            "api": [min(w["api_rss_mb"] for w in windows), max(w["api_rss_mb"] for w in windows)],
            "worker": [min(w["worker_rss_mb"] for w in windows), max(w["worker_rss_mb"] for w in windows)],
        },
        "failed": sum(sum(k.get("failed", 0) for k in w.values() if isinstance(k, dict)) for w in windows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("var/benchmarks/finetune"), help="models, data, runs")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8, help="concurrent classify loops")
    parser.add_argument("--job-every", type=float, default=30.0, help="seconds between job submissions")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per measurement window")
    args = parser.parse_args()
    run = prepare(args.root.resolve(), "soak-run")
    with running_stack(run.work) as stack:
        dataset = httpx.post(
            f"http://127.0.0.1:{stack.port}/v1/datasets",
            content=run.archive,
            headers={"Content-Type": "application/zip"},
            timeout=60,
        ).json()["id"]
        load_before = load_average()
        report = asyncio.run(soak(args, stack.port, stack.api, stack.worker, dataset, run.sample))
        report["load_average_1m"] = [load_before, load_average()]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
