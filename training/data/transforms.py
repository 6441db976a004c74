"""Transform presets shared by training and evaluation.

Datasets are decoded once with ``decode_for_eval`` (the eval geometry) into uint8 tensors; batches are
then augmented with ``train_augment`` (uint8, before normalizing, so padding is black) and scaled with
``normalize``. ``eval_transform`` is the single-image reference that the service's numpy
preprocessing is tested against: it follows ``Preprocessing``'s docstring step by step.
"""

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from service.imaging.preprocess import RESAMPLING, resized_size  # one rule for training and serving
from service.repository.manifest import Preprocessing
from training.errors import UnusableData

# ---------------------------------------------------------------------------------------------------
# Eval geometry and scaling
# ---------------------------------------------------------------------------------------------------


def decode_for_eval(image: Image.Image, *, preprocessing: Preprocessing) -> torch.Tensor:
    """Steps 1-3 of ``Preprocessing``: uint8 ``(C, H, W)`` with (H, W) == ``preprocessing.input_size``.

    1. ``image.convert(color_mode)`` (PIL's own conversion; alpha is dropped, not composited);
    2. if ``resize`` is set, ``Image.resize`` to ``resized_size(...)`` with ``interpolation``
       (skipped when the size is already right);
    3. center crop: ``top = int(round((h - crop_h) / 2.0))``, ``left`` likewise (Python's
       half-to-even ``round``, exactly torchvision's ``CenterCrop``).

    EXIF orientation and frame selection are the caller's job (see ``image_folder.open_image``).
    Raises ``UnusableData`` when the image is smaller than ``input_size`` after step 2.
    """
    if image.mode != preprocessing.color_mode:
        image = image.convert(preprocessing.color_mode)
    if preprocessing.resize is not None:
        size = resized_size(image.width, image.height, preprocessing.resize)
        if size != image.size:
            image = image.resize(size, RESAMPLING[preprocessing.interpolation])

    crop_h, crop_w = preprocessing.input_size
    if image.height < crop_h or image.width < crop_w:
        raise UnusableData(
            f"image is {image.width}x{image.height} (w x h) after resizing, smaller than the input size "
            f"{crop_w}x{crop_h}; set resize to at least {max(crop_h, crop_w)} or use larger images"
        )
    if image.size != (crop_w, crop_h):
        top = round((image.height - crop_h) / 2.0)  # int: round() of a float
        left = round((image.width - crop_w) / 2.0)
        image = image.crop((left, top, left + crop_w, top + crop_h))

    pixels = np.asarray(image, dtype=np.uint8)  # (H, W) for "L", (H, W, 3) for "RGB"
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())  # (C, H, W), owns its memory


def normalize(batch_uint8: torch.Tensor, *, preprocessing: Preprocessing) -> torch.Tensor:
    """Steps 4-5 of ``Preprocessing``: float32 ``((x / 255) - mean) / std`` per channel.

    Takes uint8 ``(C, H, W)`` or ``(N, C, H, W)`` on any device and returns the same shape. The
    arithmetic is float32 in exactly this order, so a numpy float32 implementation of the same three
    operations gives bit-identical results.
    """
    if batch_uint8.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {batch_uint8.dtype}")
    if batch_uint8.ndim not in (3, 4) or batch_uint8.shape[-3] != preprocessing.channels:
        raise ValueError(
            f"normalize expects (C, H, W) or (N, C, H, W) with C={preprocessing.channels}, "
            f"got shape {tuple(batch_uint8.shape)}"
        )
    device = batch_uint8.device
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32, device=device).view(-1, 1, 1)
    return (batch_uint8.to(torch.float32) / 255.0 - mean) / std


def eval_transform(*, preprocessing: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """The whole eval transform for one PIL image: float32 ``(C, H, W)``, ready to stack into NCHW."""

    def transform(image: Image.Image) -> torch.Tensor:
        return normalize(decode_for_eval(image, preprocessing=preprocessing), preprocessing=preprocessing)

    return transform


# ---------------------------------------------------------------------------------------------------
# Training augmentation (batched, on whatever device the batch lives)
# ---------------------------------------------------------------------------------------------------


def train_augment(
    batch_uint8: torch.Tensor, *, generator: torch.Generator, crop_padding: int, flip: bool
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, each image drawn independently.

    ``batch_uint8`` is ``(N, C, H, W)`` (uint8 before normalizing, so padding is black); the result
    has the same shape and dtype. Each image is padded by ``crop_padding`` pixels on every side and
    cropped back to (H, W) at a uniform offset in ``[0, 2 * crop_padding]`` per axis; with ``flip``,
    each image is mirrored left-right with probability 1/2. All randomness comes from
    ``generator`` (drawn on its own device, in a fixed order: row offsets, column offsets, flips), so
    saving and restoring its state makes a run reproducible and resumable. One ``gather``, no loop.
    Returns ``batch_uint8`` itself when there is nothing to do (``crop_padding == 0``, no flip).
    """
    if batch_uint8.ndim != 4:
        raise ValueError(f"train_augment expects (N, C, H, W), got shape {tuple(batch_uint8.shape)}")
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
    if crop_padding == 0 and not flip:
        return batch_uint8
    n, _, height, width = batch_uint8.shape
    device = batch_uint8.device
    span = 2 * crop_padding + 1
    row_offset = torch.randint(span, (n,), generator=generator, device=generator.device).to(device)
    col_offset = torch.randint(span, (n,), generator=generator, device=generator.device).to(device)

    rows = row_offset[:, None] + torch.arange(height, device=device)  # (N, H) in padded coordinates
    cols = col_offset[:, None] + torch.arange(width, device=device)  # (N, W)
    if flip:
        flipped = torch.rand(n, generator=generator, device=generator.device).to(device) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)  # mirror the crop window

    # One gather over flattened padded images: output pixel (y, x) reads padded (rows[y], cols[x]).
    padded = F.pad(batch_uint8, (crop_padding,) * 4) if crop_padding else batch_uint8
    channels = batch_uint8.shape[1]
    source = rows[:, :, None] * padded.shape[-1] + cols[:, None, :]  # (N, H, W) flat positions
    source = source.view(n, 1, height * width).expand(n, channels, height * width)
    return padded.reshape(n, channels, -1).gather(2, source).view(n, channels, height, width)
