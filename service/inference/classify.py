"""Images -> ranked, calibrated labels: the one path every transport takes.

``classify`` serves /v1 classify and /v2 infer alike: encoded images are decoded and preprocessed as the
manifest says (``prepare``), preprocessed tensors (a /v2 ``input``) go as they are; either way the
version's batcher runs them through its ``Predictor`` and ``rank`` turns the probabilities into top-k
labels. ``imgcls classify`` (offline.py) calls ``prepare``'s decoding, ``Predictor.predict`` and ``rank``
without a batcher.
"""

import asyncio
import time
from dataclasses import dataclass

import msgspec
import numpy as np

from service.imaging import DecodeLimits, ImageError, decode_into
from service.inference.errors import InvalidArgument
from service.inference.registry import LoadedVersion
from service.repository import Preprocessing

INLINE_DECODE_BYTES = 64 * 1024  # smaller requests decode on the event loop; larger ones in a thread


class Prediction(msgspec.Struct, frozen=True):
    """One label of an answer; also the API's JSON shape (msgspec structs are cheap to make and encode)."""

    label: str
    index: int
    probability: float  # calibrated: temperature-scaled softmax


class ImageResult(msgspec.Struct, frozen=True):
    top: list[Prediction]  # highest first
    low_confidence: bool  # top-1 probability under the model's confidence threshold (false when none is set)


@dataclass(frozen=True)
class Classification:
    results: list[ImageResult]
    probabilities: np.ndarray  # (n, classes), for callers that want everything (the V2 protocol)
    decode_s: float  # decoding and preprocessing (0 for preprocessed tensors)
    queue_s: float
    compute_s: float
    batch_size: int
    inputs: np.ndarray  # the preprocessed (n, C, H, W) batch: a rollout runs it on the other version too


def prepare(encoded: list[bytes], preprocessing: Preprocessing, limits: DecodeLimits) -> np.ndarray:
    """Decode and preprocess every image into one (n, C, H, W) float32 array; errors name the image."""
    height, width = preprocessing.input_size
    batch = np.empty((len(encoded), preprocessing.channels, height, width), dtype=np.float32)
    for position, data in enumerate(encoded):
        try:
            decode_into(data, limits, preprocessing, batch[position])
        except ImageError as error:
            if len(encoded) == 1:
                raise
            raise type(error)(f"image {position + 1} of {len(encoded)}: {error}") from error
    return batch


def rank(probabilities: np.ndarray, labels: tuple[str, ...], top_k: int, threshold: float) -> list[ImageResult]:
    """The ``top_k`` labels of each row of (n, classes) probabilities, highest first (ties: lower index)."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k].tolist()
    results = []
    for indices, row in zip(order, probabilities.tolist(), strict=True):  # Python ints and floats, in two calls
        top = [Prediction(labels[i], i, row[i]) for i in indices]
        results.append(ImageResult(top, top[0].probability < threshold))
    return results


async def classify(
    loaded: LoadedVersion,
    images: list[bytes] | np.ndarray,
    *,
    limits: DecodeLimits,
    top_k: int,
    threshold: float = 0.0,
) -> Classification:
    """Encoded images, or a preprocessed (n, C, H, W) float32 array -> their top-k labels and probabilities."""
    labels = loaded.manifest.labels
    if len(images) == 0:
        raise InvalidArgument("no images in the request")
    if not 1 <= top_k <= len(labels):
        raise InvalidArgument(f"top_k must be between 1 and {len(labels)} (the number of labels), got {top_k}")
    batcher = loaded.batcher
    if isinstance(images, np.ndarray):
        batch, decode_s = images, 0.0
    else:
        batcher.check_room(len(images))  # refuse before decoding when the queue is already full
        started = time.perf_counter()
        preprocessing = loaded.manifest.preprocessing
        if sum(len(data) for data in images) <= INLINE_DECODE_BYTES:
            batch = prepare(images, preprocessing, limits)
        else:
            batch = await asyncio.to_thread(prepare, images, preprocessing, limits)
        decode_s = time.perf_counter() - started
    outcome = await batcher.submit(batch)
    results = rank(outcome.probabilities, labels, top_k, threshold)
    return Classification(
        results, outcome.probabilities, decode_s, outcome.queue_s, outcome.compute_s, outcome.batch_size, batch
    )
