"""What ``--tta flip`` costs at serving time: the default model's ONNX graph with and without flip averaging,
timed in this process with onnxruntime (CPU), the way the service runs a version.

    nice -n 19 .venv/bin/python benchmarks/tta_cost.py [--model cnn] [--threads 2] [--rounds 10] [--seconds 1]

Both graphs are made by ``training.export.export_onnx`` (with its parity check) from the same seeded,
untrained network (cost does not depend on the weights): ``plain`` is what ``imgcls train`` exports,
``flip`` what ``imgcls train --tta flip`` exports. Each round times, for each graph in alternating order,
batch-1 latency (``latency_ms``: median and p90 of single-image calls) and throughput at ``--batch-size``
(``images_per_second``) for ``--seconds`` each; the figures are the medians over rounds, and ``cost`` is
flip / plain. One session per graph, ``intra_op_num_threads`` ``--threads``, inputs of normal noise.
Prints one JSON object and stores it through benchmarks/record.py.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import record
import torch

from training.export import export_onnx
from training.models import create_model
from training.tta import TestTimeAugmentation, with_tta

INPUT_SHAPE = (1, 28, 28)  # Fashion-MNIST
GRAPHS: tuple[tuple[TestTimeAugmentation, str], ...] = (("none", "plain"), ("flip", "flip"))


def session_for(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latencies_ms(session: ort.InferenceSession, image: np.ndarray, seconds: float) -> list[float]:
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        session.run(None, {"input": image})
        times.append((time.perf_counter() - started) * 1000)
    return times


def images_per_second(session: ort.InferenceSession, batch: np.ndarray, seconds: float) -> float:
    images = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {"input": batch})
        images += len(batch)
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn", help="a registered model name (default: the default recipe's)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0, help="per graph, per measure, per round")
    record.add_arguments(parser, "tta-cost")
    args = parser.parse_args()
    begun = record.begin(args.result_name, args)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(args.model, in_channels=INPUT_SHAPE[0], num_classes=10).eval()

    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, *INPUT_SHAPE)).astype(np.float32)
    batch = rng.normal(size=(args.batch_size, *INPUT_SHAPE)).astype(np.float32)
    figures: dict[str, dict[str, list[float]]] = {"plain": {}, "flip": {}}
    with tempfile.TemporaryDirectory() as scratch:
        sessions = {}
        for tta, label in GRAPHS:
            path = Path(scratch) / f"{label}.onnx"
            export_onnx(with_tta(model, tta), path, input_shape=INPUT_SHAPE)
            sessions[label] = session_for(path, args.threads)
            latencies_ms(sessions[label], image, 0.3)  # warm-up
        for round_number in range(args.rounds):
            order = ("plain", "flip") if round_number % 2 == 0 else ("flip", "plain")
            for label in order:
                times = latencies_ms(sessions[label], image, args.seconds)
                figures[label].setdefault("latency_ms_p50", []).append(statistics.median(times))
                figures[label].setdefault("latency_ms_p90", []).append(float(np.percentile(times, 90)))
                figures[label].setdefault("images_per_second", []).append(
                    images_per_second(sessions[label], batch, args.seconds)
                )
    summary = {
        label: {key: round(statistics.median(values), 4) for key, values in measures.items()}
        for label, measures in figures.items()
    }
    result = {
        "model": args.model,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        **summary,
        "cost": {
            "latency_p50": round(summary["flip"]["latency_ms_p50"] / summary["plain"]["latency_ms_p50"], 3),
            "throughput": round(summary["plain"]["images_per_second"] / summary["flip"]["images_per_second"], 3),
        },
        "per_round": figures,
    }
    record.save(begun, result, args.results_dir)
    print(json.dumps({k: v for k, v in result.items() if k != "per_round"}, indent=2))


if __name__ == "__main__":
    main()
