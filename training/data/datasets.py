"""The dataset registry: a spec string in, a ``DatasetBundle`` (in-memory uint8 tensors) out.

Specs: ``fashion-mnist``, ``digits``, and ``folder:<path>`` for an ImageFolder tree. Datasets without
an official test split (digits, folders) hold out a stratified 20 % chosen by ``seed``; keep the seed
fixed across runs whose test accuracies you compare.
"""

from dataclasses import dataclass
from pathlib import Path

import msgspec
import torch

from service.repository.manifest import Preprocessing
from training.data.digits import DIGITS_LABELS, load_digits_split
from training.data.fashion_mnist import (
    FASHION_MNIST_LABELS,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    load_fashion_mnist,
)
from training.data.image_folder import detect_color_mode, load_image_folder
from training.data.split import train_val_split
from training.errors import UnknownDataset, UnusableData

DATASETS = ("fashion-mnist", "digits")
_NATIVE_SIZE = {"fashion-mnist": 28, "digits": 8}  # the built-ins' fixed image side
FOLDER_PREFIX = "folder:"
FOLDER_TEST_FRACTION = 0.2
FOLDER_IMAGE_SIZE = 32  # default side of the square network input for folder datasets
# Photos with transparency (product cut-outs, logos, icons) are composited on white, in training and at
# serving alike (Preprocessing.background): white is what such pictures are shown on, while dropping the
# alpha channel would show whatever colour the transparent pixels store, often black.
PHOTO_BACKGROUND = (255, 255, 255)
# Photo augmentation (random resized crop, flips, colour jitter) is the default from this input side up; at
# 28-32 px (icons, digits, clothes on black) a crop of 8 % of the picture leaves too little, and these
# datasets keep no augmentation by default, as Fashion-MNIST and digits do.
PHOTO_MIN_INPUT = 64
# Every folder class needs one image to train on and one to test on.
FOLDER_MIN_IMAGES_PER_CLASS = 2


@dataclass(frozen=True)
class DatasetBundle:
    """A dataset ready for the engine: both splits as tensors, plus how to preprocess at serving time."""

    name: str  # "fashion-mnist", "digits", "folder:/abs/path"
    labels: tuple[str, ...]  # class names; index = label
    train_images: torch.Tensor  # uint8 (N, C, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor  # uint8 (M, C, H, W)
    test_labels: torch.Tensor  # int64 (M,)
    preprocessing: Preprocessing  # what the manifest records; H x W == input_size
    flip_ok: bool  # horizontal flips preserve the class (False for digits)
    default_augment: str = "none"  # the augmentation of a run whose config leaves ``augment`` unset
    skipped: tuple[tuple[str, str], ...] = ()  # (relative path, reason) for unreadable folder files

    def __post_init__(self) -> None:
        shape = (self.preprocessing.channels, *self.preprocessing.input_size)
        for images, labels in ((self.train_images, self.train_labels), (self.test_images, self.test_labels)):
            if images.dtype != torch.uint8 or tuple(images.shape[1:]) != shape:
                raise ValueError(
                    f"{self.name}: images must be uint8 (N, {shape}), got {images.dtype} {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != (len(images),):
                raise ValueError(
                    f"{self.name}: labels must be int64 ({len(images)},), got {labels.dtype} {tuple(labels.shape)}"
                )


def channel_mean_std(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``(N, C, H, W)`` images on the [0, 1] scale.

    Exact (a per-channel histogram of the 256 pixel values, then float64), rounded to 4 places.
    """
    channels = images.shape[1]
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(channels):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()  # no int64 copy
        total = counts.sum()
        mean = (counts * values).sum() / total
        variance = (counts * (values - mean) ** 2).sum() / total
        means.append(round(float(mean), 4))
        stds.append(round(float(variance.sqrt()), 4))
    return tuple(means), tuple(stds)


def augment_for_photos(preprocessing: Preprocessing) -> str:
    """The default augmentation of a dataset of photos decoded with ``preprocessing``: "photo" from
    ``PHOTO_MIN_INPUT`` pixels up (the shorter input side), else "none"."""
    return "photo" if min(preprocessing.input_size) >= PHOTO_MIN_INPUT else "none"


def _with_train_statistics(name: str, preprocessing: Preprocessing, train_images: torch.Tensor) -> Preprocessing:
    mean, std = channel_mean_std(train_images)
    if min(std) <= 0:
        raise UnusableData(f"{name}: the training images are one flat colour (std 0); add varied images")
    return msgspec.structs.replace(preprocessing, mean=mean, std=std)


def _fashion_mnist(directory: Path) -> DatasetBundle:
    train_images, train_labels = load_fashion_mnist(directory, "train")
    test_images, test_labels = load_fashion_mnist(directory, "test")
    return DatasetBundle(
        name="fashion-mnist",
        labels=FASHION_MNIST_LABELS,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        # resize 28: a photo of any size is scaled (shorter side to 28) before the crop, never cropped raw;
        # the 28x28 images themselves pass unchanged, in training as in serving. "box" averages what
        # it shrinks, so a 280x280 copy of a 28x28 image comes back to exactly its pixels.
        preprocessing=Preprocessing(
            color_mode="L",
            input_size=(28, 28),
            mean=(FASHION_MNIST_MEAN,),
            std=(FASHION_MNIST_STD,),
            resize=28,
            interpolation="box",
        ),
        flip_ok=True,
    )


def _digits(seed: int) -> DatasetBundle:
    train_images, train_labels, test_images, test_labels = load_digits_split(seed=seed)
    placeholder = Preprocessing(
        color_mode="L", input_size=(8, 8), mean=(0.0,), std=(1.0,), resize=8, interpolation="box"
    )
    return DatasetBundle(
        name="digits",
        labels=DIGITS_LABELS,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        preprocessing=_with_train_statistics("digits", placeholder, train_images),
        flip_ok=False,  # a mirrored 2, 3, 5 or 7 is not that digit
    )


def _folder(root: Path, *, image_size: int, seed: int) -> DatasetBundle:
    """Shorter side resized to ``image_size`` (bilinear), center-cropped square, transparency on
    ``PHOTO_BACKGROUND``; flips assumed safe."""
    root = root.expanduser().resolve()
    name = f"{FOLDER_PREFIX}{root}"
    color_mode = detect_color_mode(root)
    channels = 1 if color_mode == "L" else 3
    # mean/std are unknown until the images are decoded; decoding does not use them.
    placeholder = Preprocessing(
        color_mode=color_mode,
        input_size=(image_size, image_size),
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        resize=image_size,
        background=PHOTO_BACKGROUND,
    )
    data = load_image_folder(root, preprocessing=placeholder, min_images_per_class=FOLDER_MIN_IMAGES_PER_CLASS)
    train, test = train_val_split(data.targets, val_fraction=FOLDER_TEST_FRACTION, seed=seed)
    train_images = data.images[train]
    return DatasetBundle(
        name=name,
        labels=data.labels,
        train_images=train_images,
        train_labels=data.targets[train],
        test_images=data.images[test],
        test_labels=data.targets[test],
        preprocessing=_with_train_statistics(name, placeholder, train_images),
        flip_ok=True,
        default_augment=augment_for_photos(placeholder),
        skipped=data.skipped,
    )


def load_dataset(spec: str, *, fashion_mnist_dir: Path, image_size: int | None = None, seed: int = 0) -> DatasetBundle:
    """Load a dataset by spec into memory.

    ``fashion_mnist_dir`` is only read for ``fashion-mnist``. ``image_size`` is the network input side
    for ``folder:`` datasets (default ``FOLDER_IMAGE_SIZE``); the built-in sets have a fixed size and
    reject a different one. ``seed`` picks the held-out test split of digits and folders (stratified
    20 %); Fashion-MNIST uses its official split. Raises ``UnknownDataset`` for an unknown spec and
    ``UnusableData`` for missing or unusable data.
    """
    if spec.startswith(FOLDER_PREFIX):
        path = spec[len(FOLDER_PREFIX) :]
        if not path:
            raise UnusableData("folder: needs a path, e.g. folder:/data/pets")
        size = FOLDER_IMAGE_SIZE if image_size is None else image_size
        if size < 1:
            raise UnusableData(f"image_size must be a positive number of pixels, got {size}")
        return _folder(Path(path), image_size=size, seed=seed)
    native_size = _NATIVE_SIZE.get(spec)
    if native_size is None:
        raise UnknownDataset(spec, (*DATASETS, f"{FOLDER_PREFIX}<path>"))
    if image_size is not None and image_size != native_size:
        raise UnusableData(
            f"{spec} images are {native_size}x{native_size}; drop the image size option "
            f"(got {image_size}) or export the images into a folder: dataset"
        )
    return _fashion_mnist(fashion_mnist_dir) if spec == "fashion-mnist" else _digits(seed)
