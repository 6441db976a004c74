"""Photo augmentation (augment_batch by name), the dataset defaults, and evaluation left untouched."""

from pathlib import Path

import numpy as np
import pytest
import torch

from service.repository.manifest import Preprocessing
from tests.training.data.files import random_pixels, save_image
from training.batches import eval_batches, training_batches
from training.config import TrainConfig
from training.data import decode_for_eval, load_dataset, normalize, open_image
from training.data.transforms import augment_batch, photo_augment, train_augment
from training.train import resolve_augment

AUGMENTATIONS = ("photo", "photo+randaugment", "photo+trivialaugment")


def photos(channels: int, count: int = 8, size: int = 40) -> torch.Tensor:
    """uint8 (N, C, size, size): smooth gradients (so a crop rescaled differs from the original) plus noise."""
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([4 * x, 4 * y, 2 * (x + y)], axis=0)[:channels] + random_pixels(channels, channels, size, size) // 8
    images = np.stack([np.roll(base, shift, axis=-1) for shift in range(count)]).clip(0, 255).astype(np.uint8)
    return torch.from_numpy(images)


def augmented(batch: torch.Tensor, augment: str, seed: int, *, flip: bool = True) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return augment_batch(batch, augment=augment, generator=generator, crop_padding=2, flip=flip)


@pytest.mark.parametrize("augment", AUGMENTATIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_change_for_gray_and_colour(augment: str, channels: int) -> None:
    batch = photos(channels)
    out = augmented(batch, augment, seed=0)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    changed = [not torch.equal(o, b) for o, b in zip(out, batch, strict=True)]
    assert sum(changed) >= 6  # a crop of 8-100 % of the area, rescaled, rarely gives the image back


@pytest.mark.parametrize("augment", AUGMENTATIONS)
def test_the_runs_generator_alone_decides(augment: str) -> None:
    batch = photos(3)
    assert torch.equal(augmented(batch, augment, seed=1), augmented(batch, augment, seed=1))
    assert not torch.equal(augmented(batch, augment, seed=1), augmented(batch, augment, seed=2))

    generator = torch.Generator().manual_seed(5)
    photo_augment(batch, generator=generator, flip=True, policy=None)
    state = generator.get_state()
    second = photo_augment(batch, generator=generator, flip=True, policy=None)
    resumed = torch.Generator().set_state(state)
    assert torch.equal(photo_augment(batch, generator=resumed, flip=True, policy=None), second)


def test_the_global_generator_is_left_as_it_was() -> None:
    torch.manual_seed(3)
    before = torch.get_rng_state()
    augmented(photos(3), "photo+randaugment", seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # dropout's draws do not depend on the augmentation


def test_none_and_crop_flip_are_as_before() -> None:
    batch = photos(1)
    assert augmented(batch, "none", seed=0) is batch
    expected = train_augment(batch, generator=torch.Generator().manual_seed(0), crop_padding=2, flip=True)
    assert torch.equal(augmented(batch, "crop-flip", seed=0), expected)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown augment 'mixup'"):
        augmented(photos(1), "mixup", seed=0)
    with pytest.raises(ValueError, match="uint8"):
        photo_augment(photos(1).float(), generator=torch.Generator(), flip=True, policy=None)


# --------------------------------------------------------------------------------- datasets and batches


def photo_folder(root: Path, count: int = 6) -> Path:
    for label in ("a", "b"):
        for index in range(count):
            seed = index + (100 if label == "b" else 0)
            save_image(root / label / f"{index}.png", random_pixels(seed, 70 + 3 * index, 90))
    return root


def test_photo_folders_default_to_photo_small_inputs_to_none(tmp_path: Path) -> None:
    root = photo_folder(tmp_path)
    assert load_dataset(f"folder:{root}", fashion_mnist_dir=tmp_path, image_size=64).default_augment == "photo"
    assert load_dataset(f"folder:{root}", fashion_mnist_dir=tmp_path, image_size=32).default_augment == "none"


def test_a_run_records_the_datasets_default_unless_the_config_names_one(tmp_path: Path) -> None:
    data = load_dataset(f"folder:{photo_folder(tmp_path)}", fashion_mnist_dir=tmp_path, image_size=64)
    assert resolve_augment(TrainConfig(), data).augment == "photo"
    assert resolve_augment(TrainConfig(augment="none"), data).augment == "none"
    assert resolve_augment(TrainConfig(augment=True), data).augment == "crop-flip"


def test_evaluation_uses_exactly_the_manifests_resize_and_crop(tmp_path: Path) -> None:
    root = photo_folder(tmp_path)
    data = load_dataset(f"folder:{root}", fashion_mnist_dir=tmp_path, image_size=64)
    preprocessing = data.preprocessing
    assert (preprocessing.resize, preprocessing.input_size) == (64, (64, 64))
    assert preprocessing.background == (255, 255, 255)
    # Every stored image, train and test, is decode_for_eval's of its file; evaluation normalizes them as they are.
    files = sorted(root.rglob("*.png"))
    decoded = {
        tuple(decode_for_eval(open_image(path), preprocessing=preprocessing).flatten().tolist()) for path in files
    }
    stored = torch.cat([data.train_images, data.test_images])
    assert {tuple(image.flatten().tolist()) for image in stored} == decoded
    (images, _), *_ = eval_batches(
        data.test_images, data.test_labels, batch_size=100, preprocessing=preprocessing, device=torch.device("cpu")
    )
    assert torch.equal(images, normalize(data.test_images, preprocessing=preprocessing))
    # Training batches of the same images are augmented.
    (train, _), *_ = training_batches(
        data.train_images,
        data.train_labels,
        batch_size=len(data.train_labels),
        generator=torch.Generator().manual_seed(0),
        preprocessing=preprocessing,
        augment="photo",
        crop_padding=2,
        flip=True,
        device=torch.device("cpu"),
    )
    assert train.shape == (len(data.train_labels), 3, 64, 64) and train.dtype == torch.float32
    unaugmented = normalize(data.train_images, preprocessing=preprocessing)
    assert not any(torch.equal(image, original) for image in train for original in unaugmented)


def test_a_gray_photo_model_trains_on_augmented_batches() -> None:
    preprocessing = Preprocessing(color_mode="L", input_size=(40, 40), mean=(0.5,), std=(0.25,), resize=40)
    batches = list(
        training_batches(
            photos(1, count=16),
            torch.arange(16) % 2,
            batch_size=8,
            generator=torch.Generator().manual_seed(0),
            preprocessing=preprocessing,
            augment="photo+trivialaugment",
            crop_padding=0,
            flip=False,
            device=torch.device("cpu"),
        )
    )
    assert [images.shape for images, _ in batches] == [(8, 1, 40, 40)] * 2
