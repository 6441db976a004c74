"""A base model that does poorly on one class, for the feedback loop's test (test_up_command.py).

"closet" is a lenet5 trained for a few seconds on an image folder of six Fashion-MNIST classes in which
sneakers are nearly absent (3 training images against 60 of each other class): it answers "sneaker" for
almost no sneaker. Its lineage names the folder (``folder:<path>``), which the API can read, so a dataset
made from feedback on it can include a sample of its training images. The images it is shown and measured
on come from Fashion-MNIST's test split, which its training never saw.
"""

import functools
import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from tests.conftest import FASHION_MNIST
from training.config import TrainConfig
from training.data import DatasetBundle, load_dataset
from training.settings import TrainingSettings
from training.train import run

MODEL = "closet"
CLASSES = {1: "trouser", 2: "pullover", 5: "sandal", 7: "sneaker", 8: "bag", 9: "ankle-boot"}  # Fashion-MNIST's
WEAK = "sneaker"
IMAGES_PER_CLASS, WEAK_IMAGES = 60, 3


@functools.cache
def fashion_mnist() -> DatasetBundle:
    return load_dataset("fashion-mnist", fashion_mnist_dir=FASHION_MNIST)


def index_of(label: str) -> int:
    return next(index for index, name in CLASSES.items() if name == label)


def unseen_pngs(label: str, start: int, count: int) -> list[bytes]:
    """PNG files of ``count`` test-split images of ``label``, from its ``start``-th on."""
    fashion = fashion_mnist()
    indices = (fashion.test_labels == index_of(label)).nonzero().flatten()[start : start + count].tolist()
    assert len(indices) == count, f"Fashion-MNIST's test split has too few {label} images"
    return [png(fashion.test_images[index, 0].numpy()) for index in indices]


def png(pixels: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "PNG")
    return buffer.getvalue()


def write_folder(folder: Path) -> Path:
    """The training images: one folder per class, the weak class nearly empty."""
    fashion = fashion_mnist()
    for index, name in CLASSES.items():
        (folder / name).mkdir(parents=True)
        count = WEAK_IMAGES if name == WEAK else IMAGES_PER_CLASS
        for image in (fashion.train_labels == index).nonzero().flatten()[:count].tolist():
            (folder / name / f"{image}.png").write_bytes(png(fashion.train_images[image, 0].numpy()))
    return folder


def train_closet(folder: Path) -> Path:
    """Train "closet" on the folder written in ``folder / "images"``; the run folder, not yet published."""
    images = write_folder(folder / "images")
    settings = TrainingSettings(model_root=folder / "models", runs_dir=folder / "runs", fashion_mnist_dir=FASHION_MNIST)
    config = TrainConfig(
        model="lenet5",
        dataset=f"folder:{images}",
        image_size=28,
        epochs=3,
        batch_size=32,
        optimizer="adam",
        learning_rate=0.003,
        lr_policy="fixed",
        val_fraction=0.1,
        threads=1,
        name=MODEL,
        publish=False,
    )
    result = run(config, settings=settings, progress=False, echo=False)
    assert result.status == "completed", result
    return result.run_dir
