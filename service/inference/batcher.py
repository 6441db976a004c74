"""Adaptive batching in front of one loaded version's ``Predictor.predict``.

A request is dispatched as soon as the runtime is free. While a batch computes, arriving requests gather
in the queue and go together in the next batch, up to ``max_batch_size`` images: under light load each
request runs alone (lowest latency), under heavy load batches grow (highest throughput), with no timer to
tune. ``max_queue_delay_s`` optionally waits a little longer to fill a batch. The queue is bounded in
images; past the bound ``submit`` raises QueueFull at once, so latency cannot grow without limit.

Where a batch runs depends on how long it is expected to take (the running time per image times its
images). Up to ``inline_compute_s`` it runs on the event loop thread itself: a small model's batch takes
about a millisecond, less than handing it to a thread and back costs in wake-ups and GIL hand-offs, and
the requests that arrive meanwhile wait in the sockets and form the next batch (measured on 2 cores:
12 % more requests per second and a lower p99 for the Fashion-MNIST model, docs/benchmarks.md).
A longer batch runs in the version's worker thread (onnxruntime releases the GIL), so a large model never
stalls the event loop.
"""

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from service.inference.errors import QueueFull, ShuttingDown


@dataclass(frozen=True)
class BatchOutcome:
    """What one request gets back: its rows of the batch's probabilities and where the time went."""

    probabilities: np.ndarray  # (n, classes) calibrated, for the request's n images
    queue_s: float  # enqueued -> its batch started
    compute_s: float  # the whole batch's onnxruntime call
    batch_size: int  # images in that batch


@dataclass
class _Pending:
    images: np.ndarray  # (n, C, H, W) float32
    future: "asyncio.Future[BatchOutcome]"
    enqueued: float


class Batcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],  # (N, C, H, W) -> (N, classes): Predictor.predict
        *,
        name: str,
        max_batch_size: int,
        max_queue_size: int,
        max_queue_delay_s: float = 0.0,
        inline_compute_s: float = 0.0,
    ) -> None:
        self._predict = predict
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self.max_queue_delay_s = max_queue_delay_s
        self.inline_compute_s = inline_compute_s
        self.on_batch: Callable[[int, float], None] | None = None  # (batch size, compute seconds), for metrics
        self._pending: deque[_Pending] = deque()
        self._queued_images = 0
        self._seconds_per_image: float | None = None  # running estimate once a batch ran: inline or not, Retry-After
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{name}")
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_images(self) -> int:
        return self._queued_images

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run_forever(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(ShuttingDown(f"{self.name} was unloaded while the request waited"))
        self._executor.shutdown(wait=True)

    def check_room(self, count: int) -> None:
        """Raise QueueFull unless ``count`` more images fit; callers check before decoding, to waste nothing."""
        if self._queued_images + count > self.max_queue_size:
            retry_after = max(1, math.ceil(self._queued_images * (self._seconds_per_image or 0.001)))
            raise QueueFull(
                f"{self.name}: {self._queued_images} images are already queued (limit {self.max_queue_size}); "
                f"retry after {retry_after} s",
                retry_after,
            )

    async def submit(self, images: np.ndarray) -> BatchOutcome:
        count = len(images)
        self.check_room(count)
        future: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(images, future, time.perf_counter()))
        self._queued_images += count
        self._wakeup.set()
        return await future

    def _timed_predict(self, images: np.ndarray) -> tuple[np.ndarray, float]:
        """Times the model alone (in the worker thread: not the event loop's delay in noticing the result)."""
        started = time.perf_counter()
        probabilities = self._predict(images)
        return probabilities, time.perf_counter() - started

    def _runs_inline(self, images: int) -> bool:
        """Whether a batch of ``images`` is expected to finish within ``inline_compute_s`` (never before one ran)."""
        return self._seconds_per_image is not None and self._seconds_per_image * images <= self.inline_compute_s

    def _take_batch(self) -> list[_Pending]:
        """Requests from the head of the queue, whole, up to max_batch_size images (always at least one)."""
        batch = [self._pending.popleft()]
        size = len(batch[0].images)
        while self._pending and size + len(self._pending[0].images) <= self.max_batch_size:
            item = self._pending.popleft()
            batch.append(item)
            size += len(item.images)
        self._queued_images -= size
        return batch

    async def _run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.max_queue_delay_s and self._queued_images < self.max_batch_size:
                await asyncio.sleep(self.max_queue_delay_s)
            batch = [item for item in self._take_batch() if not item.future.done()]  # drop abandoned requests
            if not batch:
                continue
            images = batch[0].images if len(batch) == 1 else np.concatenate([item.images for item in batch])
            started = time.perf_counter()
            try:
                if self._runs_inline(len(images)):
                    probabilities, compute_s = self._timed_predict(images)
                else:
                    probabilities, compute_s = await loop.run_in_executor(self._executor, self._timed_predict, images)
            except Exception as error:  # the runtime failed: every request in the batch learns why
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            per_image = compute_s / len(images)
            previous = self._seconds_per_image
            self._seconds_per_image = per_image if previous is None else 0.8 * previous + 0.2 * per_image
            if self.on_batch is not None:
                self.on_batch(len(images), compute_s)
            row = 0
            for item in batch:
                count = len(item.images)
                if not item.future.done():
                    rows = probabilities[row : row + count]
                    outcome = BatchOutcome(rows, started - item.enqueued, compute_s, len(images))
                    item.future.set_result(outcome)
                row += count
