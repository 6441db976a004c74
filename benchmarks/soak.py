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
the resident memory of the API and worker processes (their whole process trees). A failure is any answer
but the expected status, and any request that got no answer at all (a refused or reset connection, a
timeout: a transport error is a failure, not a crash of the soak). At the end it counts the jobs: how many
were submitted, how many finished (succeeded, failed or cancelled) and how many were still queued or
running, as the worker runs one at a time. The whole result (the windows, the drift from the first full
window to the last, memory in MB, p99 in ms) goes to benchmarks/results/soak-<date>.json
(benchmarks/record.py) and is printed.
"""

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import record
import tables
from finetune import BASE_NAME
from jobs import prepare, running_stack
from serve_load_tools import Server

from service.jobs.record import FINISHED


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


async def send(state: dict[str, Any], kind: str, expected: int, request: Awaitable[httpx.Response]) -> Any:
    """Await one request and record it: a failure unless it answered ``expected``; no answer at all (a
    transport error) is a failure too. The answer's JSON when it succeeded, else None."""
    started = time.monotonic()
    try:
        answer = await request
    except httpx.TransportError as error:
        state["window"].record(kind, time.monotonic() - started, False)
        state["transport_errors"][type(error).__name__] = state["transport_errors"].get(type(error).__name__, 0) + 1
        return None
    ok = answer.status_code == expected
    state["window"].record(kind, time.monotonic() - started, ok)
    return answer.json() if ok else None


async def classify_loop(client: httpx.AsyncClient, png: bytes, state: dict[str, Any], until: float) -> None:
    while time.monotonic() < until:
        headers = {"Content-Type": "image/png"}
        await send(
            state, "classify", 200, client.post(f"/v1/models/{BASE_NAME}/classify", content=png, headers=headers)
        )


async def v2_loop(client: httpx.AsyncClient, png: bytes, state: dict[str, Any], until: float) -> None:
    body = {
        "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(png).decode()]}]
    }
    while time.monotonic() < until:
        await send(state, "v2_infer", 200, client.post(f"/v2/models/{BASE_NAME}/infer", json=body))


async def job_loop(
    client: httpx.AsyncClient, dataset: str, every_s: float, state: dict[str, Any], until: float
) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        body = {"base_model": BASE_NAME, "dataset": dataset, "suffix": "soak"}
        if (job := await send(state, "job_submit", 201, client.post("/v1/fine-tuning/jobs", json=body))) is not None:
            state["jobs"].append(job["id"])
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
    state: dict[str, Any] = {
        "window": Window(),
        "windows": [],
        "jobs": [],
        "transport_errors": {},
        "started": time.monotonic(),
    }
    until = time.monotonic() + args.minutes * 60
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as client:
        await asyncio.gather(
            *(classify_loop(client, png, state, until) for _ in range(args.clients)),
            v2_loop(client, png, state, until),
            job_loop(client, dataset, args.job_every, state, until),
            sampler(api, worker, state, args.window, until),
        )
        statuses = [(await client.get(f"/v1/fine-tuning/jobs/{job_id}")).json()["status"] for job_id in state["jobs"]]
    windows = state["windows"]
    first, last = windows[0], windows[-1]
    return {
        "minutes": args.minutes,
        "windows": windows,
        "jobs": {
            "submitted": len(state["jobs"]),
            "finished": sum(1 for status in statuses if status in FINISHED),
            "unfinished": sum(1 for status in statuses if status not in FINISHED),
            "by_status": {s: statuses.count(s) for s in sorted(set(statuses))},
        },
        "transport_errors": state["transport_errors"],
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
        # every failed request of every window, transport errors included
        "failed": sum(sum(k.get("failed", 0) for k in w.values() if isinstance(k, dict)) for w in windows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("var/benchmarks/finetune"), help="models, data, runs")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8, help="concurrent classify loops")
    parser.add_argument("--job-every", type=float, default=30.0, help="seconds between job submissions")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per measurement window")
    record.add_arguments(parser, "soak")
    args = parser.parse_args()
    result = record.begin(args.result_name, args)
    run = prepare(args.root.resolve(), "soak-run")
    with running_stack(run.work) as stack:
        dataset = httpx.post(
            f"http://127.0.0.1:{stack.port}/v1/datasets",
            content=run.archive,
            headers={"Content-Type": "application/zip"},
            timeout=60,
        ).json()["id"]
        report = asyncio.run(soak(args, stack.port, stack.api, stack.worker, dataset, run.sample))
    print(tables.render_file(record.save(result, report, args.results_dir), "soak"))


if __name__ == "__main__":
    main()
