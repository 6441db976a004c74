from pathlib import Path

import pytest
import torch

from tests.conftest import FASHION_MNIST
from tests.training.data.files import random_pixels, save_image
from training.data.datasets import DATASETS, channel_mean_std, load_dataset
from training.errors import UnknownDataset, UnusableData

NO_DIR = Path("/nonexistent")


def test_unknown_spec_lists_the_known_ones() -> None:
    with pytest.raises(UnknownDataset, match=r"cifar10 \(known: digits, fashion-mnist, folder:<path>\)"):
        load_dataset("cifar10", fashion_mnist_dir=NO_DIR)
    assert DATASETS == ("fashion-mnist", "digits")


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_bundle() -> None:
    bundle = load_dataset("fashion-mnist", fashion_mnist_dir=FASHION_MNIST)
    assert bundle.name == "fashion-mnist" and len(bundle.labels) == 10 and bundle.flip_ok
    assert bundle.train_images.shape == (60_000, 1, 28, 28) and bundle.test_labels.shape == (10_000,)
    p = bundle.preprocessing
    assert (p.color_mode, p.input_size, p.mean, p.std, p.resize, p.interpolation) == (
        "L",
        (28, 28),
        (0.2860,),
        (0.3530,),
        28,
        "box",
    )


def test_fashion_mnist_missing_directory() -> None:
    with pytest.raises(UnusableData, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", fashion_mnist_dir=NO_DIR)


def test_builtin_sets_reject_another_image_size() -> None:
    with pytest.raises(UnusableData, match="digits images are 8x8; drop the image size option"):
        load_dataset("digits", fashion_mnist_dir=NO_DIR, image_size=32)


def test_digits_bundle() -> None:
    bundle = load_dataset("digits", fashion_mnist_dir=NO_DIR, seed=0)
    assert bundle.name == "digits" and bundle.labels[3] == "3" and not bundle.flip_ok
    assert len(bundle.train_images) == 1438 and len(bundle.test_images) == 359
    assert bundle.preprocessing.input_size == (8, 8) and bundle.preprocessing.color_mode == "L"
    assert (bundle.preprocessing.resize, bundle.preprocessing.interpolation) == (8, "box")  # scaled, not cropped
    mean, std = bundle.preprocessing.mean[0], bundle.preprocessing.std[0]
    pixels = bundle.train_images.double() / 255
    assert mean == round(mean, 4) and mean == pytest.approx(pixels.mean().item(), abs=5e-5)
    assert std == pytest.approx(pixels.std(correction=0).item(), abs=5e-5)
    again = load_dataset("digits", fashion_mnist_dir=NO_DIR, seed=0)
    assert torch.equal(again.test_labels, bundle.test_labels)


def test_channel_mean_std_is_exact() -> None:
    images = torch.from_numpy(random_pixels(0, 4 * 3 * 5, 6, channels=1).reshape(4, 3, 5, 6))
    mean, std = channel_mean_std(images)
    pixels = images.double() / 255
    assert mean == tuple(round(v, 4) for v in pixels.mean(dim=(0, 2, 3)).tolist())
    assert std == tuple(round(v, 4) for v in pixels.std(dim=(0, 2, 3), correction=0).tolist())


def make_folder(root: Path, *, channels: int, per_class: int = 5) -> Path:
    for label in ("b_dog", "a_cat"):
        for i in range(per_class):
            save_image(root / label / f"{i}.png", random_pixels(i + 10 * len(label), 20, 26, channels=channels))
    return root


def test_folder_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "pets", channels=3)
    (root / "a_cat" / "bad.png").write_bytes(b"not a png")
    monkeypatch.chdir(tmp_path)
    bundle = load_dataset("folder:pets", fashion_mnist_dir=NO_DIR, image_size=16, seed=0)
    assert bundle.name == f"folder:{root.resolve()}"
    assert bundle.labels == ("a_cat", "b_dog") and bundle.flip_ok
    assert bundle.train_images.shape == (8, 3, 16, 16) and bundle.test_images.shape == (2, 3, 16, 16)
    assert torch.bincount(bundle.test_labels).tolist() == [1, 1]  # stratified 20 %
    p = bundle.preprocessing
    assert (p.color_mode, p.input_size, p.resize) == ("RGB", (16, 16), 16)
    assert (p.mean, p.std) == channel_mean_std(bundle.train_images)
    assert bundle.skipped[0][0] == "a_cat/bad.png"


def test_grayscale_folder_defaults_to_32_pixels(tmp_path: Path) -> None:
    bundle = load_dataset(f"folder:{make_folder(tmp_path, channels=1)}", fashion_mnist_dir=NO_DIR)
    p = bundle.preprocessing
    assert (p.color_mode, p.input_size, p.resize, len(p.mean)) == ("L", (32, 32), 32, 1)
    assert bundle.train_images.shape[1:] == (1, 32, 32)


def test_folder_needs_two_images_per_class(tmp_path: Path) -> None:
    root = make_folder(tmp_path, channels=3, per_class=1)
    with pytest.raises(UnusableData, match="fewer than 2 readable images"):
        load_dataset(f"folder:{root}", fashion_mnist_dir=NO_DIR)


def test_folder_without_path() -> None:
    with pytest.raises(UnusableData, match="folder: needs a path"):
        load_dataset("folder:", fashion_mnist_dir=NO_DIR)


def test_folder_of_flat_images(tmp_path: Path) -> None:
    for label in ("a", "b"):
        for i in range(2):
            save_image(tmp_path / label / f"{i}.png", random_pixels(0, 8, 8) * 0)
    with pytest.raises(UnusableData, match=r"one flat colour \(std 0\); add varied images"):
        load_dataset(f"folder:{tmp_path}", fashion_mnist_dir=NO_DIR, image_size=8)
