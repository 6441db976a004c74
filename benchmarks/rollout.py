"""What a 100 % shadow rollout costs the server: CPU-seconds per request and the answer's latency, with and
without a shadow of the same model.

    .venv/bin/python benchmarks/rollout.py [--rounds 3] [--seconds 5] [--clients 2] [--root var/benchmarks/rollout]

The default recipe's model (``cnn``, 28x28 grey, 10 classes, random weights: the timing does not depend on
them) is exported by training's exporter and published twice into ``--root`` (reused when already there):
v1 serves, v2 is the candidate. One ``imgcls serve`` process (one worker, ``THREADS`` intra-op threads) and
``--clients`` client threads, each sending one image per request, one after the other (a closed loop: the
most the server and clients can do together), or with ``--rate`` on a fixed schedule (an open loop below
capacity, as a service runs most of the time: does the shadow add latency when there is CPU to spare?).
In rounds.py's alternating order, ``--seconds`` per condition and round:

- **no rollout**: classify as it runs every day;
- **shadow 100 %**: ``PUT /v1/models/{name}/rollout`` with ``{"version": 2, "mode": "shadow", "percent": 100}``
  before the round, ``POST .../rollout/abort`` after it, so every request also runs on v2 once it is answered.

Figures per condition (medians over the rounds with their range): requests per second, the client's p50/p99
latency, and **CPU-seconds per request of the server's process tree** (utime + stime from /proc, which the
rest of a shared machine does not disturb, unlike wall-clock throughput), with the ratio shadow / none; for
the shadow, how many requests were compared and how many comparisons were dropped under load.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import record
from explain import image_bytes, publish
from rounds import MIN_ROUNDS, alternating, ratio, spread
from serve_load_tools import free_port, http_request, launch, multipart, tree_cpu_seconds

from service.repository import ModelRepository

THREADS = 1
MODEL = "explain-cnn"  # explain.py's copy of the default recipe's architecture, with random weights


def candidate_version(repository: ModelRepository) -> int:
    """v2: v1's files published again (the same answers; the cost measured is the second inference)."""
    versions = repository.versions(MODEL)
    if len(versions) >= 2:
        return versions[1]
    folder = repository.path(MODEL, versions[0])
    manifest = repository.manifest(MODEL, versions[0])
    return repository.publish(manifest, folder / "model.onnx", None, explain_path=folder / "explain.onnx").version


def load(port: int, body: bytes, headers: dict[str, str], clients: int, seconds: float, rate: float) -> list[float]:
    """Latencies (s) of every request ``clients`` threads sent for ``seconds``: back to back (``rate`` 0), or
    each on a fixed schedule, ``rate`` requests/s in all (an open loop: latency counts from the scheduled
    start, so a late answer delays nothing it should not)."""
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.perf_counter() + seconds
    interval = clients / rate if rate else 0.0

    def client() -> None:
        due = time.perf_counter()
        while due < deadline:
            if interval:
                time.sleep(max(0.0, due - time.perf_counter()))
            begin = due if interval else time.perf_counter()
            due = due + interval if interval else time.perf_counter()
            status, _, answer = http_request(port, "POST", f"/v1/models/{MODEL}/classify", body, headers)
            latencies.append(time.perf_counter() - begin)
            if status != 200:
                failures.append(f"{status} {answer[:200]!r}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, the first: {failures[0]}")
    return latencies


def one_round(port: int, pid: int, shadow: bool, version: int, args: argparse.Namespace) -> dict[str, float]:
    body, headers = multipart(Path("image.png"), image_bytes(MODEL))
    rollout = f"/v1/models/{MODEL}/rollout"
    if shadow:
        plan = f'{{"version": {version}, "mode": "shadow", "percent": 100}}'.encode()
        status, _, answer = http_request(port, "PUT", rollout, plan, {"Content-Type": "application/json"})
        if status != 201:
            raise SystemExit(f"PUT {rollout}: {status} {answer[:300]!r}")
    cpu_before = tree_cpu_seconds(pid)
    latencies = load(port, body, headers, args.clients, args.seconds, args.rate)
    cpu = tree_cpu_seconds(pid) - cpu_before
    figures = {
        "requests_per_s": len(latencies) / args.seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
        "cpu_ms_per_request": cpu / len(latencies) * 1000,
    }
    if shadow:
        time.sleep(1.5)  # the last comparisons finish and every tally is written
        status, _, answer = http_request(port, "POST", f"{rollout}/abort")
        if status != 200:
            raise SystemExit(f"POST {rollout}/abort: {status} {answer[:300]!r}")
        ended = json.loads(answer)["figures"]
        figures["compared_share"] = ended["compared"] / max(1, ended["requests"])
        figures["dropped_share"] = ended["dropped"] / max(1, ended["requests"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--seconds", type=float, default=5.0, help="per condition and round")
    parser.add_argument("--clients", type=int, default=2, help="client threads, each one request at a time")
    parser.add_argument(
        "--rate", type=float, default=0, help="requests/s in all on a fixed schedule (0: back to back, the most)"
    )
    parser.add_argument("--root", type=Path, default=record.REPO / "var" / "benchmarks" / "rollout")
    record.add_arguments(parser, "rollout")
    args = parser.parse_args()
    run = record.begin(args.result_name, args)
    repository = ModelRepository(args.root / "models")
    publish(repository, MODEL)
    version = candidate_version(repository)
    repository.set_alias(MODEL, "production", repository.versions(MODEL)[0])  # v1 serves, not the latest

    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve", "--no-auth", "--port", str(port), "--workers", "1"]
    command += ["--model-root", str(repository.root)]
    env = os.environ | {"IMGCLS_INTRA_OP_THREADS": str(THREADS), "PYTHONPATH": str(record.REPO)}
    args.root.mkdir(parents=True, exist_ok=True)
    server = launch("imgcls", command, env, record.REPO, args.root / "serve.log", port=port, path="", lua=Path())
    measured: dict[str, list[dict[str, float]]] = {"none": [], "shadow": []}
    try:
        server.wait_ready("/healthz/ready", timeout_s=120)
        one_round(server.port, server.proc.pid, False, version, args)  # warm-up
        for order in alternating(["none", "shadow"], args.rounds):
            for condition in order:
                outcome = one_round(server.port, server.proc.pid, condition == "shadow", version, args)
                measured[condition].append(outcome)
    finally:
        server.stop()

    def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
        return {key: spread([r[key] for r in runs], 3) for key in runs[0]}

    cpu = {condition: [r["cpu_ms_per_request"] for r in runs] for condition, runs in measured.items()}
    figures: dict[str, Any] = {
        "model": MODEL,
        "threads": THREADS,
        "clients": args.clients,
        "rate": args.rate or "closed loop",
        "seconds": args.seconds,
        "none": summary(measured["none"]),
        "shadow": summary(measured["shadow"]),
        "cpu_per_request_ratio": ratio(cpu["shadow"], cpu["none"]),
        "p50_ratio": ratio([r["p50_ms"] for r in measured["shadow"]], [r["p50_ms"] for r in measured["none"]]),
    }
    record.save(run, figures, args.results_dir)


if __name__ == "__main__":
    main()
