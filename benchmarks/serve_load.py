"""Load test of ``imgcls serve`` with real encoded images, beside the BentoML peer and raw onnxruntime.

    .venv/bin/python benchmarks/serve_load.py --model-root var/models --model cnn [--json out.json]
    .venv/bin/python benchmarks/serve_load.py --model-root var/dev/models --duration 5 --rounds 1
    .venv/bin/python benchmarks/serve_load.py --model-root var/models --model cnn --overload
    .venv/bin/python benchmarks/serve_load.py --model-root var/models --model cnn --startup

Capacity (the default mode): our server (``imgcls serve``, auth off, a free port, ``--workers``) and the
BentoML peer (../shared/peers/bentoml, in its own venv under var/peers/, created on first use) serve the
same ONNX file of one published version (the peer with its access log off, as ours has it by default;
``--peer-access-log`` for BentoML's default); wrk posts the same encoded image to both at ``--connections``
for ``--rounds`` rounds of ``--duration`` seconds each, alternating ours and the peer (A B A B), after a
short warm-up of each. The figures of each server are those of its BEST round (highest req/s; a
neighbour's load only ever slows a round down); every round is listed and kept in the JSON, with the
median of the per-round ours/peer ratios. Both servers are up during every round (the idle one's CPU
use is reported); then both stop and the raw in-process onnxruntime ceiling is measured on the same
model file and image, with as many onnxruntime threads as our server has in all its workers: images/s
at batch 1, 8, 32 and at the batch size our server used on average (from its /metrics), compute alone,
and with decode_image + preprocess (the service's own code) for every image, at batch 1 and at the
server's average batch (that decoding runs on one thread of this one process, while the server
decodes in each of its workers).

Overload (``--overload``): our server only, first at ``--connections``, then at ``--overload-connections``
(default 4x), then at ``--connections`` again (is full throughput back at once?), with
IMGCLS_MAX_QUEUE_SIZE as the environment has it (default 256 images per worker).
Counts answers by status with benchmarks/multipart_status.lua (503s must carry Retry-After). wrk's own
latency covers every answer, 503s included, and wrk's Lua cannot see per-request latency, so the
latency of accepted (200) requests is measured by a low-rate probe client (``--probe-rate`` requests/s,
one keep-alive connection, in this process) running alongside wrk; it is cross-checked by the server's
own request-duration histogram (200s only, bucket-interpolated). RSS of the server's processes before,
during (peak) and after shows whether memory stays flat.

Startup (``--startup``): time from launching ``imgcls serve`` to /healthz/ready answering 200,
``--startup-runs`` times, median. With several workers, the first worker that is ready answers.

Our server gets a repository of its own under var/benchmarks/serve_load/ (a symlink to the chosen
version with "production" pointing at it), so it loads just that version, whichever alias it has.
Other settings come from the environment as usual (IMGCLS_MAX_BATCH_SIZE, IMGCLS_INTRA_OP_THREADS, ...).
Everything here runs on the same machine as the servers: wrk, this process and any other process take
CPU from them. The 1-minute load average is checked first, and for every round the busy cores are
reported by who used them (each server's processes, wrk, this script, other processes, interrupts,
time stolen by the hypervisor); a round where other processes or the hypervisor took more than 0.1
core is flagged. Figures are only worth keeping from a quiet machine.
"""

import argparse
import contextlib
import functools
import gzip
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image
from serve_load_tools import (
    Server,
    WrkResult,
    average_batch,
    delta,
    free_port,
    http_request,
    images_per_second,
    launch,
    load_average,
    log,
    machine,
    measured,
    multipart,
    probing,
    run_wrk,
    scrape,
    server_p99_ms,
    tree_rss_mib,
    uptime,
    warn_if_busy,
    warn_if_crowded,
)

from service.imaging import DecodeLimits, decode_image, preprocess
from service.inference.providers import default_threads
from service.repository import ModelRepository, RepositoryError
from service.repository.manifest import Manifest
from service.repository.store import ONNX_FILE

REPO = Path(__file__).resolve().parents[1]
STATUS_LUA = Path(__file__).resolve().with_name("multipart_status.lua")
FASHION_MNIST_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
PEER_PACKAGES = ("bentoml==1.4.40", "onnxruntime", "pillow", "numpy")
PEER_NAME = "bentoml 1.4.40"


# ------------------------------------------------------------------------------------------ the target


@dataclass(frozen=True)
class Target:
    """One published version, the model file that runs and the image that is sent."""

    model: str
    version: int
    variant: str
    manifest: Manifest
    onnx_path: Path  # the file our server runs for this variant; the peer and the raw runs use it too
    root: Path  # a repository holding just this version, as production
    image: Path
    image_bytes: bytes


def fashion_mnist_test_image(index: int) -> np.ndarray:
    """One 28x28 uint8 image of the Fashion-MNIST test set (IDX format)."""
    with gzip.open(FASHION_MNIST_TEST, "rb") as handle:
        magic, count, rows, cols = np.frombuffer(handle.read(16), ">u4")
        if magic != 2051 or not 0 <= index < count:
            raise SystemExit(f"{FASHION_MNIST_TEST}: not an IDX image file, or no image {index}")
        handle.seek(16 + index * rows * cols)
        return np.frombuffer(handle.read(rows * cols), np.uint8).reshape(rows, cols)


def make_image(manifest: Manifest, index: int, folder: Path) -> Path:
    """A real image at the model's input size: PNG for a grayscale model, JPEG (quality 90) for RGB."""
    height, width = manifest.preprocessing.input_size
    image = Image.fromarray(fashion_mnist_test_image(index))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    if manifest.preprocessing.color_mode == "L":
        path = folder / f"fashion-mnist-{index}-{width}x{height}.png"
        image.save(path)
    else:
        path = folder / f"fashion-mnist-{index}-{width}x{height}-rgb.jpg"
        image.convert("RGB").save(path, quality=90)
    return path


def prepare_target(args: argparse.Namespace, work: Path) -> Target:
    repository = ModelRepository(args.model_root)
    try:
        version = repository.resolve(args.model, args.version)
        manifest = repository.verify(args.model, version)
    except RepositoryError as error:
        raise SystemExit(f"{args.model_root}: {error}") from error
    folder = repository.path(args.model, version).resolve()
    if args.variant == "fp32":
        onnx_path = folder / ONNX_FILE
    elif args.variant in manifest.variants:
        onnx_path = folder / manifest.variants[args.variant].file
    else:
        raise SystemExit(
            f"{args.model} v{version} has no {args.variant} variant (it has: {' '.join(['fp32', *manifest.variants])})"
        )
    root = work / "repository"
    shutil.rmtree(root, ignore_errors=True)
    (root / args.model).mkdir(parents=True)
    (root / args.model / str(version)).symlink_to(folder)
    (root / args.model / "aliases.json").write_text(json.dumps({"production": version}))
    image = args.image or make_image(manifest, args.image_index, work)
    return Target(args.model, version, args.variant, manifest, onnx_path, root, image, image.read_bytes())


# ------------------------------------------------------------------------------------------------ servers


def server_threads(workers: int) -> int:
    """onnxruntime threads per worker of our server: IMGCLS_INTRA_OP_THREADS, or cores / workers."""
    configured = int(os.environ.get("IMGCLS_INTRA_OP_THREADS", "0"))
    return configured or default_threads(workers)


def start_ours(args: argparse.Namespace, target: Target, work: Path) -> Server:
    env = os.environ | {"IMGCLS_DEFAULT_MODEL": target.model, "IMGCLS_VARIANT": target.variant}
    command = [str(Path(sys.executable).parent / "imgcls"), "serve", "--no-auth", "--port", str(port := free_port())]
    command += ["--workers", str(args.workers), "--model-root", str(target.root)]
    path = f"/v1/models/{target.model}/classify"
    return launch("ours", command, env, REPO, work / "ours.log", port=port, path=path, lua=args.lua)


def ensure_peer_venv(venv: Path) -> Path:
    """The peer's venv, created on first use: python3 -m venv, then pip install PEER_PACKAGES."""
    bentoml = venv / "bin" / "bentoml"
    if bentoml.exists():
        return bentoml
    started = time.monotonic()
    log(f"peer: creating {venv} (once: pip install {' '.join(PEER_PACKAGES)}, a few minutes)")
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off", *PEER_PACKAGES]
    with subprocess.Popen(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(("Collecting", "Installing", "Successfully", "ERROR")):
                log(f"peer: pip: {line.rstrip()[:160]}  [{time.monotonic() - started:.0f} s]")
    if proc.returncode != 0 or not bentoml.exists():
        shutil.rmtree(venv, ignore_errors=True)
        raise SystemExit(f"peer: pip install failed (exit {proc.returncode}); see the pip lines above")
    log(f"peer: {venv} ready in {time.monotonic() - started:.0f} s")
    return bentoml


def start_peer(args: argparse.Namespace, target: Target, work: Path, threads: int) -> Server:
    bentoml = ensure_peer_venv(args.peer_venv)
    pre = target.manifest.preprocessing
    if pre.input_size[0] != pre.input_size[1]:
        raise SystemExit("the peer takes square inputs only (PEER_SIZE)")
    env = os.environ | {
        "PEER_MODEL": str(target.onnx_path),
        "PEER_SIZE": str(pre.input_size[0]),
        "PEER_CHANNELS": str(pre.channels),
        "PEER_MEAN": ",".join(str(v) for v in pre.mean),
        "PEER_STD": ",".join(str(v) for v in pre.std),
        "PEER_THREADS": str(threads),
        "BENTOML_HOME": str(args.peer_venv.parent / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    if not args.peer_access_log:  # as ours: imgcls serve logs no line per request unless --access-log
        env["BENTOML_CONFIG_OVERRIDES"] = json.dumps({"services": {"logging": {"access": {"enabled": False}}}})
    port = free_port()
    command = [str(bentoml), "serve", "service:Classifier", "--host", "127.0.0.1", "--port", str(port)]
    return launch(PEER_NAME, command, env, args.peer_dir, work / "peer.log", port=port, path="/classify", lua=args.lua)


def top1(server: Server, target: Target) -> int:
    """Classify the benchmark image; the top-1 class index (fails loudly on anything but 200).

    With several workers, readiness is answered by whichever worker takes the probe while another may still
    be loading (it answers 503 with Retry-After): wait until ten requests in a row get 200.
    """
    body, headers = multipart(target.image, target.image_bytes)
    deadline = time.monotonic() + 120
    in_a_row = 0
    while in_a_row < 10:
        status, _, answer = http_request(server.port, "POST", server.path, body, headers)
        if status == 503 and time.monotonic() < deadline:
            in_a_row = 0
            time.sleep(0.2)
            continue
        if status != 200:
            raise SystemExit(f"{server.name}: POST {server.path} answered {status}: {answer[:500]!r}")
        in_a_row += 1
    decoded = json.loads(answer)
    if server.name == "ours":
        return int(decoded["results"][0]["top"][0]["index"])
    first = decoded[0] if isinstance(decoded, list) else decoded
    return int(first["top"][0]["index"])


# ------------------------------------------------------------------------------------------ raw ceiling


def raw_ceiling(target: Target, threads: int, batch_sizes: list[int], seconds: float) -> dict[str, Any]:
    """images/s of one in-process onnxruntime session on the same file: compute alone, and with
    decode_image + preprocess (the service's own code) for every image of every batch."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(target.onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    limits, pre = DecodeLimits(), target.manifest.preprocessing
    one = preprocess(decode_image(target.image_bytes, limits), pre)

    def compute(batch: np.ndarray) -> object:
        return session.run(None, {name: batch})

    def decode_and_compute(size: int) -> object:
        images = [preprocess(decode_image(target.image_bytes, limits), pre) for _ in range(size)]
        return session.run(None, {name: np.stack(images)})

    compute_only, with_decode = {}, {}
    for size in batch_sizes:
        batch = np.ascontiguousarray(np.repeat(one[None], size, axis=0))
        compute_only[size] = round(images_per_second(functools.partial(compute, batch), size, seconds), 1)
        log(f"raw: batch {size}: {compute_only[size]:,.0f} images/s")
    for size in sorted({1, batch_sizes[-1]}):
        with_decode[size] = round(images_per_second(functools.partial(decode_and_compute, size), size, seconds), 1)
        log(f"raw with decode: batch {size}: {with_decode[size]:,.0f} images/s")
    return {"threads": threads, "images_per_s": compute_only, "with_decode_images_per_s": with_decode}


# ------------------------------------------------------------------------------------------------- modes


def best(results: list[WrkResult], server: str) -> WrkResult:
    return max((r for r in results if r.server == server), key=lambda r: r.requests_per_s)


def capacity(args: argparse.Namespace, target: Target, work: Path, report: dict[str, Any]) -> None:
    threads = server_threads(args.workers) * args.workers
    with contextlib.ExitStack() as stack:
        ours = start_ours(args, target, work)
        stack.callback(ours.stop)
        servers = [ours]
        if args.peer:
            peer = start_peer(args, target, work, threads)
            stack.callback(peer.stop)
            servers.append(peer)
        for server in servers:
            server.wait_ready("/healthz/ready" if server is ours else "/readyz", args.ready_timeout)
            log(f"{server.name}: ready at {server.url} (log {server.log})")
        answers = {server.name: top1(server, target) for server in servers}
        labels = target.manifest.labels
        log("top-1: " + ", ".join(f"{name} {index} ({labels[index]})" for name, index in answers.items()))
        if len(set(answers.values())) > 1:
            log("WARNING: the servers disagree on the top-1 class of the same image")
        for server in servers:
            log(f"warm-up: {server.name}, {args.warmup:g} s")
            run_wrk(server, target.image, args.connections, args.warmup, server.lua, args.wrk_timeout)
        rounds: list[WrkResult] = []
        batches: list[float] = []
        for number in range(1, args.rounds + 1):
            for server in servers:
                before = scrape(ours)
                load = functools.partial(
                    run_wrk, server, target.image, args.connections, args.duration, server.lua, args.wrk_timeout
                )
                result = measured(load, servers)
                if server is ours and (batch := average_batch(before, scrape(ours), target.model)) is not None:
                    batches.append(batch)
                rounds.append(result)
                log(
                    f"round {number} {server.name}: {result.requests_per_s:,.1f} req/s, p50 {result.p50_ms:.1f} ms, "
                    f"p99 {result.p99_ms:.1f} ms, non-200 {result.non200}, errors {result.errors}; "
                    f"busy cores {result.cpu_cores}"
                )
    mean_batch = statistics.fmean(batches) if batches else 1.0
    at_batch = max(1, round(mean_batch))
    # the server's own batch size last: raw_ceiling measures decode + compute at it
    raw = raw_ceiling(target, threads, [s for s in (1, 8, 32) if s != at_batch] + [at_batch], args.raw_seconds)
    report["rounds"] = [asdict(r) for r in rounds]
    report["figures"] = "best round of each server (highest req/s)"
    report["ours"] = asdict(best(rounds, "ours")) | {"average_batch_size": round(mean_batch, 2)}
    report["raw_onnxruntime"] = raw
    report["target"]["peer"] = {"threads": threads, "access_log": args.peer_access_log} if args.peer else None
    ours_best = best(rounds, "ours").requests_per_s
    ratios = {
        "ours_over_raw_at_server_batch": ours_best / raw["images_per_s"][at_batch],
        "ours_over_raw_with_decode_at_server_batch": ours_best / raw["with_decode_images_per_s"][at_batch],
    }
    if args.peer:
        report["peer"] = asdict(best(rounds, PEER_NAME))
        ratios["ours_over_peer"] = ours_best / best(rounds, PEER_NAME).requests_per_s
        pairs = zip(rounds[0::2], rounds[1::2], strict=True)
        ratios["ours_over_peer_median_of_rounds"] = statistics.median(
            a.requests_per_s / b.requests_per_s for a, b in pairs
        )
    report["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    print_capacity(args, report)


def print_capacity(args: argparse.Namespace, report: dict[str, Any]) -> None:
    ours, raw = report["ours"], report["raw_onnxruntime"]
    print(f"\n{args.connections} connections, {args.duration:g} s rounds x {args.rounds}; figures: best round of each")
    print("| server | req/s | p50 ms | p99 ms | non-200 | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [(f"ours ({args.workers} worker(s), avg batch {ours['average_batch_size']:.1f})", ours)]
    if "peer" in report:
        rows.append((PEER_NAME, report["peer"]))
    for name, row in rows:
        errors = sum(row["socket_errors"].values())
        print(
            f"| {name} | {row['requests_per_s']:,.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} "
            f"| {row['non200']} | {errors} |"
        )
    at_batch = max(1, round(ours["average_batch_size"]))
    for title, figures in (
        ("raw onnxruntime", raw["images_per_s"]),
        ("raw decode+preprocess+onnxruntime", raw["with_decode_images_per_s"]),
    ):
        for size, rate in sorted(figures.items()):
            mark = " (= our average batch)" if size == at_batch else ""
            print(f"| {title}, {raw['threads']} threads, batch {size}{mark} | {rate:,.0f} images/s | | | | |")
    ratios = report["ratios"]
    print("\nratios (req/s over req/s, or over images/s; one image per request):")
    if "ours_over_peer" in ratios:
        print(
            f"  ours / {PEER_NAME}: {ratios['ours_over_peer']:.2f} (best rounds), "
            f"{ratios['ours_over_peer_median_of_rounds']:.2f} (median of the per-round ratios)"
        )
    print(f"  ours / raw onnxruntime at batch {at_batch}: {ratios['ours_over_raw_at_server_batch']:.2f}")
    print(
        f"  ours / raw decode+preprocess+onnxruntime at batch {at_batch}: "
        f"{ratios['ours_over_raw_with_decode_at_server_batch']:.2f}"
    )
    print("all rounds:")
    for r in report["rounds"]:
        print(
            f"  {r['server']}: {r['requests_per_s']:,.1f} req/s, p50 {r['p50_ms']:.1f}, p99 {r['p99_ms']:.1f}, "
            f"busy cores {r['cpu_cores']}"
        )
    warn_if_crowded(report["rounds"])


def overload(args: argparse.Namespace, target: Target, work: Path, report: dict[str, Any]) -> None:
    connections = args.overload_connections or 4 * args.connections
    queue = int(os.environ.get("IMGCLS_MAX_QUEUE_SIZE", "256"))
    phases: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        ours = start_ours(args, target, work)
        stack.callback(ours.stop)
        ours.wait_ready("/healthz/ready", args.ready_timeout)
        top1(ours, target)
        run_wrk(ours, target.image, args.connections, args.warmup, STATUS_LUA, args.wrk_timeout)
        rss = {"before": tree_rss_mib(ours.proc.pid)}
        # "after": the same load as "normal" right after the overload, to show the recovery is immediate
        for phase, n in (("normal", args.connections), ("overload", connections), ("after", args.connections)):
            peak: dict[int, float] = {}
            halt = threading.Event()

            def sample(halt: threading.Event = halt, peak: dict[int, float] = peak) -> None:
                while not halt.wait(0.5):
                    for pid, mib in tree_rss_mib(ours.proc.pid).items():
                        peak[pid] = max(peak.get(pid, 0.0), mib)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            before = scrape(ours)
            with probing(ours, target.image, target.image_bytes, args.probe_rate) as probe:
                load = functools.partial(run_wrk, ours, target.image, n, args.duration, STATUS_LUA, args.wrk_timeout)
                result = measured(load, [ours])
            after = scrape(ours)
            halt.set()
            sampler.join()
            rss[f"peak during {phase}"] = peak
            rss[f"after {phase}"] = tree_rss_mib(ours.proc.pid)
            phases[phase] = asdict(result) | {
                "probe": probe.summary(),
                "server_p99_ms_accepted": _round(server_p99_ms(before, after, target.model)),
                "average_batch_size": _round(average_batch(before, after, target.model)),
                "server_rejects": {
                    reason: delta(before, after, "imgcls_rejects_total", reason=reason)
                    for reason in {
                        dict(labels).get("reason", "") for name, labels in after if name == "imgcls_rejects_total"
                    }
                },
            }
            log(f"{phase}: {result.requests_per_s:,.1f} req/s, statuses {result.statuses}, probe {probe.summary()}")
    report["overload"] = {"max_queue_size_per_worker": queue, "phases": phases, "rss_mib": rss}
    print_overload(args, report["overload"])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def print_overload(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    print(
        f"\noverload: {args.workers} workers, IMGCLS_MAX_QUEUE_SIZE {figures['max_queue_size_per_worker']} per worker"
    )
    print(
        "| phase | conns | req/s | p99 all (wrk) | p50/p99 accepted (probe, n) | p99 accepted (server) "
        "| 200 | 503 | 503 w/o Retry-After | other non-200 | socket errors | avg batch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for phase, r in figures["phases"].items():
        probe, statuses = r["probe"], r["statuses"]
        other = sum(n for code, n in statuses.items() if code not in (200, 503))
        print(
            f"| {phase} | {r['connections']} | {r['requests_per_s']:,.1f} | {r['p99_ms']:.1f} ms "
            f"| {probe['accepted_p50_ms']} / {probe['accepted_p99_ms']} ms ({probe['statuses'].get(200, 0)}) "
            f"| {r['server_p99_ms_accepted']} ms | {statuses.get(200, 0)} | {statuses.get(503, 0)} "
            f"| {r['retry_after_missing']} | {other} | {sum(r['socket_errors'].values())} | {r['average_batch_size']} |"
        )
    print("RSS of the server's processes, MiB (total: per process):")
    for moment, per_process in figures["rss_mib"].items():
        listed = ", ".join(f"{pid} {mib:.0f}" for pid, mib in sorted(per_process.items()))
        print(f"  {moment}: {sum(per_process.values()):.0f} ({listed})")
    totals = {moment: sum(per_process.values()) for moment, per_process in figures["rss_mib"].items()}
    print(f"  change from before to after the overload: {totals['after overload'] - totals['before']:+.1f} MiB")
    normal, after = figures["phases"]["normal"], figures["phases"]["after"]
    print(
        f"recovery: right after the overload, {after['requests_per_s']:,.1f} req/s = "
        f"{after['requests_per_s'] / normal['requests_per_s']:.0%} of the throughput before it"
    )
    print(
        "p99 accepted (probe): one keep-alive client at --probe-rate requests/s alongside wrk, 200 answers only; "
        "(server): the server's request histogram, 200 answers only, interpolated in its buckets"
    )
    if not figures["phases"]["overload"]["statuses"].get(503):
        print(
            f"no 503s: {figures['phases']['overload']['connections']} connections never filled a queue of "
            f"{figures['max_queue_size_per_worker']} images per worker (each connection has one request in flight); "
            "use more --overload-connections or a smaller IMGCLS_MAX_QUEUE_SIZE to see the bound act"
        )
    warn_if_crowded(list(figures["phases"].values()))


def startup(args: argparse.Namespace, target: Target, work: Path, report: dict[str, Any]) -> None:
    runs = []
    for number in range(1, args.startup_runs + 1):
        server = start_ours(args, target, work)
        try:
            listening, ready = server.wait_ready("/healthz/ready", args.ready_timeout)
        finally:
            server.stop()
        runs.append({"listening_s": round(listening, 3), "ready_s": round(ready, 3)})
        log(f"startup {number}: answering after {listening:.2f} s, ready after {ready:.2f} s")
    report["startup"] = {
        "runs": runs,
        "median_listening_s": statistics.median(r["listening_s"] for r in runs),
        "median_ready_s": statistics.median(r["ready_s"] for r in runs),
    }
    s = report["startup"]
    print(
        f"\nstartup ({args.workers} workers, {target.model} v{target.version} {target.variant}), {len(runs)} runs: "
        f"median {s['median_ready_s']:.2f} s to ready (first answer {s['median_listening_s']:.2f} s); "
        f"each: {', '.join(str(r['ready_s']) for r in runs)}"
    )


# -------------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-root", type=Path, default=Path(os.environ.get("IMGCLS_MODEL_ROOT", "var/models")))
    parser.add_argument("--model", default="fashion-mnist")
    parser.add_argument("--version", default=None, help="number or alias (default: production, else the latest)")
    parser.add_argument("--variant", default="fp32", help="fp32 or a variant of the version, e.g. int8")
    parser.add_argument("--image", type=Path, help="the image to send (default: a Fashion-MNIST test image)")
    parser.add_argument("--image-index", type=int, default=0, help="which Fashion-MNIST test image (default 0)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server, alternating ours and the peer")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load per server before the rounds")
    parser.add_argument("--workers", type=int, default=2, help="our server's processes")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--peer-dir", type=Path, default=REPO.parent / "shared" / "peers" / "bentoml")
    parser.add_argument("--peer-venv", type=Path, default=REPO / "var" / "peers" / "bentoml-venv")
    parser.add_argument(
        "--peer-access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the peer logs a line per request (BentoML's default; off by default, as ours is)",
    )
    parser.add_argument("--raw-seconds", type=float, default=3, help="seconds per raw onnxruntime figure")
    parser.add_argument("--wrk-timeout", type=int, default=10, help="wrk's per-request timeout, seconds")
    parser.add_argument("--ready-timeout", type=float, default=180)
    parser.add_argument("--overload", action="store_true", help="our server at --overload-connections")
    parser.add_argument("--overload-connections", type=int, help="default: 4 x --connections")
    parser.add_argument("--probe-rate", type=float, default=10, help="requests/s of the overload latency probe")
    parser.add_argument("--startup", action="store_true", help="time imgcls serve from launch to ready")
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=REPO / "var" / "benchmarks" / "serve_load")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.lua = args.peer_dir.parent / "multipart.lua"
    if args.connections < 2:
        parser.error("--connections must be at least 2 (wrk runs 2 threads)")
    if shutil.which("wrk") is None and not args.startup:
        parser.error("wrk is not installed (Debian package wrk)")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so the servers we started are stopped


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where it was inherited as ignored
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine()}
    warn_if_busy(report["machine"]["load_1min_before"])
    target = prepare_target(args, work)
    report["target"] = {
        "model": target.model,
        "version": target.version,
        "variant": target.variant,
        "architecture": target.manifest.architecture,
        "model_file": str(target.onnx_path),
        "image": str(target.image),
        "image_bytes": len(target.image_bytes),
        "workers": args.workers,
        "threads_per_worker": server_threads(args.workers),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("IMGCLS_")},
    }
    m = report["machine"]
    print(f"machine: {m['nproc']} cores ({m['cpu_model']}); {m['uptime_before']}")
    print(
        f"model: {target.model} v{target.version} {target.variant} ({target.manifest.architecture}), "
        f"{target.onnx_path}; image {target.image} ({len(target.image_bytes):,} bytes)"
    )
    if args.startup:
        startup(args, target, work, report)
    if args.overload:
        overload(args, target, work, report)
    if not (args.startup or args.overload):
        capacity(args, target, work, report)
    report["machine"]["uptime_after"] = uptime()
    report["machine"]["load_1min_after"] = load_average()
    print(f"\nload before: {m['uptime_before']}\nload after:  {m['uptime_after']}")
    warn_if_busy(m["load_1min_before"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted; the servers it started are stopped") from None
