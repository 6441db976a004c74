import asyncio
import threading
import time

import numpy as np
import pytest

from service.inference.batcher import Batcher
from service.inference.errors import QueueFull

pytestmark = pytest.mark.anyio


class GatedModel:
    """Stands in for Predictor.predict; its calls block until the test opens a gate, and it records each batch."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.batches.append(len(images))
        self.started.set()
        self.gate.wait(timeout=10)
        return images.reshape(len(images), -1)[:, :2] * 2  # (n, 2): rows stay traceable to their request


def images(count: int, value: float) -> np.ndarray:
    return np.full((count, 1, 2, 2), value, dtype=np.float32)


async def wait_for(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.001)


async def test_an_idle_runtime_takes_a_request_at_once_and_busy_time_gathers_the_next_batch() -> None:
    model = GatedModel()
    batcher = Batcher(model, name="t", max_batch_size=8, max_queue_size=100)
    batcher.start()
    first = asyncio.create_task(batcher.submit(images(1, 1)))
    await wait_for(model.started)  # dispatched alone, without waiting for company
    followers = [asyncio.create_task(batcher.submit(images(1, v))) for v in (2, 3, 4)]
    await asyncio.sleep(0.01)
    model.gate.set()
    outcomes = await asyncio.gather(first, *followers)
    assert model.batches == [1, 3]
    assert [float(o.probabilities[0, 0]) for o in outcomes] == [2, 4, 6, 8]  # each request got its own rows
    assert [o.batch_size for o in outcomes] == [1, 3, 3, 3]
    await batcher.close()


async def test_batches_respect_max_batch_size_and_keep_requests_whole() -> None:
    model = GatedModel()
    batcher = Batcher(model, name="t", max_batch_size=4, max_queue_size=100)
    batcher.start()
    blocker = asyncio.create_task(batcher.submit(images(1, 0)))
    await wait_for(model.started)
    waiting = [asyncio.create_task(batcher.submit(images(n, n))) for n in (3, 2, 2, 1)]
    await asyncio.sleep(0.01)
    model.gate.set()
    outcomes = await asyncio.gather(blocker, *waiting)
    assert model.batches == [1, 3, 4, 1]  # 3 alone (3+2 > 4), then 2+2, then the 1
    assert [len(o.probabilities) for o in outcomes] == [1, 3, 2, 2, 1]
    await batcher.close()


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    model = GatedModel()
    batcher = Batcher(model, name="t", max_batch_size=2, max_queue_size=3)
    batcher.start()
    running = asyncio.create_task(batcher.submit(images(1, 0)))
    await wait_for(model.started)
    queued = [asyncio.create_task(batcher.submit(images(1, 1))) for _ in range(3)]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull) as refused:
        await batcher.submit(images(1, 1))
    assert refused.value.retry_after_s >= 1
    assert "3 images are already queued" in str(refused.value)
    model.gate.set()
    await asyncio.gather(running, *queued)
    await batcher.close()


async def test_a_runtime_error_reaches_every_request_of_the_batch_and_the_batcher_goes_on() -> None:
    calls = 0

    def flaky(batch: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("onnxruntime exploded")
        return batch.reshape(len(batch), -1)

    batcher = Batcher(flaky, name="t", max_batch_size=8, max_queue_size=100)
    batcher.start()
    with pytest.raises(RuntimeError, match="exploded"):
        await batcher.submit(images(2, 1))
    assert (await batcher.submit(images(1, 5))).probabilities.shape == (1, 4)
    await batcher.close()


async def test_abandoned_requests_are_not_computed() -> None:
    model = GatedModel()
    batcher = Batcher(model, name="t", max_batch_size=8, max_queue_size=100)
    batcher.start()
    running = asyncio.create_task(batcher.submit(images(1, 0)))
    await wait_for(model.started)
    abandoned = asyncio.create_task(batcher.submit(images(2, 1)))
    kept = asyncio.create_task(batcher.submit(images(1, 2)))
    await asyncio.sleep(0.01)
    abandoned.cancel()  # the client went away
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(running, kept)
    assert model.batches == [1, 1]
    assert batcher.queued_images == 0
    await batcher.close()


class ThreadRecordingModel:
    """Takes ``seconds_per_image`` per image and records which thread ran each batch."""

    def __init__(self, seconds_per_image: float) -> None:
        self.seconds_per_image = seconds_per_image
        self.threads: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.threads.append(threading.get_ident())
        time.sleep(self.seconds_per_image * len(batch))
        return batch.reshape(len(batch), -1)[:, :2]


async def test_short_batches_run_on_the_event_loop_once_one_was_measured() -> None:
    model = ThreadRecordingModel(0.0002)
    batcher = Batcher(model, name="t", max_batch_size=8, max_queue_size=100, inline_compute_s=0.005)
    batcher.start()
    for value in range(3):
        await batcher.submit(images(1, value))
    loop_thread = threading.get_ident()
    assert model.threads[0] != loop_thread  # nothing measured yet: the worker thread, whatever the model
    assert model.threads[1:] == [loop_thread, loop_thread]
    await batcher.close()


async def test_batches_expected_to_take_longer_than_the_inline_bound_stay_in_the_worker_thread() -> None:
    model = ThreadRecordingModel(0.01)  # 10 ms per image: a large model on a CPU
    batcher = Batcher(model, name="t", max_batch_size=8, max_queue_size=100, inline_compute_s=0.005)
    batcher.start()
    ticks = 0

    async def count_ticks() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticker = asyncio.create_task(count_ticks())
    for value in range(3):
        await batcher.submit(images(1, value))
    ticker.cancel()
    assert threading.get_ident() not in model.threads
    assert ticks >= 10  # the event loop kept running during 30 ms of compute
    await batcher.close()
