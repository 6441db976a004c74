"""Datasets held in memory as uint8 tensors, and the transforms that turn them into network input.

Start with ``load_dataset(spec, ...)``; the engine then uses ``train_augment`` and ``normalize`` per batch.
"""

from training.data.datasets import (
    DATASETS,
    FOLDER_PREFIX,
    DatasetBundle,
    channel_mean_std,
    load_dataset,
)
from training.data.digits import DIGITS_LABELS, load_digits_split, load_digits_tensors
from training.data.fashion_mnist import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_DIR_ENV,
    FASHION_MNIST_LABELS,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    load_fashion_mnist,
)
from training.data.idx import read_idx
from training.data.image_folder import (
    IMAGE_EXTENSIONS,
    ImageFolderData,
    detect_color_mode,
    load_image_folder,
    open_image,
)
from training.data.split import train_val_split
from training.data.transforms import (
    decode_for_eval,
    eval_transform,
    normalize,
    resized_size,
    train_augment,
)

__all__ = [
    "DATASETS",
    "DEFAULT_FASHION_MNIST_DIR",
    "DIGITS_LABELS",
    "FASHION_MNIST_DIR_ENV",
    "FASHION_MNIST_LABELS",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "FOLDER_PREFIX",
    "IMAGE_EXTENSIONS",
    "DatasetBundle",
    "ImageFolderData",
    "channel_mean_std",
    "decode_for_eval",
    "detect_color_mode",
    "eval_transform",
    "load_dataset",
    "load_digits_split",
    "load_digits_tensors",
    "load_fashion_mnist",
    "load_image_folder",
    "normalize",
    "open_image",
    "read_idx",
    "resized_size",
    "train_augment",
    "train_val_split",
]
