"""Keeping the inputs of predictions for review, off the request's path (IMGCLS_KEEP_PREDICTIONS).

``Keeper.offer`` runs on the event loop after a /v1 classify answer is made: it picks the images to keep
(top-1 under the threshold, or drawn for the sample) and hands them to one background thread, which decodes
them again, writes each as a PNG with its record, and sweeps the store now and then. The request never
waits for a disk: at most ``max_pending`` batches wait for the thread, and past that images are not kept
(``dropped`` counts them). With the setting off no Keeper exists and the route pays one ``is None`` test.
"""

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from service.feedback.images import kept_png
from service.feedback.records import Guess, KeptPrediction
from service.feedback.store import FeedbackStore, timestamp
from service.imaging import DecodeLimits, ImageError
from service.repository import Manifest

log = logging.getLogger(__name__)

REVIEW_TOP = 3  # labels kept with each prediction: what the review view offers first
SWEEP_EVERY_S = 10.0  # a process sweeps the store at most this often, after a write


@dataclass(frozen=True)
class KeepPolicy:
    threshold: float  # top-1 probability under this: low confidence, always kept
    thresholds: dict[str, float]  # model name -> its own threshold (IMGCLS_CONFIDENCE_THRESHOLDS)
    sample_rate: float  # share of the other predictions kept

    def chosen(self, model: str, top1: list[float]) -> list[tuple[int, bool]]:
        """(position, low confidence) of each image to keep, from each image's top-1 probability."""
        threshold = self.thresholds.get(model, self.threshold)
        picked = []
        for position, probability in enumerate(top1):
            low = probability < threshold
            if low or random.random() < self.sample_rate:
                picked.append((position, low))
        return picked


class Keeper:
    def __init__(
        self, store: FeedbackStore, policy: KeepPolicy, limits: DecodeLimits, *, max_pending: int = 16
    ) -> None:
        self.store = store
        self.policy = policy
        self.limits = limits
        self._room = threading.BoundedSemaphore(max_pending)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keep-predictions")
        self._next_sweep = 0.0
        self.dropped = 0  # images not kept because the thread was behind

    def offer(
        self,
        manifest: Manifest,
        variant: str,
        images: list[bytes],
        top1: list[float],
        probabilities: np.ndarray,
        prediction_ids: list[str],
    ) -> None:
        """Keep what the policy picks of one answer: ``top1`` and ``probabilities`` (n, classes) in image order."""
        picked = self.policy.chosen(manifest.name, top1)
        if not picked:
            return
        if not self._room.acquire(blocking=False):
            self.dropped += len(picked)
            return
        rows = [(images[i], low, probabilities[i].copy(), prediction_ids[i]) for i, low in picked]
        self._executor.submit(self._write, manifest, variant, rows, time.time())

    def _write(
        self, manifest: Manifest, variant: str, rows: list[tuple[bytes, bool, np.ndarray, str]], at: float
    ) -> None:
        try:
            for data, low, probabilities, prediction_id in rows:
                try:
                    png, width, height = kept_png(data, self.limits, manifest.preprocessing)
                except ImageError:  # classified, so decodable; a resize limit may still refuse it
                    continue
                order = np.argsort(-probabilities, kind="stable")[:REVIEW_TOP].tolist()
                self.store.keep(
                    KeptPrediction(
                        id=prediction_id,
                        model=manifest.name,
                        version=manifest.version,
                        variant=variant,
                        created_at=timestamp(at),
                        top=[Guess(manifest.labels[i], float(probabilities[i])) for i in order],
                        low_confidence=low,
                        image_bytes=len(png),
                        width=width,
                        height=height,
                    ),
                    png,
                )
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + SWEEP_EVERY_S
                self.store.sweep()
        except Exception:
            log.exception("could not keep %d prediction(s) of %s", len(rows), manifest.name)
        finally:
            self._room.release()

    def close(self) -> None:
        """Wait for the kept predictions still being written (at shutdown)."""
        self._executor.shutdown(wait=True)
