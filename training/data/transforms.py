"""Transform presets shared by training and evaluation.

Datasets are decoded once with ``decode_for_eval`` (the eval geometry: the manifest's resize and crop)
into uint8 tensors; training batches are then augmented with ``augment_batch`` (uint8, before
normalizing) and every batch is scaled with ``normalize``. Evaluation never augments, so it sees exactly
what the service computes. ``eval_transform`` is the single-image reference that the service's numpy
preprocessing is tested against: it follows ``Preprocessing``'s docstring step by step.
"""

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from service.imaging.color import to_color_mode  # one conversion for training and serving
from service.imaging.preprocess import RESAMPLING, resized_size  # one rule for training and serving
from service.repository.manifest import Preprocessing
from training.errors import UnusableData

# ---------------------------------------------------------------------------------------------------
# Eval geometry and scaling
# ---------------------------------------------------------------------------------------------------


def decode_for_eval(image: Image.Image, *, preprocessing: Preprocessing) -> torch.Tensor:
    """Steps 1-3 of ``Preprocessing``: uint8 ``(C, H, W)`` with (H, W) == ``preprocessing.input_size``.

    1. ``to_color_mode`` (service/imaging/color.py, the service's own): transparency composited on
       ``background`` when set, 16-bit grayscale scaled to 8 bits, then PIL's conversion;
    2. if ``resize`` is set, ``Image.resize`` to ``resized_size(...)`` with ``interpolation``
       (skipped when the size is already right);
    3. center crop: ``top = int(round((h - crop_h) / 2.0))``, ``left`` likewise (Python's
       half-to-even ``round``, exactly torchvision's ``CenterCrop``).

    EXIF orientation and frame selection are the caller's job (see ``image_folder.open_image``, which
    decodes files with the service's ``decode_image``).
    Raises ``UnusableData`` when the image is smaller than ``input_size`` after step 2.
    """
    image = to_color_mode(image, color_mode=preprocessing.color_mode, background=preprocessing.background)
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
# Training augmentation: ``augment_batch`` by the config's name (service/jobs/hyperparameters.AUGMENTATIONS)
# ---------------------------------------------------------------------------------------------------

# The photo recipe's random resized crop: torchvision's RandomResizedCrop defaults (8-100 % of the area,
# aspect ratio 3:4 to 4:3), as its ImageNet references train; colour jitter at timm's default strength.
PHOTO_CROP_SCALE = (0.08, 1.0)
PHOTO_CROP_RATIO = (3 / 4, 4 / 3)
PHOTO_COLOR_JITTER = 0.4  # brightness, contrast and saturation each scaled by a factor in [0.6, 1.4]; hue kept
PHOTO_POLICIES = {"photo": None, "photo+randaugment": "randaugment", "photo+trivialaugment": "trivialaugment"}


def augment_batch(
    batch_uint8: torch.Tensor, *, augment: str, generator: torch.Generator, crop_padding: int, flip: bool
) -> torch.Tensor:
    """A training batch, uint8 ``(N, C, H, W)``, augmented as ``augment`` names; same shape and dtype.

    - "none": the batch itself;
    - "crop-flip": ``train_augment`` (random crop with ``crop_padding`` pixels of black padding, flips);
    - "photo", "photo+randaugment", "photo+trivialaugment": ``photo_augment``.

    ``flip``: whether mirroring keeps the class (False for digits). Randomness from ``generator`` only.
    """
    if augment == "none":
        return batch_uint8
    if augment == "crop-flip":
        return train_augment(batch_uint8, generator=generator, crop_padding=crop_padding, flip=flip)
    if augment not in PHOTO_POLICIES:
        raise ValueError(f"unknown augment {augment!r} (known: none, crop-flip, {', '.join(PHOTO_POLICIES)})")
    return photo_augment(batch_uint8, generator=generator, flip=flip, policy=PHOTO_POLICIES[augment])


def photo_augment(
    batch_uint8: torch.Tensor, *, generator: torch.Generator, flip: bool, policy: str | None
) -> torch.Tensor:
    """torchvision's photo recipe on each image of uint8 ``(N, C, H, W)``, drawn independently:

    1. random resized crop (``PHOTO_CROP_SCALE`` of the area, ``PHOTO_CROP_RATIO``), scaled back to (H, W)
       (bilinear, antialiased). It crops from the stored image, the manifest's resize + crop: the part of
       the photo the model is asked about at serving;
    2. with ``flip``, a horizontal flip with probability 1/2;
    3. ``policy`` None: colour jitter (``PHOTO_COLOR_JITTER``; saturation leaves grayscale as it is);
       "randaugment" (2 operations at magnitude 9) or "trivialaugment" (TrivialAugmentWide) instead, as
       torchvision's references and timm replace the jitter by the policy.

    torchvision's transforms draw from torch's global generator; they run inside ``fork_rng`` seeded from
    ``generator`` (one draw per batch), so the run's generator alone decides, and the global state (dropout)
    is left as it was.
    """
    if batch_uint8.ndim != 4 or batch_uint8.dtype != torch.uint8:
        raise ValueError(
            f"photo_augment expects uint8 (N, C, H, W), got {batch_uint8.dtype} {tuple(batch_uint8.shape)}"
        )
    height, width = batch_uint8.shape[-2:]
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop((height, width), scale=PHOTO_CROP_SCALE, ratio=PHOTO_CROP_RATIO, antialias=True)
    ]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if policy is None:
        steps.append(v2.ColorJitter(PHOTO_COLOR_JITTER, PHOTO_COLOR_JITTER, PHOTO_COLOR_JITTER))
    elif policy == "randaugment":
        steps.append(v2.RandAugment(num_ops=2, magnitude=9))
    elif policy == "trivialaugment":
        steps.append(v2.TrivialAugmentWide())
    else:
        raise ValueError(f"unknown augmentation policy {policy!r} (known: randaugment, trivialaugment)")
    transform = v2.Compose(steps)
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(image) for image in batch_uint8.cpu()]).to(batch_uint8.device)


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
