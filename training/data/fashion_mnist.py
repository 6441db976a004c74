"""Fashion-MNIST from its four standard IDX files: 70,000 grayscale 28x28 images of 10 clothing classes.

The Debian package ``dataset-fashion-mnist`` installs the files (gzipped) in ``DEFAULT_FASHION_MNIST_DIR``.
"""

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from training.data.idx import read_idx
from training.errors import UnusableData

FASHION_MNIST_LABELS: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Per-pixel statistics of the 60,000 training images on the [0, 1] scale.
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_DIR_ENV = "IMGCLS_FASHION_MNIST_DIR"  # read by the CLI, never here

_FILE_PREFIX = {"train": "train", "test": "t10k"}
_SPLIT_SIZE = {"train": 60_000, "test": 10_000}
_IMAGE_SIZE = 28

_HOW_TO_GET_IT = (
    "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
    f"or put the four IDX files in a folder and set {FASHION_MNIST_DIR_ENV} (or --data-dir)"
)


def _find(directory: Path, stem: str) -> Path:
    """``stem.gz`` or ``stem``, whichever exists (gzipped first: that is how the package ships them)."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise UnusableData(f"Fashion-MNIST file {stem}[.gz] not found in {directory}; {_HOW_TO_GET_IT}")


def load_fashion_mnist(directory: Path, split: Literal["train", "test"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 ``(N, 1, 28, 28)`` and labels as int64 ``(N,)``; N is 60,000 (train) or 10,000 (test).

    Reads ``{train,t10k}-images-idx3-ubyte[.gz]`` and ``{train,t10k}-labels-idx1-ubyte[.gz]``.
    Raises ``UnusableData`` when the folder or a file is missing (saying how to install them), when a
    file is corrupt, or when shapes, counts or label values are not Fashion-MNIST's.
    """
    if split not in _FILE_PREFIX:
        raise UnusableData(f"Fashion-MNIST has no split {split!r}; use 'train' or 'test'")
    if not directory.is_dir():
        raise UnusableData(f"Fashion-MNIST folder {directory} does not exist; {_HOW_TO_GET_IT}")
    prefix = _FILE_PREFIX[split]
    images_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)

    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise UnusableData(
            f"Fashion-MNIST files in {directory} hold {images.dtype}/{labels.dtype}, expected uint8; "
            "reinstall the files"
        )
    if images.shape[1:] != (_IMAGE_SIZE, _IMAGE_SIZE):
        raise UnusableData(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, Fashion-MNIST's are 28x28; "
            "point to the Fashion-MNIST files"
        )
    if len(images) != len(labels):
        raise UnusableData(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} {len(labels)} labels; "
            "the two files come from different downloads, reinstall them"
        )
    if len(labels) and int(labels.max()) >= len(FASHION_MNIST_LABELS):
        raise UnusableData(
            f"{labels_path}: label {int(labels.max())} outside 0..9; this is not Fashion-MNIST, reinstall it"
        )
    if len(images) != _SPLIT_SIZE[split]:
        raise UnusableData(
            f"{images_path}: {len(images)} images, Fashion-MNIST's {split} split has {_SPLIT_SIZE[split]}; "
            "reinstall the files"
        )
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).to(torch.int64)
