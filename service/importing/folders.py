"""A labelled folder (``--calibrate-on``, ``--evaluate-on``): one subfolder per label, images inside, as
``imgcls train --dataset folder:`` reads it. Every image is decoded and preprocessed by the service's own
code (service/imaging) with the manifest's preprocessing, so what is measured is what will be served.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.imaging import DecodeLimits, ImageError, decode_into
from service.importing.errors import ImportRejected
from service.inference.offline import IMAGE_SUFFIXES
from service.inference.predictor import Predictor
from service.repository import Preprocessing

BATCH_SIZE = 32  # images per onnxruntime call


@dataclass(frozen=True)
class LabelledImages:
    folder: Path
    files: list[Path]
    targets: np.ndarray  # (N,) int64: the index of each file's label


def labelled_images(folder: Path, labels: tuple[str, ...]) -> LabelledImages:
    """Image files under ``folder/<label>/``; every subfolder must be one of ``labels`` (not all need be there)."""
    check = f"labelled folder {folder}"
    if not folder.is_dir():
        raise ImportRejected(check, "is not a folder")
    files: list[Path] = []
    targets: list[int] = []
    for subfolder in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if subfolder.name not in labels:
            raise ImportRejected(
                check, f"the class folder {subfolder.name!r} is not one of the labels ({', '.join(labels[:10])} ...)"
            )
        found = sorted(p for p in subfolder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        files.extend(found)
        targets.extend([labels.index(subfolder.name)] * len(found))
    if not files:
        raise ImportRejected(check, "holds no images in label folders (<folder>/<label>/<image>.jpg)")
    return LabelledImages(folder, files, np.asarray(targets, dtype=np.int64))


def preprocessed_batches(
    images: LabelledImages, preprocessing: Preprocessing, limits: DecodeLimits, batch_size: int = BATCH_SIZE
) -> Iterator[np.ndarray]:
    """(n, C, H, W) float32 batches of the images, in order; an unreadable image names its file."""
    height, width = preprocessing.input_size
    for start in range(0, len(images.files), batch_size):
        chunk = images.files[start : start + batch_size]
        batch = np.empty((len(chunk), preprocessing.channels, height, width), dtype=np.float32)
        for row, path in enumerate(chunk):
            try:
                decode_into(path.read_bytes(), limits, preprocessing, batch[row])
            except (ImageError, OSError) as error:
                raise ImportRejected(f"labelled folder {images.folder}", f"{path}: {error}") from error
        yield batch


def model_outputs(
    predictor: Predictor, images: LabelledImages, preprocessing: Preprocessing, limits: DecodeLimits
) -> np.ndarray:
    """(N, classes) float32: the model's own output (logits or probabilities) for every image, in order."""
    return np.concatenate([predictor.outputs(batch) for batch in preprocessed_batches(images, preprocessing, limits)])
