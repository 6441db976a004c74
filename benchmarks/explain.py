"""Explanations against classify: what a class activation map costs, for the default model and ResNet-18 at 224.

    .venv/bin/python benchmarks/explain.py [--rounds 3] [--seconds 2] [--root var/benchmarks/explain]

Two models with random weights (the timing does not depend on them): the default recipe's ``cnn`` (10
classes, 28x28 grey) and ``resnet18`` (10 classes, 224x224 RGB), each exported by training's own exporters
(``model.onnx`` and ``explain.onnx``, both checked against torch) and published into ``--root`` (reused when
already there). Then, in rounds.py's alternating order, ``--seconds`` per contender and round:

- **onnxruntime alone**, one image per call, ``THREADS`` intra-op threads: ``model.onnx`` asked for its logits
  (classify); ``explain.onnx`` asked for its logits only (what classify would pay if the maps were a second
  output of ``model.onnx``: the measurement behind the separate file); ``explain.onnx`` asked for both.
- **over HTTP**, an ``imgcls serve`` process (one worker) and one client sending one image per request, one after
  the other: ``classify``, ``explain`` (``format=json``) and ``explain?format=png`` (the overlay drawn).

Figures are calls (requests) per second and the median latency in ms, each the median over the rounds with its
range. The machine's load before and after is in the result: on a shared machine, read the ratios rather than
the absolute figures.
"""

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import record
import torch
from PIL import Image
from rounds import MIN_ROUNDS, alternating, spread
from serve_load_tools import free_port, http_request, launch, multipart

from service.repository import Lineage, Manifest, ModelNotFound, ModelRepository, Preprocessing, TensorSpec
from service.repository.store import EXPLAIN_FILE, ONNX_FILE
from service.version import code_version
from training.explain_export import export_explain
from training.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from training.models import create_model

THREADS = 2
CLASSES = 10
MODELS = {  # name -> (architecture, preprocessing, image format)
    "explain-cnn": ("cnn", Preprocessing(color_mode="L", input_size=(28, 28), mean=(0.286,), std=(0.353,)), "PNG"),
    "explain-resnet18": (
        "resnet18",
        Preprocessing(
            color_mode="RGB", input_size=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize=224
        ),
        "JPEG",
    ),
}


def publish(repository: ModelRepository, name: str) -> Manifest:
    """The model's version 1, exported and published now unless it is there already."""
    try:
        return repository.verify(name, repository.resolve(name))
    except ModelNotFound:
        pass
    architecture, preprocessing, _ = MODELS[name]
    torch.manual_seed(0)
    model = create_model(architecture, in_channels=preprocessing.channels, num_classes=CLASSES).eval()
    shape = (preprocessing.channels, *preprocessing.input_size)
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path, explain_path = Path(scratch) / ONNX_FILE, Path(scratch) / EXPLAIN_FILE
        export_onnx(model, onnx_path, input_shape=shape)
        explain = export_explain(model, explain_path, architecture=architecture, input_shape=shape)
        manifest = Manifest(
            name=name,
            architecture=architecture,
            labels=tuple(f"class-{i}" for i in range(CLASSES)),
            input=TensorSpec(name=INPUT_NAME, datatype="FP32", shape=(-1, *shape)),
            output=TensorSpec(name=OUTPUT_NAME, datatype="FP32", shape=(-1, CLASSES)),
            preprocessing=preprocessing,
            temperature=1.0,
            metrics={"test_accuracy": 0.0, "ece": 0.0, "ece_uncalibrated": 0.0},  # random weights: nothing measured
            lineage=Lineage(dataset="none (random weights, for benchmarks/explain.py)", config={"model": architecture}),
            onnx_sha256="",
            weights_sha256=None,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            code_version=code_version(),
            explain=explain,
        )
        ref = repository.publish(manifest, onnx_path, None, explain_path=explain_path)
    return repository.verify(name, ref.version)


def image_bytes(name: str) -> bytes:
    _, preprocessing, image_format = MODELS[name]
    height, width = preprocessing.input_size
    rng = np.random.default_rng(0)
    shape = (height, width) if preprocessing.color_mode == "L" else (height, width, 3)
    path = Path(tempfile.mkdtemp()) / f"image.{image_format.lower()}"
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8)).save(path, image_format)
    return path.read_bytes()


def timed(call: Callable[[], object], seconds: float) -> dict[str, float]:
    """Call repeatedly for ``seconds``: calls per second and the median latency in ms."""
    latencies = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - begin)
    return {"per_second": len(latencies) / sum(latencies), "median_ms": statistics.median(latencies) * 1000}


def in_rounds(contenders: dict[str, Callable[[], object]], rounds: int, seconds: float) -> dict[str, Any]:
    for call in contenders.values():  # warm-up
        timed(call, min(seconds, 0.5))
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for order in alternating(list(contenders), rounds):
        for name in order:
            measured[name].append(timed(contenders[name], seconds))
    return {
        name: {
            "per_second": spread([m["per_second"] for m in runs]),
            "median_ms": spread([m["median_ms"] for m in runs], 2),
        }
        for name, runs in measured.items()
    }


def onnxruntime_alone(root: Path, manifest: Manifest, rounds: int, seconds: float) -> dict[str, Any]:
    folder = root / manifest.name / str(manifest.version)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    model = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])
    explain = ort.InferenceSession(str(folder / EXPLAIN_FILE), options, providers=["CPUExecutionProvider"])
    batch = {INPUT_NAME: np.random.default_rng(0).standard_normal((1, *manifest.input.shape[1:]), dtype=np.float32)}
    return in_rounds(
        {
            "model.onnx logits (classify)": lambda: model.run([OUTPUT_NAME], batch),
            "explain.onnx logits only": lambda: explain.run([OUTPUT_NAME], batch),
            "explain.onnx logits and maps": lambda: explain.run(None, batch),
        },
        rounds,
        seconds,
    )


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> None:
    status, _, answer = http_request(port, "POST", path, body, headers)
    if status != 200:
        raise SystemExit(f"{path}: {status} {answer[:300]!r}")


def over_http(root: Path, work: Path, names: list[str], rounds: int, seconds: float) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve", "--no-auth", "--port", str(port), "--workers", "1"]
    command += ["--model-root", str(root)]
    env = os.environ | {"IMGCLS_INTRA_OP_THREADS": str(THREADS), "PYTHONPATH": str(record.REPO)}
    work.mkdir(parents=True, exist_ok=True)
    server = launch("imgcls", command, env, record.REPO, work / "serve.log", port=port, path="", lua=Path())
    try:
        server.wait_ready("/healthz/ready", timeout_s=120)
        figures = {}
        for name in names:
            body, headers = multipart(Path(f"image.{MODELS[name][2].lower()}"), image_bytes(name))
            base = f"/v1/models/{name}"
            figures[name] = in_rounds(
                {
                    "classify": functools.partial(post, port, f"{base}/classify", body, headers),
                    "explain (json)": functools.partial(post, port, f"{base}/explain", body, headers),
                    "explain (png overlay)": functools.partial(post, port, f"{base}/explain?format=png", body, headers),
                },
                rounds,
                seconds,
            )
        return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--seconds", type=float, default=2.0, help="per contender and round")
    parser.add_argument("--root", type=Path, default=record.REPO / "var" / "benchmarks" / "explain")
    record.add_arguments(parser, "explain")
    args = parser.parse_args()
    run = record.begin(args.result_name, args)
    torch.set_num_threads(THREADS)
    repository = ModelRepository(args.root / "models")
    manifests = {name: publish(repository, name) for name in MODELS}
    figures: dict[str, Any] = {
        "threads": THREADS,
        "onnxruntime": {
            name: onnxruntime_alone(repository.root, m, args.rounds, args.seconds) for name, m in manifests.items()
        },
        "http": over_http(repository.root, args.root, list(MODELS), args.rounds, args.seconds),
        "models": {
            name: {"architecture": m.architecture, "input_size": m.preprocessing.input_size}
            for name, m in manifests.items()
        },
    }
    record.save(run, figures, args.results_dir)


if __name__ == "__main__":
    main()
