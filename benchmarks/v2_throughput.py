"""Throughput of /v2 through the stock tritonclient, beside /v1 classify, on the same model and concurrency.

    .venv/bin/python benchmarks/v2_throughput.py --model-root var/dev/models
    .venv/bin/python benchmarks/v2_throughput.py --model-root var/models --model cnn --concurrency 16 --duration 20

Starts ``imgcls serve --no-auth`` on a free port (other settings from the environment as usual:
IMGCLS_WORKERS, IMGCLS_MAX_BATCH_SIZE, ...), waits for /healthz/ready, then runs each scenario for
``--duration`` seconds after a short warm-up, ``--concurrency`` requests in flight throughout (a closed
loop: each of that many greenlets sends its next request when its answer arrives), for ``--rounds`` rounds
whose order reverses every round (ABC, CBA, ...); each scenario's headline is its median round, with the
range beside it, and every round is kept in the result file (benchmarks/results/v2-<date>.json):

- ``v2 fp32``: tritonclient ``infer`` with the FP32 NCHW input, binary, preprocessed here beforehand (the
  server skips decoding: this is the cost of the protocol plus the model);
- ``v2 image_bytes``: tritonclient with the encoded image as a BYTES tensor (the server decodes);
- ``v1 classify``: the same encoded image as a raw image/png body to /v1/models/{model}/classify, sent with
  geventhttpclient, the HTTP client tritonclient itself uses, so the client side costs the same.

Each request carries ``--images`` images (the same one repeated). Every answer is checked (status 200,
probabilities summing to 1, the same top-1 as the first answer). The client runs on the same machine
as the server and takes CPU from it: compare the rows with each other, on a quiet machine.
"""

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.pool
import numpy as np
import record
import tritonclient.http as triton
from geventhttpclient import HTTPClient
from PIL import Image
from rounds import MIN_ROUNDS, alternating, spread
from serve_load_tools import fashion_mnist_test_images

from service.api.fastpath.tally import FLUSH_INTERVAL_S
from service.imaging import DecodeLimits, decode_image, preprocess
from service.repository import Manifest, ModelRepository

WARMUP_S = 1.0
MEDIAN_OF = ("images_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request", "client_cpu_ms_per_request")


@dataclass(frozen=True)
class Figures:
    scenario: str
    concurrency: int
    images_per_request: int
    requests: int
    seconds: float
    requests_per_s: float
    images_per_s: float
    p50_ms: float
    p99_ms: float
    request_bytes: int
    server_cpu_ms_per_request: float  # the server's processes, user + system: robust to a busy machine
    client_cpu_ms_per_request: float  # this process (tritonclient or geventhttpclient, and the checks)
    average_batch: float  # images per onnxruntime call, from the server's /metrics


# ---------------------------------------------------------------- inputs


def sample_image(manifest: Manifest) -> bytes:
    """The first Fashion-MNIST test image (PNG) at the model's input size."""
    height, width = manifest.preprocessing.input_size
    image = Image.fromarray(fashion_mnist_test_images(1)[0]).convert(manifest.preprocessing.color_mode)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(model_root: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    imgcls = Path(sys.executable).with_name("imgcls")
    command = [str(imgcls), "serve", "--no-auth", "--port", str(port), "--model-root", str(model_root)]
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/ready", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            server.terminate()
            raise SystemExit(f"the server was not ready within 120 s; see {log_path}")
        time.sleep(0.2)


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its descendants so far (Linux /proc; 0 elsewhere)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: the parent's pid
        times[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        total += times.get(pid, 0.0)
        pending.extend(children.get(pid, []))
    return total


def batch_totals(port: int, model: str) -> tuple[float, float]:
    """(images, onnxruntime calls) so far, from the server's imgcls_batch_size histogram."""
    time.sleep(FLUSH_INTERVAL_S + 0.2)  # every worker's tally has reached /metrics (service/api/fastpath/tally.py)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for kind in totals:
            if line.startswith(f'imgcls_batch_size_{kind}{{model="{model}"}}'):
                totals[kind] += float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


# ---------------------------------------------------------------- load


def closed_loop(send: Callable[[], None], concurrency: int, seconds: float) -> tuple[list[float], float]:
    """``concurrency`` greenlets calling ``send`` back to back for ``seconds``: (latencies in s, elapsed s)."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            send()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    pool = gevent.pool.Pool(concurrency)
    for _ in range(concurrency):
        pool.spawn(worker)
    pool.join(raise_error=True)
    return latencies, time.perf_counter() - started


def measure(
    name: str,
    send: Callable[[], None],
    request_bytes: int,
    *,
    server_pid: int,
    port: int,
    model: str,
    concurrency: int,
    images: int,
    seconds: float,
) -> Figures:
    closed_loop(send, concurrency, WARMUP_S)
    server_before, client_before = tree_cpu_seconds(server_pid), os.times()
    images_before, calls_before = batch_totals(port, model)
    latencies, elapsed = closed_loop(send, concurrency, seconds)
    server_s = tree_cpu_seconds(server_pid) - server_before
    images_after, calls_after = batch_totals(port, model)
    client_after = os.times()
    client_s = client_after.user + client_after.system - client_before.user - client_before.system
    ordered = sorted(latencies)
    figures = Figures(
        scenario=name,
        concurrency=concurrency,
        images_per_request=images,
        requests=len(latencies),
        seconds=round(elapsed, 2),
        requests_per_s=round(len(latencies) / elapsed, 1),
        images_per_s=round(len(latencies) * images / elapsed, 1),
        p50_ms=round(statistics.median(ordered) * 1000, 2),
        p99_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        request_bytes=request_bytes,
        server_cpu_ms_per_request=round(server_s * 1000 / len(latencies), 3),
        client_cpu_ms_per_request=round(client_s * 1000 / len(latencies), 3),
        average_batch=round((images_after - images_before) / max(1.0, calls_after - calls_before), 2),
    )
    print(
        f"{name:>16}: {figures.images_per_s:9.1f} images/s  p50 {figures.p50_ms:7.2f} ms  p99 {figures.p99_ms:7.2f} ms"
        f"  CPU ms/request: server {figures.server_cpu_ms_per_request:.3f}, client "
        f"{figures.client_cpu_ms_per_request:.3f}  batch {figures.average_batch:.1f}  ({figures.requests} requests of "
        f"{request_bytes:,} bytes)",
        flush=True,
    )
    return figures


def check_probabilities(probabilities: np.ndarray, expected_top1: list[int]) -> None:
    if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4):
        raise AssertionError("probabilities do not sum to 1")
    if probabilities.argmax(axis=1).tolist() != expected_top1:
        raise AssertionError(f"top-1 {probabilities.argmax(axis=1).tolist()} != {expected_top1}")


def run(args: argparse.Namespace) -> dict[str, list[Figures]]:
    """Every round's figures, by scenario."""
    manifest = ModelRepository(args.model_root).manifest(
        args.model, ModelRepository(args.model_root).resolve(args.model)
    )
    png = sample_image(manifest)
    tensor = np.stack([preprocess(decode_image(png, DecodeLimits()), manifest.preprocessing)] * args.images)
    encoded = np.array([png] * args.images, dtype=np.object_)
    port = args.port or free_port()
    host = f"127.0.0.1:{port}"
    log_path = Path(tempfile.gettempdir()) / f"v2_throughput-{port}.log"
    print(f"serving {args.model_root} on {host} (log {log_path}); {os.cpu_count()} CPUs", flush=True)
    server = start_server(args.model_root, port, log_path)
    try:
        client = triton.InferenceServerClient(host, concurrency=args.concurrency)
        fp32 = triton.InferInput(manifest.input.name, list(tensor.shape), "FP32").set_data_from_numpy(tensor)
        image_bytes = triton.InferInput("image_bytes", [args.images], "BYTES").set_data_from_numpy(encoded)
        expected = client.infer(args.model, [image_bytes]).as_numpy("probabilities").argmax(axis=1).tolist()

        def v2(tensor_input: triton.InferInput) -> Callable[[], None]:
            def send() -> None:
                check_probabilities(client.infer(args.model, [tensor_input]).as_numpy("probabilities"), expected)

            return send

        http = HTTPClient("127.0.0.1", port, concurrency=args.concurrency, network_timeout=60)
        v1_path = f"/v1/models/{args.model}/classify?top_k=1"
        v1_body, v1_headers = png, {"Content-Type": "image/png"}
        if args.images > 1:
            boundary = "v2throughputboundary"
            part = (f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n').encode()
            v1_body = b"".join(part + png + b"\r\n" for _ in range(args.images)) + f"--{boundary}--\r\n".encode()
            v1_headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

        def v1() -> None:
            response = http.post(v1_path, body=v1_body, headers=v1_headers)
            body = response.read()
            if response.status_code != 200:
                raise AssertionError(f"/v1 answered {response.status_code}: {body[:200]!r}")
            top1 = [result["top"][0]["index"] for result in json.loads(body)["results"]]
            if top1 != expected:
                raise AssertionError(f"/v1 top-1 {top1} != {expected}")

        fp32_bytes = len(triton.InferenceServerClient.generate_request_body([fp32])[0])
        image_request_bytes = len(triton.InferenceServerClient.generate_request_body([image_bytes])[0])
        scenarios: dict[str, tuple[Callable[[], None], int]] = {
            "v2 fp32": (v2(fp32), fp32_bytes),
            "v2 image_bytes": (v2(image_bytes), image_request_bytes),
            "v1 classify": (v1, len(v1_body)),
        }
        common: dict[str, Any] = {
            "server_pid": server.pid,
            "port": port,
            "model": args.model,
            "concurrency": args.concurrency,
            "images": args.images,
            "seconds": args.duration,
        }
        results: dict[str, list[Figures]] = {name: [] for name in scenarios}
        for round_number, order in enumerate(alternating(list(scenarios), args.rounds), start=1):
            print(f"round {round_number} of {args.rounds}", flush=True)
            for name in order:
                send, size = scenarios[name]
                results[name].append(measure(name, send, size, **common))
        client.close()
        http.close()
        return results
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-root", type=Path, default=Path("var/models"))
    parser.add_argument("--model", default="fashion-mnist")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--images", type=int, default=1, help="images per request")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario and round")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help="alternating rounds; medians are reported")
    record.add_arguments(parser, "v2")
    args = parser.parse_args()
    begun = record.begin(args.result_name, args)
    results = run(args)
    medians = {
        name: {key: spread(getattr(figures, key) for figures in rounds) for key in MEDIAN_OF}
        for name, rounds in results.items()
    }
    print(
        f"medians (min-max) of {args.rounds} rounds, {args.concurrency} in flight, {args.images} image(s) per request:"
    )
    baseline = medians["v1 classify"]["images_per_s"]["median"]
    for name, figures in medians.items():
        rate = figures["images_per_s"]
        print(
            f"{name:>16}: {rate['median']:9.1f} images/s ({rate['min']:.1f}-{rate['max']:.1f}; "
            f"{rate['median'] / baseline:.2f}x v1)  p99 {figures['p99_ms']['median']:7.2f} ms  server CPU "
            f"{figures['server_cpu_ms_per_request']['median']:.3f} ms/request, "
            f"client {figures['client_cpu_ms_per_request']['median']:.3f}"
        )
    payload = {
        "medians": medians,
        "rounds": {name: [asdict(figures) for figures in rounds] for name, rounds in results.items()},
    }
    record.save(begun, payload, args.results_dir)


if __name__ == "__main__":
    main()
