"""Mini-batches from in-memory uint8 image tensors: shuffle, augment, normalize, move to the device.

Every dataset is held as one uint8 tensor (N, C, H, W); batches are cut, augmented and normalized on
the fly. Shuffling and augmentation draw only from the generator passed in, which the run seeds per
epoch, so an interrupted run that resumes at an epoch boundary sees exactly the same batches.
"""

from collections.abc import Iterator

import torch

from service.repository import Preprocessing
from training.data.transforms import augment_batch, normalize

EVAL_BATCH_SIZE = 1000  # images per forward pass when validating and testing (no gradients kept)


def batches_per_epoch(images: int, batch_size: int, world_size: int = 1) -> int:
    """Batches each rank runs per epoch (see training_batches)."""
    count = images // batch_size if images >= 2 * batch_size else 1
    return max(count - count % world_size, 0) // world_size


def training_batches(
    images: torch.Tensor,  # uint8 (N, C, H, W)
    labels: torch.Tensor,  # int64 (N,)
    *,
    batch_size: int,
    generator: torch.Generator,
    preprocessing: Preprocessing,
    augment: str,  # a name from service.jobs.hyperparameters.AUGMENTATIONS; "none": batches as stored
    crop_padding: int,  # "crop-flip" only
    flip: bool,
    device: torch.device,
    channels_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled batches. With several ranks each takes every world_size-th batch.

    A final batch smaller than ``batch_size`` is dropped when there is more than one batch, so
    BatchNorm never sees a batch of one and every rank runs the same number of steps.
    """
    order = torch.randperm(len(labels), generator=generator)
    count = batches_per_epoch(len(labels), batch_size, world_size) * world_size
    for index in range(rank, count, world_size):
        chosen = order[index * batch_size : (index + 1) * batch_size]
        batch = images[chosen]
        if augment != "none":
            # The order above was drawn first, so every rank agrees on it; each rank's crops and
            # flips then come from its own (equally seeded) stream.
            batch = augment_batch(batch, augment=augment, generator=generator, crop_padding=crop_padding, flip=flip)
        yield _to_device(batch, labels[chosen], preprocessing, device, channels_last)


def eval_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int,
    preprocessing: Preprocessing,
    device: torch.device,
    channels_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(labels), batch_size):
        end = start + batch_size
        yield _to_device(images[start:end], labels[start:end], preprocessing, device, channels_last)


def _to_device(
    batch: torch.Tensor,
    labels: torch.Tensor,
    preprocessing: Preprocessing,
    device: torch.device,
    channels_last: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = batch.to(device, non_blocking=True)
    images = normalize(batch, preprocessing=preprocessing)  # float32 (B, C, H, W)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)
