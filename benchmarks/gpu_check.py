"""What only a GPU machine can verify, in one command of a few minutes: run it the day a GPU is lent.

    python benchmarks/gpu_check.py                       # on a machine with an NVIDIA GPU
    python benchmarks/gpu_check.py --rehearse-on-cpu --results-dir /tmp   # every step on the CPU, tiny sizes

On a machine without an NVIDIA device it exits at once (status 2) and says so. Otherwise, each check in
turn (one failing check is recorded and the next still runs), every model made here (no download):

1. service: a random-init torchvision ResNet-50 is imported (``imgcls models import-torchvision``: ONNX
   export with its parity check, ImageNet preprocessing) and served by ``imgcls serve`` with
   IMGCLS_PROVIDERS=cuda; /healthz/ready must name CUDAExecutionProvider. Then images/s served against raw
   onnxruntime-gpu on the same file at the server's own average batch (goal: served / raw >= 0.9), both
   through /v1 (224x224 JPEG, decoded by the server) and /v2 (the binary FP32 tensor: no decoding), with
   raw onnxruntime plain (host arrays in and out, as the server runs it) and with IO binding (the input
   already on the GPU: does binding help?).
2. variants: fp32, fp16 (onnxruntime's float16 converter, inputs and outputs kept fp32) and int8 (the
   project's static QDQ quantization, calibrated on the test images) on the CUDA provider: images/s at
   batch 32, the providers the session runs with, and top-1 agreement with fp32.
3. training: images/s of the default ``cnn`` (Fashion-MNIST, batch 256) and of ``resnet18`` at 224x224 (a
   folder of synthetic photos, batch 128), timed by ``imgcls batch-sweep``'s code, which trains on CUDA
   with bf16 autocast and channels_last; both are checked to be on.
4. recipe: the default recipe (``imgcls train``'s, 5 epochs) on the GPU: test accuracy, training and wall
   seconds.

It prints one JSON object and writes it to benchmarks/results/gpu-check-<date>.json (benchmarks/record.py);
docs/benchmarks.md shows it as a table. The GPU machine lent to this project has no network: it runs from
the repository with the packages and the Fashion-MNIST files carried along (docs/benchmarks.md, "GPU check").
"""

import argparse
import contextlib
import functools
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import record

from service.inference.providers import CUDA, cuda_works

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.9  # served images/s over raw onnxruntime-gpu's at the same batch
MODEL = "resnet50-imagenet"
NO_GPU = 2  # exit status on a machine without an NVIDIA device


@dataclass(frozen=True)
class Scale:
    """How long and how big each check runs: on the GPU, and for a rehearsal on the CPU (figures meaningless)."""

    load_seconds: float
    raw_seconds: float
    images_per_request: int
    clients: int
    variant_batch: int
    train_steps: int
    cnn_batch: int
    resnet_batch: int
    recipe: dict[str, Any]


GPU_SCALE = Scale(15, 5, 8, 16, 32, 20, 256, 128, {})
CPU_SCALE = Scale(2, 1, 2, 2, 4, 1, 32, 4, {"epochs": 1, "train_subset": 2048, "test_subset": 500})


def log(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


def nvidia_device_present() -> bool:
    return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


@contextlib.contextmanager
def check(checks: dict[str, Any], name: str) -> Iterator[dict[str, Any]]:
    """A check's record; an exception inside is recorded as its failure and the next check runs."""
    section: dict[str, Any] = {}
    checks[name] = section
    started = time.perf_counter()
    log(f"{name} ...")
    try:
        yield section
    except Exception as error:  # one shot on a lent machine: keep going, say what broke
        section["ok"] = False
        section["error"] = f"{type(error).__name__}: {error}"[:2000]
        log(f"{name} FAILED: {section['error']}")
    section["seconds"] = round(time.perf_counter() - started, 1)
    log(f"{name}: {json.dumps(section)[:400]}")


# ------------------------------------------------------------------------------------------------ images


def test_inputs(work: Path, count: int) -> tuple[list[bytes], np.ndarray, Any]:
    """``count`` Fashion-MNIST test images as 224x224 RGB JPEGs, and as the model's float32 NCHW batch
    prepared by the service's own decode and preprocess (the tensors the server computes)."""
    from serve_load import ceiling_inputs, encode

    from service.repository import ModelRepository

    repository = ModelRepository(work / "models")
    manifest = repository.manifest(MODEL, repository.resolve(MODEL))
    from serve_load_tools import fashion_mnist_test_images

    jpegs = [encode(pixels, manifest)[0] for pixels in fashion_mnist_test_images(count)]
    return jpegs, ceiling_inputs(manifest)[:count], manifest


def imgcls() -> list[str]:
    """The imgcls command: the installed script, or the package run from this checkout (a GPU machine with
    the repository and carried wheels has no script)."""
    script = Path(sys.executable).parent / "imgcls"
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


def import_resnet50(work: Path) -> Path:
    """A random-init torchvision ResNet-50 published as MODEL the way a user imports one (once); its ONNX file."""
    if published := next((work / "models" / MODEL).glob("*/model.onnx"), None):
        return published
    sys.path.insert(0, str(REPO))
    from tests.training.torchvision_files import torchvision_file

    weights = torchvision_file(work / "downloads", "resnet50")
    env = os.environ | {"IMGCLS_MODEL_ROOT": str(work / "models")}
    command = [*imgcls(), "models", "import-torchvision", "resnet50", "--weights", str(weights)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-1500:]}")
    return next((work / "models" / MODEL).glob("*/model.onnx"))


# ------------------------------------------------------------------------------------------------ raw


def session(path: Path, provider: str) -> Any:
    import onnxruntime as ort

    providers = [provider, "CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [provider]
    return ort.InferenceSession(str(path), providers=providers)


def rate(call: Callable[[], object], images: int, seconds: float) -> float:
    for _ in range(3):
        call()
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        call()
        calls += 1
    return calls * images / (time.perf_counter() - started)


def raw_rates(path: Path, provider: str, batch: np.ndarray, seconds: float) -> dict[str, float]:
    """images/s of one session: plain run() with host arrays (the server's way), and with IO binding of an
    input already on the device and the output left there."""
    import onnxruntime as ort

    model = session(path, provider)
    name = model.get_inputs()[0].name
    plain = rate(lambda: model.run(None, {name: batch}), len(batch), seconds)
    figures = {"plain_images_per_s": round(plain, 1)}
    if provider != "CPUExecutionProvider":
        binding = model.io_binding()
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0))
        binding.bind_output(model.get_outputs()[0].name, "cuda")

        def bound() -> None:
            model.run_with_iobinding(binding)
            binding.synchronize_outputs()

        figures["io_binding_images_per_s"] = round(rate(bound, len(batch), seconds), 1)
    return figures


# ------------------------------------------------------------------------------------------------ load


def multipart_body(jpegs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    boundary = "gpucheckboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{i}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(jpegs)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"
    }


def v2_body(batch: np.ndarray, input_name: str) -> tuple[bytes, dict[str, str]]:
    """A KServe V2 binary-extension request: the JSON header, then the raw FP32 tensor."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(batch.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": batch.nbytes},
                }
            ]
        }
    ).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return header + np.ascontiguousarray(batch, dtype="<f4").tobytes(), headers


def load(
    port: int, path: str, body: bytes, headers: dict[str, str], images: int, clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` keep-alive connections posting ``body`` (``images`` images) for ``seconds``: images/s."""
    done, failures = [0] * clients, [0] * clients
    halt = threading.Event()

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not halt.is_set():
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                done[index] += images
            else:
                failures[index] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    halt.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"images_per_s": round(sum(done) / elapsed, 1), "failed_requests": sum(failures)}


# ------------------------------------------------------------------------------------------------ checks


def service_check(section: dict[str, Any], args: argparse.Namespace, work: Path, scale: Scale) -> None:
    from serve_load_tools import average_batch, free_port, http_request, launch, scrape

    model_file = import_resnet50(work)
    jpegs, batch, manifest = test_inputs(work, 32)
    section["model"] = f"{MODEL} (torchvision resnet50, random weights), {model_file.stat().st_size / 1e6:.0f} MB"
    provider = "CPUExecutionProvider" if args.rehearse_on_cpu else CUDA
    env = os.environ | {
        "IMGCLS_PROVIDERS": "cpu" if args.rehearse_on_cpu else "cuda",
        "IMGCLS_DEFAULT_MODEL": MODEL,
    }
    port = free_port()
    command = [*imgcls(), "serve", "--no-auth", "--port", str(port)]
    command += ["--workers", str(args.workers), "--model-root", str(work / "models")]
    server = launch("imgcls", command, env, REPO, work / "serve.log", port=port, path="", lua=Path())
    try:
        server.wait_ready("/healthz/ready", 300)
        ready = json.loads(http_request(port, "GET", "/healthz/ready")[2])
        section["ready_providers"] = ready["models"][MODEL]["providers"]
        section["expected_provider"] = provider
        section["on_expected_provider"] = section["ready_providers"] == [provider]
        paths = {
            "v1_jpeg": (f"/v1/models/{MODEL}/classify", *multipart_body(jpegs[: scale.images_per_request])),
            "v2_fp32_tensor": (
                f"/v2/models/{MODEL}/infer",
                *v2_body(batch[: scale.images_per_request], manifest.input.name),
            ),
        }
        for name, (path, body, headers) in paths.items():
            status, _, answer = http_request(port, "POST", path, body, headers)
            if status != 200:
                raise RuntimeError(f"{name}: POST {path} answered {status}: {answer[:300]!r}")
            load(port, path, body, headers, scale.images_per_request, scale.clients, 1.0)  # warm-up
            before = scrape(server)
            served = load(port, path, body, headers, scale.images_per_request, scale.clients, scale.load_seconds)
            mean_batch = average_batch(before, scrape(server), MODEL) or 1.0
            at = max(1, min(len(batch), round(mean_batch)))
            raw = raw_rates(model_file, provider, batch[:at], scale.raw_seconds)
            section[name] = served | {
                "average_batch": round(mean_batch, 2),
                "raw_at_that_batch": raw,
                "served_over_raw": round(served["images_per_s"] / raw["plain_images_per_s"], 3),
            }
    finally:
        server.stop()
    best = max(section[name]["served_over_raw"] for name in ("v1_jpeg", "v2_fp32_tensor"))
    section["goal"] = f"served / raw >= {GOAL} (the better of /v1 and /v2)"
    section["ok"] = bool(section["on_expected_provider"] and best >= GOAL)


def variants_check(section: dict[str, Any], args: argparse.Namespace, work: Path, scale: Scale) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from training.quantize import quantize_with

    fp32 = import_resnet50(work)
    _, batch, manifest = test_inputs(work, scale.variant_batch)
    fp16 = work / "model.fp16.onnx"
    onnx.save_model(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(fp16))

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter([{manifest.input.name: batch[i : i + 1]} for i in range(len(batch))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.rows, None)

    int8 = work / "model.int8.onnx"
    quantize_with(fp32, int8, Images())
    provider = "CPUExecutionProvider" if args.rehearse_on_cpu else CUDA
    reference = session(fp32, provider).run(None, {manifest.input.name: batch})[0].argmax(axis=1)
    for name, path in (("fp32", fp32), ("fp16", fp16), ("int8", int8)):
        model = session(path, provider)
        feed = {manifest.input.name: batch}
        top1 = model.run(None, feed)[0].argmax(axis=1)
        section[name] = {
            "providers": model.get_providers(),
            "images_per_s": round(rate(functools.partial(model.run, None, feed), len(batch), 3), 1),
            "top1_agreement_with_fp32": round(float((top1 == reference).mean()), 3),
        }
    section["batch"] = len(batch)
    section["ok"] = all(provider in section[name]["providers"][:1] for name in ("fp32", "fp16"))


def training_check(section: dict[str, Any], args: argparse.Namespace, work: Path, scale: Scale) -> None:
    import torch

    sys.path.insert(0, str(REPO))
    from tests.training.synthetic_photos import photo_folder
    from training.assemble import uses_channels_last
    from training.batch_sweep import sweep_batch_sizes
    from training.config import TrainConfig
    from training.settings import TrainingSettings

    photos = work / "photos"
    photo_folder(photos, 40, seed=0)
    device: Literal["cpu", "cuda"] = "cpu" if args.rehearse_on_cpu else "cuda"
    configs = {
        "cnn": (TrainConfig(model="cnn", device=device, train_subset=4096), scale.cnn_batch),
        "resnet18_224": (
            TrainConfig(model="resnet18", dataset=f"folder:{photos}", image_size=224, device=device),
            scale.resnet_batch,
        ),
    }
    for name, (config, batch_size) in configs.items():
        sweep = sweep_batch_sizes(
            config, settings=TrainingSettings(), batch_sizes=[batch_size], warmup_steps=3, steps=scale.train_steps
        )
        row = sweep.rows[0]
        section[name] = {
            "device": sweep.device,
            "batch": batch_size,
            "images_per_s": round(row.images_per_second or 0.0, 1),
            "step_ms": round(row.step_ms or 0.0, 2),
            "peak_memory_mib": row.peak_memory_mib,
            "channels_last": uses_channels_last(config),
            "autocast": "bf16" if device == "cuda" else "off (CPU)",
        }
    section["bf16_supported"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    section["ok"] = all(section[name]["channels_last"] for name in configs) and (
        args.rehearse_on_cpu or section["bf16_supported"]
    )


def recipe_check(section: dict[str, Any], args: argparse.Namespace, work: Path, scale: Scale) -> None:
    from training.config import build_config
    from training.reporting import read_history
    from training.settings import TrainingSettings
    from training.train import run

    device = "cpu" if args.rehearse_on_cpu else "cuda"
    config = build_config(scale.recipe | {"device": device}, {"publish": False})
    started = time.perf_counter()
    settings = TrainingSettings(model_root=work / "recipe-models")
    result = run(config, settings=settings, output_dir=work / "recipe", echo=False)
    history = read_history(work / "recipe")
    section.update(
        {
            "epochs": result.epochs_completed,
            "test_accuracy": result.metrics["test_accuracy"],
            "training_seconds": round(sum(row["seconds"] for row in history), 1),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "target": "test accuracy >= 0.920",
            "ok": bool(args.rehearse_on_cpu or result.metrics["test_accuracy"] >= 0.920),
        }
    )


CHECKS = {"service": service_check, "variants": variants_check, "training": training_check, "recipe": recipe_check}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="imgcls serve processes (docs: one per GPU)")
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated, from {', '.join(CHECKS)}")
    parser.add_argument(
        "--rehearse-on-cpu",
        action="store_true",
        help="run every step on the CPU at tiny sizes, to try the script itself (its figures mean nothing)",
    )
    record.add_arguments(parser, "gpu-check")
    args = parser.parse_args()
    chosen = args.checks.split(",")
    if unknown := set(chosen) - set(CHECKS):
        parser.error(f"unknown checks {sorted(unknown)} (known: {', '.join(CHECKS)})")
    if not args.rehearse_on_cpu and not nvidia_device_present():
        log(
            "no NVIDIA GPU on this machine (no /dev/nvidiactl): this check measures what only a GPU can show, so "
            "it runs on a GPU machine (docs/benchmarks.md, 'GPU check'); nothing was measured. "
            "--rehearse-on-cpu tries the script itself here."
        )
        raise SystemExit(NO_GPU)
    begun = record.begin(args.result_name, args)
    scale = CPU_SCALE if args.rehearse_on_cpu else GPU_SCALE
    device = "CPU (a rehearsal: figures mean nothing)" if args.rehearse_on_cpu else gpu_name()
    checks: dict[str, Any] = {}
    if not args.rehearse_on_cpu and not cuda_works():
        checks["service"] = checks["variants"] = {
            "skipped": "onnxruntime here has no working CUDAExecutionProvider (install onnxruntime-gpu: the gpu extra)"
        }
        chosen = [name for name in chosen if name not in ("service", "variants")]
    with tempfile.TemporaryDirectory(prefix="imgcls-gpu-check-") as scratch:
        work = Path(scratch)
        for name in chosen:
            with check(checks, name) as section:
                CHECKS[name](section, args, work, scale)
        shutil.rmtree(work / "downloads", ignore_errors=True)
    figures = {"device": device, "checks": checks, "ok": all(c.get("ok", False) for c in checks.values())}
    record.save(begun, figures, args.results_dir)
    print(json.dumps(figures))


def gpu_name() -> str:
    try:
        import torch

        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    except Exception as error:  # torch without CUDA: say so, the checks will fail with their reasons
        return f"an NVIDIA device torch cannot use ({type(error).__name__}: {error})"


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
