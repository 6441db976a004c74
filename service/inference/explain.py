"""Explanations: images -> the top-k labels classify gives, and per image a map of where the answer came from.

Two methods:

- ``cam`` (the default): class activation maps from the version's explain graph (``explain.onnx``, made by
  training/explain_export.py; the manifest's ``explain``). One onnxruntime run gives the logits (ranked and
  calibrated exactly as classify's are) and every class's map; the asked class's map is taken. It costs
  about one classify of the same images. A version without an explain graph raises
  ``ExplanationUnavailable`` (the API's 409) rather than drawing a picture that would be wrong.
- ``occlusion``: any model. Each image runs once whole and once per cell of an ``OCCLUSION_GRID`` square
  grid with that cell set to the dataset mean (0 after normalization), in one batch through the version's
  batcher (so its bounded queue and its variant apply); a cell's value is how much the class's probability
  drops without it. It costs ``OCCLUSION_RUNS`` (50) model runs per image.

Explain graphs are opened on the first explanation asked of a version and kept for the ``KEPT_SESSIONS``
most recently explained versions (``Explainers``); at most one runs at a time in a process, so
explanations cannot take more than one run's CPU from classify traffic, which never touches them.
"""

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from service.imaging import DecodeLimits
from service.inference.classify import INLINE_DECODE_BYTES, ImageResult, prepare, rank
from service.inference.errors import ExplanationUnavailable, InvalidArgument, UnknownClass
from service.inference.predictor import UNLOADABLE, calibrated, session_options
from service.inference.registry import LoadedVersion
from service.repository import CorruptVersion, Explanation, Manifest, ModelRepository
from service.repository.manifest import CAM_OUTPUT

Method = Literal["cam", "occlusion"]
METHODS: tuple[Method, ...] = ("cam", "occlusion")
OCCLUSION_GRID = 7  # cells per side
OCCLUSION_RUNS = 1 + OCCLUSION_GRID * OCCLUSION_GRID  # model runs per image: the whole image, then each cell hidden
KEPT_SESSIONS = 4  # explain graphs kept open, most recently used first
LABELS_SHOWN = 20  # an unknown class's message lists this many of the model's labels


@dataclass(frozen=True)
class ExplainedImage:
    result: ImageResult  # the top-k labels, as classify answers them
    index: int  # the class explained: the top-1, or the one asked for
    label: str
    probability: float  # of that class, calibrated
    values: np.ndarray  # (h, w) float32 map at its own resolution: logit units (cam), probability drops (occlusion)


@dataclass(frozen=True)
class Explained:
    images: list[ExplainedImage]
    batch: np.ndarray  # (n, C, H, W) the preprocessed images, to draw the maps on
    method: Method
    model_runs: int  # per image
    decode_s: float
    compute_s: float  # onnxruntime (cam), or waiting for and running the batches (occlusion)


class ExplainSession:
    """One version's explain graph: (n, C, H, W) images -> logits (n, classes) and maps (n, classes, h, w)."""

    def __init__(self, path: Path, *, providers: list[str], intra_op_threads: int) -> None:
        try:
            self._session = ort.InferenceSession(str(path), session_options(intra_op_threads), providers=providers)
        except UNLOADABLE as error:
            raise CorruptVersion(f"{path} cannot be loaded by onnxruntime: {error}") from error
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [self._session.get_outputs()[0].name, CAM_OUTPUT]

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, maps = self._session.run(self._output_names, {self._input_name: batch})
        return logits.astype(np.float32, copy=False), maps.astype(np.float32, copy=False)


def open_session(
    repository: ModelRepository, manifest: Manifest, *, providers: list[str], intra_op_threads: int
) -> ExplainSession:
    """The explain graph of a version; raises ``ExplanationUnavailable`` (saying why) for one without."""
    path = repository.path(manifest.name, manifest.version) / explain_entry(manifest).file
    return ExplainSession(path, providers=providers, intra_op_threads=intra_op_threads)


def explain_entry(manifest: Manifest) -> Explanation:
    """The manifest's explain graph; raises ``ExplanationUnavailable`` (saying why) for a version without."""
    if manifest.explain is None:
        raise ExplanationUnavailable(why_unavailable(manifest))
    return manifest.explain


def why_unavailable(manifest: Manifest) -> str:
    imported = manifest.lineage.imported
    why = (
        "it was imported as an ONNX file, whose graph imgcls cannot split"
        if imported is not None and imported.kind == "onnx"
        else f"its architecture ({manifest.architecture}) has no global pool followed by one linear classifier, "
        "or it was published before explanations existed"
    )
    return (
        f"explanations need the last feature map and the classifier's weights (an explain.onnx published with the "
        f"version), and {manifest.name} v{manifest.version} has none: {why}. The occlusion method explains any "
        f"model, at {OCCLUSION_RUNS} model runs per image"
    )


class Explainers:
    """The explain graphs this server process has open: each opened (in a worker thread) on the first explanation
    asked of its version, the ``KEPT_SESSIONS`` most recently used kept; one run at a time."""

    def __init__(self, repository: ModelRepository, *, providers: list[str], intra_op_threads: int) -> None:
        self.repository = repository
        self.providers = providers
        self.intra_op_threads = intra_op_threads
        self._sessions: OrderedDict[tuple[str, int], ExplainSession] = OrderedDict()
        self._opening: dict[tuple[str, int], asyncio.Lock] = {}
        self._running = asyncio.Semaphore(1)

    async def session(self, manifest: Manifest) -> ExplainSession:
        explain_entry(manifest)
        key = (manifest.name, manifest.version)
        async with self._opening.setdefault(key, asyncio.Lock()):
            if key not in self._sessions:
                self._sessions[key] = await asyncio.to_thread(
                    open_session,
                    self.repository,
                    manifest,
                    providers=self.providers,
                    intra_op_threads=self.intra_op_threads,
                )
                while len(self._sessions) > KEPT_SESSIONS:
                    evicted, _ = self._sessions.popitem(last=False)
                    self._opening.pop(evicted, None)
            self._sessions.move_to_end(key)
            return self._sessions[key]

    async def run(self, manifest: Manifest, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        session = await self.session(manifest)
        async with self._running:
            return await asyncio.to_thread(session.run, batch)


def class_index(manifest: Manifest, label: str | None) -> int | None:
    """The index of ``label`` (None: each image's top-1); raises ``UnknownClass`` naming the labels there are."""
    if label is None:
        return None
    try:
        return manifest.labels.index(label)
    except ValueError:
        shown = ", ".join(manifest.labels[:LABELS_SHOWN])
        more = f", … ({len(manifest.labels)} in all)" if len(manifest.labels) > LABELS_SHOWN else ""
        raise UnknownClass(f"{manifest.name} has no class {label!r}; its labels: {shown}{more}") from None


def occluded(image: np.ndarray, grid: int = OCCLUSION_GRID) -> np.ndarray:
    """(C, H, W) -> (1 + grid², C, H, W): the image, then a copy with each cell (row by row) set to 0."""
    _, height, width = image.shape
    rows = np.linspace(0, height, grid + 1).round().astype(int)
    columns = np.linspace(0, width, grid + 1).round().astype(int)
    batch = np.repeat(image[None], 1 + grid * grid, axis=0)
    for cell in range(grid * grid):
        row, column = divmod(cell, grid)
        batch[1 + cell, :, rows[row] : rows[row + 1], columns[column] : columns[column + 1]] = 0.0
    return batch


async def explain(
    loaded: LoadedVersion,
    images: list[bytes],
    *,
    explainers: Explainers,
    limits: DecodeLimits,
    top_k: int,
    label: str | None = None,
    method: Method = "cam",
    threshold: float = 0.0,
) -> Explained:
    """Encoded images -> their top-k labels and a map per image of the class ``label`` (None: its top-1)."""
    manifest = loaded.manifest
    if len(images) == 0:
        raise InvalidArgument("no images in the request")
    if not 1 <= top_k <= len(manifest.labels):
        raise InvalidArgument(f"top_k must be between 1 and {len(manifest.labels)} (the number of labels), got {top_k}")
    asked = class_index(manifest, label)
    if method == "cam":
        explain_entry(manifest)  # before decoding: refused at once

    started = time.perf_counter()
    if sum(len(data) for data in images) <= INLINE_DECODE_BYTES:
        batch = prepare(images, manifest.preprocessing, limits)
    else:
        batch = await asyncio.to_thread(prepare, images, manifest.preprocessing, limits)
    decode_s = time.perf_counter() - started

    if method == "cam":
        logits, maps = await explainers.run(manifest, batch)
        probabilities = calibrated(logits, np.float32(manifest.temperature), manifest.scores)
        results = rank(probabilities, manifest.labels, top_k, threshold)
        explained = []
        for position, result in enumerate(results):
            k = result.top[0].index if asked is None else asked
            probability = float(probabilities[position, k])
            explained.append(ExplainedImage(result, k, manifest.labels[k], probability, maps[position, k]))
        runs = 1
    else:
        rows = []
        for image in batch:  # one image's 50 runs per batcher submission: a request never outgrows the queue
            copies = occluded(image)
            loaded.batcher.check_room(len(copies))
            rows.append((await loaded.batcher.submit(copies)).probabilities)
        results = rank(np.stack([row[0] for row in rows]), manifest.labels, top_k, threshold)
        explained = []
        for result, scores in zip(results, rows, strict=True):
            k = result.top[0].index if asked is None else asked
            drops = (scores[0, k] - scores[1:, k]).reshape(OCCLUSION_GRID, OCCLUSION_GRID).astype(np.float32)
            explained.append(ExplainedImage(result, k, manifest.labels[k], float(scores[0, k]), drops))
        runs = OCCLUSION_RUNS
    compute_s = time.perf_counter() - started - decode_s
    return Explained(explained, batch, method, runs, decode_s, compute_s)
