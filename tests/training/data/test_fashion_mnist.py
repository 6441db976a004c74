from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import FASHION_MNIST
from tests.training.data.files import write_idx
from training.data.fashion_mnist import (
    FASHION_MNIST_LABELS,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    load_fashion_mnist,
)
from training.errors import UnusableData

needs_real_files = pytest.mark.skipif(
    not FASHION_MNIST.is_dir(),
    reason=f"{FASHION_MNIST} missing: apt-get install dataset-fashion-mnist to run this test",
)


@needs_real_files
def test_real_train_split() -> None:
    images, labels = load_fashion_mnist(FASHION_MNIST, "train")
    assert images.shape == (60_000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60_000,) and labels.dtype == torch.int64
    assert torch.equal(torch.bincount(labels), torch.full((10,), 6000))
    pixels = images.to(torch.float64) / 255
    assert pixels.mean().item() == pytest.approx(FASHION_MNIST_MEAN, abs=5e-5)
    assert pixels.std().item() == pytest.approx(FASHION_MNIST_STD, abs=5e-5)


@needs_real_files
def test_real_test_split() -> None:
    images, labels = load_fashion_mnist(FASHION_MNIST, "test")
    assert images.shape == (10_000, 1, 28, 28)
    assert int(labels.min()) == 0 and int(labels.max()) == 9
    assert len(FASHION_MNIST_LABELS) == 10 and FASHION_MNIST_LABELS[9] == "Ankle boot"


def write_split(directory: Path, images: np.ndarray, labels: np.ndarray, *, gz: bool = True) -> None:
    suffix = ".gz" if gz else ""
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", images, gz=gz)
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", labels, gz=gz)


def test_uncompressed_files_load(tmp_path: Path) -> None:
    labels = (np.arange(10_000) % 10).astype(np.uint8)
    images = np.zeros((10_000, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = labels
    write_split(tmp_path, images, labels, gz=False)
    loaded_images, loaded_labels = load_fashion_mnist(tmp_path, "test")
    assert torch.equal(loaded_images[:, 0, 0, 0].long(), loaded_labels)


def test_missing_directory_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(UnusableData) as caught:
        load_fashion_mnist(tmp_path / "nowhere", "train")
    message = str(caught.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "IMGCLS_FASHION_MNIST_DIR" in message and "--data-dir" in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8), gz=True)
    with pytest.raises(UnusableData, match=r"t10k-labels-idx1-ubyte\[\.gz\] not found.*apt-get install"):
        load_fashion_mnist(tmp_path, "test")


def test_images_and_labels_disagree(tmp_path: Path) -> None:
    write_split(tmp_path, np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(UnusableData, match=r"holds 5 images but t10k-labels-idx1-ubyte\.gz 4 labels"):
        load_fashion_mnist(tmp_path, "test")


def test_wrong_count(tmp_path: Path) -> None:
    write_split(tmp_path, np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.uint8))
    with pytest.raises(UnusableData, match="5 images, Fashion-MNIST's test split has 10000"):
        load_fashion_mnist(tmp_path, "test")


def test_label_out_of_range(tmp_path: Path) -> None:
    write_split(tmp_path, np.zeros((2, 28, 28), np.uint8), np.array([3, 10], np.uint8))
    with pytest.raises(UnusableData, match=r"label 10 outside 0\.\.9"):
        load_fashion_mnist(tmp_path, "test")


def test_wrong_image_size(tmp_path: Path) -> None:
    write_split(tmp_path, np.zeros((2, 32, 32), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(UnusableData, match="images are 32x32, Fashion-MNIST's are 28x28"):
        load_fashion_mnist(tmp_path, "test")


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(UnusableData, match="no split 'val'"):
        load_fashion_mnist(tmp_path, "val")  # type: ignore[arg-type]
