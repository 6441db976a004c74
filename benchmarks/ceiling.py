"""The raw onnxruntime ceiling: images/s of the model file alone, no HTTP, no decoding, in the best layout a server
on this machine could choose.

A server of W processes x T onnxruntime threads could instead run one process of W x T threads, or any batch
size; the ceiling is the best of both layouts (``layouts``) over batch sizes 1 to 32, each process feeding its
own session a batch of real, different test images (preprocessed by the service's own code, so the tensors
are the ones a server computes). ``sweep`` finds the best layout and batch; benchmarks/serve_load.py then
measures that one in every round, alternating with the servers, so it sees the same machine they do.
"""

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

BATCH_SIZES = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Layout:
    processes: int
    threads: int  # onnxruntime intra-op threads per process

    @property
    def label(self) -> str:
        return f"{self.processes} process{'es' if self.processes > 1 else ''} x {self.threads} thread" + (
            "s" if self.threads > 1 else ""
        )


def layouts(workers: int, threads_per_worker: int) -> list[Layout]:
    """The server's own layout and one process with all its threads (the same when it has one worker)."""
    found = [Layout(1, workers * threads_per_worker), Layout(workers, threads_per_worker)]
    return list(dict.fromkeys(found))


def _engine(
    model: Path, threads: int, images: np.ndarray, commands: multiprocessing.connection.Connection, start: Any
) -> None:
    """One process: a session of ``threads`` threads; for each ("run", batch, seconds) it warms up, waits for
    the other processes at ``start`` (a barrier), runs for ``seconds`` and answers (images, seconds)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    commands.send("ready")
    while (command := commands.recv()) != "stop":
        _, batch, seconds = command
        feed = {name: np.ascontiguousarray(images[:batch])}
        for _ in range(3):
            session.run(None, feed)
        start.wait()
        began, done = time.perf_counter(), 0
        while time.perf_counter() - began < seconds:
            session.run(None, feed)
            done += batch
        commands.send((done, time.perf_counter() - began))


class Engine:
    """``layout.processes`` processes, each with its own session on ``model``, measured together.

    ``images``: float32 (N, ...) model inputs, N >= the largest batch asked for. Processes are spawned (no
    onnxruntime state crosses a fork) and stopped on exit, so nothing of the ceiling runs beside a server.
    """

    def __init__(self, model: Path, layout: Layout, images: np.ndarray) -> None:
        self.layout = layout
        context = multiprocessing.get_context("spawn")
        self.start = context.Barrier(layout.processes)
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for _ in range(layout.processes):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_engine, args=(model, layout.threads, images, theirs, self.start), daemon=True
            )
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)
        for pipe in self.pipes:
            if pipe.recv() != "ready":
                raise RuntimeError("a ceiling process did not start")

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]

    def images_per_second(self, batch: int, seconds: float) -> float:
        for pipe in self.pipes:
            pipe.send(("run", batch, seconds))
        answers = [pipe.recv() for pipe in self.pipes]
        return float(sum(done / elapsed for done, elapsed in answers))

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if process.is_alive():
                with contextlib.suppress(OSError):
                    pipe.send("stop")
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()


def batch_sizes(largest: int, fixed_batch: bool) -> list[int]:
    """1 to ``largest`` in powers of two; just 1 for a model that takes one image at a time."""
    return [1] if fixed_batch else [size for size in BATCH_SIZES if size <= largest]


def sweep(
    model: Path, candidates: list[Layout], images: np.ndarray, sizes: list[int], seconds: float
) -> dict[str, Any]:
    """images/s of every layout at every batch size; the best (layout, batch) first measured."""
    table: list[dict[str, Any]] = []
    for layout in candidates:
        with Engine(model, layout, images) as engine:
            for size in sizes:
                rate = engine.images_per_second(size, seconds)
                table.append({"processes": layout.processes, "threads": layout.threads, "batch": size, "rate": rate})
    best = max(table, key=lambda row: row["rate"])
    for row in table:
        row["rate"] = round(row["rate"], 1)
    return {"seconds_each": seconds, "images_per_s": table, "best": best}
