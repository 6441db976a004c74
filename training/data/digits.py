"""scikit-learn's handwritten digits: 1,797 grayscale 8x8 images of 0..9, shipped inside scikit-learn.

The set has no official test split; ``load_digits_split`` holds out a seeded, stratified 20 %.
"""

import numpy as np
import torch
from sklearn.datasets import load_digits

from training.data.split import train_val_split

DIGITS_LABELS: tuple[str, ...] = tuple(str(digit) for digit in range(10))
DIGITS_TEST_FRACTION = 0.2


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images as uint8 ``(N, 1, 8, 8)`` and labels as int64 ``(N,)``.

    The source pixels are integers 0..16; they become ``round(v * 255 / 16)`` (16 -> 255), so the
    images look like any other 8-bit grayscale image to the rest of the pipeline.
    """
    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    return torch.from_numpy(pixels).unsqueeze(1), torch.from_numpy(bunch.target).to(torch.int64)


def load_digits_split(*, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train_images, train_labels, test_images, test_labels)``: a stratified 80/20 split fixed by ``seed``.

    Keep ``seed`` the same across runs whose test accuracies you compare.
    """
    images, labels = load_digits_tensors()
    train, test = train_val_split(labels, val_fraction=DIGITS_TEST_FRACTION, seed=seed)
    return images[train], labels[train], images[test], labels[test]
