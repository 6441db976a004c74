"""Classification without a server (``imgcls classify``): files and folders in batches, through the API's
own pieces: the same decoding and preprocessing, the version's ``Predictor`` (onnxruntime and the
temperature) called directly instead of through a batcher, and the same ``rank``. Unlike a request, one
unreadable file does not fail its batch: it gets an error row and the others run. ``write_overlays``
(``--explain DIR``) draws each classified file's top-1 class activation map over it, as the API's
``format=png`` does."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.files import write_atomic
from service.imaging import DecodeLimits, ImageError, decode_into
from service.inference.classify import ImageResult, rank
from service.inference.explain import ExplainSession
from service.inference.heatmaps import normalized, overlay_png
from service.inference.predictor import Predictor, model_file
from service.inference.providers import choose_providers, default_threads
from service.repository import Manifest, ModelRepository

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass(frozen=True)
class FileResult:
    path: Path
    result: ImageResult | None  # None when the file could not be classified
    error: str | None = None


def image_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and image files (by suffix) found under folders, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(path)
    return found


def load_predictor(
    repository: ModelRepository, name: str, reference: str | None, variant: str
) -> tuple[Manifest, Predictor]:
    """The manifest and predictor of a version (number or alias; None: production, else the latest)."""
    version = repository.resolve(name, reference)
    manifest = repository.verify(name, version)
    onnx_path = model_file(repository.path(name, version), manifest, variant)
    predictor = Predictor.for_manifest(
        onnx_path, manifest, providers=choose_providers("auto"), intra_op_threads=default_threads(1)
    )
    return manifest, predictor


def classify_files(
    files: list[Path], manifest: Manifest, predictor: Predictor, *, top_k: int, batch_size: int, limits: DecodeLimits
) -> Iterator[FileResult]:
    """One FileResult per file, in order; unreadable files get an error instead of stopping the run."""
    height, width = manifest.preprocessing.input_size
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        batch = np.empty((len(chunk), manifest.preprocessing.channels, height, width), dtype=np.float32)
        good: list[int] = []
        errors: dict[int, str] = {}
        for position, path in enumerate(chunk):
            try:
                decode_into(path.read_bytes(), limits, manifest.preprocessing, batch[len(good)])
                good.append(position)
            except (ImageError, OSError) as error:
                errors[position] = f"{type(error).__name__}: {error}"
        results: dict[int, ImageResult] = {}
        if good:
            probabilities = predictor.predict(batch[: len(good)])
            results = dict(zip(good, rank(probabilities, manifest.labels, top_k, 0.0), strict=True))
        for position, path in enumerate(chunk):
            yield FileResult(path, results.get(position), errors.get(position))


def overlay_names(paths: list[Path]) -> list[str]:
    """``<stem>.png`` per file; a stem seen before gets ``-2``, ``-3``, ... (nested folders may repeat names)."""
    taken: dict[str, int] = {}
    names = []
    for path in paths:
        count = taken[path.stem] = taken.get(path.stem, 0) + 1
        names.append(f"{path.stem}.png" if count == 1 else f"{path.stem}-{count}.png")
    return names


def write_overlays(
    rows: list[FileResult],
    manifest: Manifest,
    session: ExplainSession,
    folder: Path,
    *,
    batch_size: int,
    limits: DecodeLimits,
) -> list[Path]:
    """Each classified file's top-1 class activation map drawn over the image the model saw, into ``folder``
    (``overlay_names``); returns the files written, in the order of ``rows``."""
    folder.mkdir(parents=True, exist_ok=True)
    classified = [row for row in rows if row.result is not None]
    names = overlay_names([row.path for row in classified])
    height, width = manifest.preprocessing.input_size
    written = []
    for start in range(0, len(classified), batch_size):
        chunk = classified[start : start + batch_size]
        batch = np.empty((len(chunk), manifest.preprocessing.channels, height, width), dtype=np.float32)
        for position, row in enumerate(chunk):
            decode_into(row.path.read_bytes(), limits, manifest.preprocessing, batch[position])
        _, maps = session.run(batch)
        for position, row in enumerate(chunk):
            assert row.result is not None
            scaled, _, _ = normalized(maps[position, row.result.top[0].index])
            target = folder / names[start + position]
            write_atomic(target, overlay_png(batch[position], scaled, manifest.preprocessing))
            written.append(target)
    return written
