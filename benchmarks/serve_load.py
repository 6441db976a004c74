"""Load test of ``imgcls serve`` with real encoded images, against its peers and the raw onnxruntime ceiling.

    .venv/bin/python benchmarks/serve_load.py --model-root var/models --model fashion-mnist --name serve-small
    .venv/bin/python benchmarks/serve_load.py --model-root M --model m --duration 3 --rounds 2 --results-dir /tmp
    .venv/bin/python benchmarks/serve_load.py --model-root var/models --model fashion-mnist --overload
    .venv/bin/python benchmarks/serve_load.py --model-root var/models --model fashion-mnist --startup

Capacity (the default mode). The contenders: our server (``imgcls serve``, auth off, ``--workers`` processes),
each peer of ``--peers`` (benchmarks/peers/: BentoML and LitServe, each in its own venv under var/peers/,
configured as its docs recommend for throughput, with as many processes and onnxruntime threads as ours and
no access log, as ours has none) and the raw onnxruntime ceiling (benchmarks/ceiling.py). They all run the
same ONNX file of one published version; wrk posts the same encoded image (a Fashion-MNIST test image at the
model's input size: PNG for grayscale, JPEG for RGB) to every server at ``--connections``.

Fairness: each contender runs ALONE during its turn (started, checked, warmed up for ``--warmup`` s,
measured for ``--duration`` s, stopped; then the next), every contender once per round, the order reversed
every round (ABC, CBA, ...), ``--rounds`` rounds (at least 3 for figures worth keeping). Before the rounds,
the ceiling is swept (both layouts a server could use, batch sizes 1-32, ``--raw-seconds`` each) and its
best layout and batch are what its turns measure. Headlines are medians with their range; the ratios are
ours over each peer and ours over the ceiling, of the medians.

Overload (``--overload``): our server only, ``--rounds`` times: ``--connections``, then
``--overload-connections`` (default 4x), then ``--connections`` again. Judged by the server's own request
histogram (200s only): p99 at 4x over p99 unloaded, per round, median and range. Every answer must be 200
or 503 with Retry-After (benchmarks/multipart_status.lua counts them); a probe client's latency of accepted
requests and the processes' memory are kept beside it.

Startup (``--startup``): launch to /healthz/ready answering 200, ``--startup-runs`` times, median.

Every mode writes its whole result to benchmarks/results/<--name>-<date>.json (benchmarks/record.py) and
prints the table benchmarks/tables.py makes of it. Everything runs on this machine: wrk and this script take
CPU from the servers, and every turn records who used the CPU; a turn where other processes took more than
0.1 core is flagged. Figures are only worth keeping from a quiet machine.
"""

import argparse
import contextlib
import functools
import io
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ceiling
import numpy as np
import peer_servers
import record
import tables
from PIL import Image
from rounds import MIN_ROUNDS, alternating, ratio, spread
from serve_load_tools import (
    Server,
    average_batch,
    crowded,
    delta,
    fashion_mnist_test_images,
    free_port,
    http_request,
    launch,
    log,
    measured,
    multipart,
    probing,
    run_wrk,
    scrape,
    server_p99_ms,
    tree_rss_mib,
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
OURS = "imgcls"
CEILING = "raw onnxruntime"
CEILING_IMAGES = 32  # different test images fed to the ceiling: its largest batch


# ------------------------------------------------------------------------------------------ the target


@dataclass(frozen=True)
class Target:
    """One published version, the model file that runs and the images that are sent."""

    model: str
    version: int
    variant: str
    manifest: Manifest
    onnx_path: Path  # the file our server runs for this variant; the peers and the ceiling run it too
    root: Path  # a repository holding just this version, as production
    image: Path
    image_bytes: bytes


def encode(pixels: np.ndarray, manifest: Manifest) -> tuple[bytes, str]:
    """A 28x28 test image at the model's input size: PNG for a grayscale model, JPEG (quality 90) for RGB."""
    height, width = manifest.preprocessing.input_size
    image = Image.fromarray(pixels)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    if manifest.preprocessing.color_mode == "L":
        image.save(out, format="PNG")
        return out.getvalue(), f"{width}x{height}.png"
    image.convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue(), f"{width}x{height}-rgb.jpg"


def ceiling_inputs(manifest: Manifest) -> np.ndarray:
    """CEILING_IMAGES different test images, encoded as the benchmark image is and prepared by the service's
    own decode and preprocess, laid out as the model takes them: what a server's batches hold."""
    limits = DecodeLimits()
    rows = [
        preprocess(decode_image(encode(pixels, manifest)[0], limits), manifest.preprocessing)
        for pixels in fashion_mnist_test_images(CEILING_IMAGES)
    ]
    batch = np.stack(rows)
    if manifest.preprocessing.layout == "NHWC":
        batch = batch.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(batch, dtype=np.float32)


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
    if args.image:
        image = args.image
    else:
        data, suffix = encode(fashion_mnist_test_images(1, args.image_index)[0], manifest)
        image = work / f"fashion-mnist-{args.image_index}-{suffix}"
        image.write_bytes(data)
    return Target(args.model, version, args.variant, manifest, onnx_path, root, image, image.read_bytes())


def peer_model(target: Target) -> peer_servers.Model:
    pre = target.manifest.preprocessing
    size = pre.input_size[0]
    if pre.input_size[1] != size or pre.resize not in (None, size) or pre.layout != "NCHW":
        raise SystemExit("the peers take square NCHW inputs resized to the input size alone: use --peers none")
    return peer_servers.Model(target.onnx_path, pre.input_size[0], pre.channels, tuple(pre.mean), tuple(pre.std))


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
    return launch(OURS, command, env, REPO, work / "ours.log", port=port, path=path, lua=peer_servers.LUA)


def top1(server: Server, target: Target) -> int:
    """Classify the benchmark image; the top-1 class index (fails loudly on anything but 200).

    With several workers, readiness is answered by whichever worker takes the probe while another may still
    be loading (it answers 503 with Retry-After): wait until ten requests in a row get 200.
    """
    body, headers = multipart(target.image, target.image_bytes)
    in_a_row, refused = 0, 0
    while in_a_row < 10:
        status, _, answer = http_request(server.port, "POST", server.path, body, headers)
        if status == 503 and refused < 600:
            in_a_row, refused = 0, refused + 1
            threading.Event().wait(0.2)
            continue
        if status != 200:
            raise SystemExit(f"{server.name}: POST {server.path} answered {status}: {answer[:500]!r}")
        in_a_row += 1
    decoded = json.loads(answer)
    if server.name == OURS:
        return int(decoded["results"][0]["top"][0]["index"])
    return peer_servers.top_index(decoded)


# ------------------------------------------------------------------------------------------------- modes


class Contenders:
    """Starts and stops each contender for its turn: our server, the peers, the ceiling's processes."""

    def __init__(self, args: argparse.Namespace, target: Target, work: Path) -> None:
        self.args, self.target, self.work = args, target, work
        self.threads = server_threads(args.workers)
        self.peers = {name: peer_servers.peer(name) for name in args.peers}
        self.venvs = {name: peer_servers.ensure_venv(chosen) for name, chosen in self.peers.items()}
        self.versions = {name: peer_servers.venv_versions(venv) for name, venv in self.venvs.items()}
        self.model = peer_model(target) if self.peers else None
        self.top1: dict[str, int] = {}

    def label(self, name: str) -> str:
        processes = f"{self.args.workers} × {self.threads} thread{'s' if self.threads > 1 else ''}"
        if name == OURS:
            return f"imgcls ({processes})"
        return f"{peer_servers.describe(self.versions[name], self.peers[name])} ({processes})"

    @contextlib.contextmanager
    def running(self, name: str) -> Iterator[Server]:
        if name == OURS:
            server = start_ours(self.args, self.target, self.work)
        else:
            assert self.model is not None
            log_path = self.work / f"{name}.log"
            venv = self.venvs[name]
            server = peer_servers.start(self.peers[name], venv, self.model, self.args.workers, self.threads, log_path)
        try:
            ready_path = "/healthz/ready" if name == OURS else self.peers[name].ready_path
            server.wait_ready(ready_path, self.args.ready_timeout)
            self.top1[name] = top1(server, self.target)
            yield server
        finally:
            server.stop()


def capacity(args: argparse.Namespace, target: Target, work: Path) -> dict[str, Any]:
    contenders = Contenders(args, target, work)
    inputs = ceiling_inputs(target.manifest)
    layouts = ceiling.layouts(args.workers, contenders.threads)
    sizes = ceiling.batch_sizes(CEILING_IMAGES, fixed_batch=target.manifest.input.shape[0] == 1)
    log(f"ceiling: sweeping {', '.join(layout.label for layout in layouts)} at batch {sizes}")
    sweep = ceiling.sweep(target.onnx_path, layouts, inputs, sizes, args.raw_seconds)
    best = sweep["best"]
    layout, batch = ceiling.Layout(best["processes"], best["threads"]), best["batch"]
    log(f"ceiling: best {layout.label} at batch {batch}: {best['rate']:,.0f} images/s")
    names = [OURS, *args.peers, CEILING]
    order = alternating(names, args.rounds)
    turns: list[dict[str, Any]] = []
    for number, names_in_order in enumerate(order, start=1):
        for name in names_in_order:
            if name == CEILING:
                with ceiling.Engine(target.onnx_path, layout, inputs) as engine:
                    rate, cores = measured(
                        functools.partial(engine.images_per_second, batch, args.duration), {name: engine.pids}
                    )
                turn: dict[str, Any] = {"round": number, "name": name, "images_per_s": round(rate, 1)}
            else:
                with contenders.running(name) as server:
                    run_wrk(server, target.image, args.connections, args.warmup, server.lua, args.wrk_timeout)
                    before = scrape(server) if name == OURS else None
                    load = functools.partial(
                        run_wrk, server, target.image, args.connections, args.duration, server.lua, args.wrk_timeout
                    )
                    result, cores = measured(load, {name: [server.proc.pid]})
                    turn = {"round": number, "name": name, **asdict(result)}
                    if before is not None:
                        turn["average_batch_size"] = average_batch(before, scrape(server), target.model)
            turn["cpu_cores"] = cores
            turn["crowded"] = crowded(cores)
            turns.append(turn)
            warn_if_crowded(f"round {number}, {name}", cores)
            figure = f"{turn['images_per_s']:,.0f} images/s" if name == CEILING else describe_turn(turn)
            log(f"round {number} {name}: {figure}; busy cores {cores}")
    return summarize_capacity(args, target, contenders, sweep, order, turns)


def describe_turn(turn: dict[str, Any]) -> str:
    return (
        f"{turn['requests_per_s']:,.1f} req/s, p50 {turn['p50_ms']:.1f} ms, p99 {turn['p99_ms']:.1f} ms, "
        f"non-200 {turn['non200']}, socket errors {sum(turn['socket_errors'].values())}"
    )


def summarize_capacity(
    args: argparse.Namespace,
    target: Target,
    contenders: Contenders,
    sweep: dict[str, Any],
    order: list[list[str]],
    turns: list[dict[str, Any]],
) -> dict[str, Any]:
    def of(name: str, key: str) -> list[float]:
        return [turn[key] for turn in turns if turn["name"] == name and turn.get(key) is not None]

    servers: dict[str, Any] = {}
    for name in [OURS, *args.peers]:
        servers[name] = {
            "label": contenders.label(name),
            "requests_per_s": spread(of(name, "requests_per_s")),
            "p50_ms": spread(of(name, "p50_ms"), 2),
            "p99_ms": spread(of(name, "p99_ms"), 2),
            "non200": sum(of(name, "non200")),
            "socket_errors": sum(sum(turn["socket_errors"].values()) for turn in turns if turn["name"] == name),
            "top1": contenders.top1.get(name),
        }
    if batches := of(OURS, "average_batch_size"):
        servers[OURS]["average_batch_size"] = spread(batches, 2)
    ours = of(OURS, "requests_per_s")
    best = sweep["best"]
    ratios = {f"ours_over_{name}": ratio(ours, of(name, "requests_per_s")) for name in args.peers}
    ratios["ours_over_ceiling"] = ratio(ours, of(CEILING, "images_per_s"))
    if len({index for index in contenders.top1.values()}) > 1:
        log(f"WARNING: the servers disagree on the top-1 class of the same image: {contenders.top1}")
    return {
        "mode": "capacity",
        "target": target_facts(args, target) | {"peers": contenders.versions},
        "ceiling": {
            "layout": {"processes": best["processes"], "threads": best["threads"]},
            "batch": best["batch"],
            "images_per_s": spread(of(CEILING, "images_per_s")),
            "sweep": sweep,
            "inputs": f"{CEILING_IMAGES} different Fashion-MNIST test images, encoded as the benchmark image, "
            "decoded and preprocessed by the service's code",
        },
        "order": order,
        "turns": turns,
        "servers": servers,
        "ratios": ratios,
        "crowded_turns": sum(1 for turn in turns if turn["crowded"]),
    }


def target_facts(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    return {
        "model": target.model,
        "version": target.version,
        "variant": target.variant,
        "architecture": target.manifest.architecture,
        "input_size": list(target.manifest.preprocessing.input_size),
        "model_file": str(target.onnx_path),
        "image": target.image.name,
        "image_bytes": len(target.image_bytes),
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "workers": args.workers,
        "threads_per_worker": server_threads(args.workers),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("IMGCLS_")},
    }


def overload(args: argparse.Namespace, target: Target, work: Path) -> dict[str, Any]:
    connections = args.overload_connections or 4 * args.connections
    phases: list[dict[str, Any]] = []
    ours = start_ours(args, target, work)
    try:
        ours.wait_ready("/healthz/ready", args.ready_timeout)
        top1(ours, target)
        run_wrk(ours, target.image, args.connections, args.warmup, STATUS_LUA, args.wrk_timeout)
        rss_before = sum(tree_rss_mib(ours.proc.pid).values())
        for number in range(1, args.rounds + 1):
            # "after": the nominal load right after the overload: is full throughput back at once?
            for phase, n in (("normal", args.connections), ("overload", connections), ("after", args.connections)):
                phases.append({"round": number, "phase": phase} | overload_phase(args, target, ours, n))
                log(f"round {number} {phase}: {describe_phase(phases[-1])}")
        rss_after = sum(tree_rss_mib(ours.proc.pid).values())
    finally:
        ours.stop()

    def of(phase: str, key: str) -> list[float]:
        return [p[key] for p in phases if p["phase"] == phase and p.get(key) is not None]

    normal, loaded = of("normal", "server_p99_ms_accepted"), of("overload", "server_p99_ms_accepted")
    return {
        "mode": "overload",
        "target": target_facts(args, target) | {"overload_connections": connections},
        "max_queue_size_per_worker": int(os.environ.get("IMGCLS_MAX_QUEUE_SIZE", "256")),
        "phases": phases,
        "server_p99_ms_accepted": {phase: spread(of(phase, "server_p99_ms_accepted"), 2) for phase in PHASES},
        "accepted_per_s": {phase: spread(of(phase, "accepted_per_s")) for phase in PHASES},
        "overload_over_normal_p99": ratio(loaded, normal, 2),
        "after_over_normal_throughput": ratio(of("after", "accepted_per_s"), of("normal", "accepted_per_s")),
        "other_statuses": sum(p["other_statuses"] for p in phases),
        "retry_after_missing": sum(p["retry_after_missing"] for p in phases),
        "socket_errors": sum(sum(p["socket_errors"].values()) for p in phases),
        "rss_mib": {"before": round(rss_before, 1), "after": round(rss_after, 1)},
        "crowded_turns": sum(1 for p in phases if p["crowded"]),
    }


PHASES = ("normal", "overload", "after")


def overload_phase(args: argparse.Namespace, target: Target, ours: Server, connections: int) -> dict[str, Any]:
    peak: dict[int, float] = {}
    halt = threading.Event()

    def sample() -> None:
        while not halt.wait(0.5):
            for pid, mib in tree_rss_mib(ours.proc.pid).items():
                peak[pid] = max(peak.get(pid, 0.0), mib)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before = scrape(ours)
    with probing(ours, target.image, target.image_bytes, args.probe_rate) as probe:
        load = functools.partial(run_wrk, ours, target.image, connections, args.duration, STATUS_LUA, args.wrk_timeout)
        result, cores = measured(load, {OURS: [ours.proc.pid]})
    after = scrape(ours)
    halt.set()
    sampler.join()
    warn_if_crowded(f"{connections} connections", cores)
    accepted = result.statuses.get(200, 0)
    return asdict(result) | {
        "accepted_per_s": round(accepted / result.duration_s, 1),
        "other_statuses": sum(n for code, n in result.statuses.items() if code not in (200, 503)),
        "probe": probe.summary(),
        "server_p99_ms_accepted": _round(server_p99_ms(before, after, target.model)),
        "average_batch_size": _round(average_batch(before, after, target.model)),
        "server_rejects": {
            reason: delta(before, after, "imgcls_rejects_total", reason=reason)
            for reason in {dict(labels).get("reason", "") for name, labels in after if name == "imgcls_rejects_total"}
        },
        "peak_rss_mib": round(sum(peak.values()), 1),
        "cpu_cores": cores,
        "crowded": crowded(cores),
    }


def describe_phase(phase: dict[str, Any]) -> str:
    return (
        f"{phase['connections']} connections: {phase['accepted_per_s']:,.1f} accepted/s, statuses {phase['statuses']}, "
        f"p99 accepted (server) {phase['server_p99_ms_accepted']} ms, probe {phase['probe']['accepted_p99_ms']} ms"
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def startup(args: argparse.Namespace, target: Target, work: Path) -> dict[str, Any]:
    runs = []
    for number in range(1, args.startup_runs + 1):
        server = start_ours(args, target, work)
        try:
            listening, ready = server.wait_ready("/healthz/ready", args.ready_timeout)
        finally:
            server.stop()
        runs.append({"listening_s": round(listening, 3), "ready_s": round(ready, 3)})
        log(f"startup {number}: answering after {listening:.2f} s, ready after {ready:.2f} s")
    return {
        "mode": "startup",
        "target": target_facts(args, target),
        "runs": runs,
        "ready_s": spread((r["ready_s"] for r in runs), 2),
        "listening_s": spread((r["listening_s"] for r in runs), 2),
    }


# -------------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-root", type=Path, default=Path(os.environ.get("IMGCLS_MODEL_ROOT", "var/models")))
    parser.add_argument("--model", default="fashion-mnist")
    parser.add_argument("--version", default=None, help="number or alias (default: production, else the latest)")
    parser.add_argument("--variant", default="fp32", help="fp32 or a variant of the version, e.g. int8")
    parser.add_argument("--image", type=Path, help="the image wrk sends (default: a Fashion-MNIST test image)")
    parser.add_argument("--image-index", type=int, default=0, help="which Fashion-MNIST test image (default 0)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15, help="seconds per turn")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"rounds (default {MIN_ROUNDS})")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load on a server before its turn")
    parser.add_argument("--workers", type=int, default=2, help="processes of our server, and of each peer")
    parser.add_argument(
        "--peers",
        default="bentoml,litserve",
        help=f"comma-separated, from {', '.join(peer_servers.PEERS)}; 'none' for our server and the ceiling only",
    )
    parser.add_argument("--raw-seconds", type=float, default=2, help="seconds per figure of the ceiling's sweep")
    parser.add_argument("--wrk-timeout", type=int, default=10, help="wrk's per-request timeout, seconds")
    parser.add_argument("--ready-timeout", type=float, default=180)
    parser.add_argument("--overload", action="store_true", help="our server at --overload-connections")
    parser.add_argument("--overload-connections", type=int, help="default: 4 x --connections")
    parser.add_argument("--probe-rate", type=float, default=10, help="requests/s of the overload latency probe")
    parser.add_argument("--startup", action="store_true", help="time imgcls serve from launch to ready")
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=REPO / "var" / "benchmarks" / "serve_load")
    record.add_arguments(parser, "serve, overload or startup after the mode")
    args = parser.parse_args()
    args.peers = [] if args.peers in ("", "none") else args.peers.split(",")
    for name in args.peers:
        peer_servers.peer(name)
    if args.result_name == "serve, overload or startup after the mode":
        args.result_name = "startup" if args.startup else "overload" if args.overload else "serve"
    if args.connections < 2:
        parser.error("--connections must be at least 2 (wrk runs 2 threads)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.rounds < MIN_ROUNDS:
        log(f"{args.rounds} round(s): fewer than {MIN_ROUNDS}, a smoke run, not figures to keep")
    if shutil.which("wrk") is None and not args.startup:
        parser.error("wrk is not installed (Debian package wrk)")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so the servers we started are stopped


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where it was inherited as ignored
    run = record.begin(args.result_name, args)
    warn_if_busy(run["machine"]["load_1min_before"])
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    target = prepare_target(args, work)
    log(
        f"model: {target.model} v{target.version} {target.variant} ({target.manifest.architecture}), "
        f"{target.onnx_path}; image {target.image.name} ({len(target.image_bytes):,} bytes)"
    )
    mode = startup if args.startup else overload if args.overload else capacity
    figures = mode(args, target, work)
    peers = figures["target"].get("peers", {})
    path = record.save(run, figures, args.results_dir, packages={"peers": peers} if peers else None)
    print(tables.render_file(path, {"capacity": "serve"}.get(figures["mode"], figures["mode"])))
    # Repeated under the table where it is read. Only the load before counts: the load average after the
    # rounds includes this benchmark's own servers; others' CPU during a turn is the table's "disturbed" count.
    warn_if_busy(run["machine"]["load_1min_before"])


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted; the servers it started are stopped") from None
