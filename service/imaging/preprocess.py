"""Training's eval transform in numpy: decoded PIL image -> float32 (C, H, W) network input.

This reproduces ``training.data.transforms.eval_transform`` bit for bit (``tests/service/imaging/test_parity.py``
holds the two side by side): the same colour conversion (color.py, one function), the same PIL resizing,
the same crop arithmetic, and the same float32 operations in the same order for scaling,
``(x / 255 - mean) / std``; IEEE float32 division and subtraction round identically in numpy and torch.
"""

import functools

import numpy as np
from PIL import Image

from service.imaging.color import to_color_mode
from service.imaging.errors import ImageTooLarge, ImageTooSmall
from service.repository.manifest import Preprocessing

# Preprocessing.interpolation -> PIL filter, for training and serving alike. "box" averages each output
# pixel's whole footprint: the right filter for a model whose images are small (28x28) and whose
# photos are therefore always shrunk, often tenfold.
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
# A very elongated image would grow without bound when its shorter side is resized up (1 x 100,000 to
# 224 x 22,400,000); refuse a resize to more pixels than this, the default decode cap.
MAX_RESIZED_PIXELS = 40_000_000


def resized_size(width: int, height: int, shorter_side: int) -> tuple[int, int]:
    """(width, height) after resizing so the shorter side is ``shorter_side``.

    The longer side becomes ``int(shorter_side * longer / shorter)`` (truncated, as torchvision's
    ``Resize(int)`` does), exactly as training computes it.
    """
    if width <= height:
        return shorter_side, int(shorter_side * height / width)
    return int(shorter_side * width / height), shorter_side


def preprocess(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """float32 ``(C, H, W)``, C-contiguous, (H, W) = ``preprocessing.input_size``: ``Preprocessing``'s steps.

    1. ``to_color_mode`` (color.py, shared with training): transparency composited on ``background``
       when it is set (else dropped), 16-bit grayscale scaled to 8 bits, then PIL's conversion;
    2. with ``resize`` set, shorter side to ``resize`` (``resized_size``) with PIL's ``interpolation``;
    3. center crop to ``input_size``: offsets ``round((size - crop) / 2.0)``, Python's half-to-even round;
    4. ``(x / 255 - mean) / std`` per channel, in float32.

    An image smaller than ``input_size`` after step 2 raises ``ImageTooSmall``, as training refuses it:
    without ``resize`` the model only ever saw images cropped, never scaled, to its input. A resize to
    more than ``MAX_RESIZED_PIXELS`` raises ``ImageTooLarge``.
    """
    height, width = preprocessing.input_size
    out = np.empty((preprocessing.channels, height, width), dtype=np.float32)
    preprocess_into(image, preprocessing, out)
    return out


def preprocess_into(image: Image.Image, preprocessing: Preprocessing, out: np.ndarray) -> None:
    """Writes ``preprocess(image, preprocessing)`` into ``out`` (float32 (C, H, W), C-contiguous): a row of a
    batch array, so a request's images go straight into the array the runtime takes."""
    image = scaled(image, preprocessing)
    crop_h, crop_w = preprocessing.input_size
    if image.height < crop_h or image.width < crop_w:
        resized = "" if preprocessing.resize is None else f" after resizing its shorter side to {preprocessing.resize}"
        raise ImageTooSmall(
            f"the image is {image.width}x{image.height} (w x h){resized}, smaller than the model's input "
            f"{crop_w}x{crop_h}; send an image at least that large"
        )
    if image.size != (crop_w, crop_h):
        left, top = crop_origin(image.width, image.height, preprocessing.input_size)
        image = image.crop((left, top, left + crop_w, top + crop_h))
    # frombuffer over tobytes: the same bytes as np.asarray(image) at half the cost for small images.
    normalize_into(np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(crop_h, crop_w, -1), preprocessing, out)


def scaled(image: Image.Image, preprocessing: Preprocessing) -> Image.Image:
    """Steps 1 and 2 of ``preprocess``: the image in the model's colour mode, its shorter side resized to
    ``resize`` when that is set; what the center crop then takes the network input from. The feedback store
    keeps this image of a prediction (service/feedback/images.py)."""
    image = to_color_mode(image, color_mode=preprocessing.color_mode, background=preprocessing.background)
    if preprocessing.resize is not None:
        size = resized_size(image.width, image.height, preprocessing.resize)
        if size[0] * size[1] > MAX_RESIZED_PIXELS:
            raise ImageTooLarge(
                f"the image is {image.width}x{image.height}; resizing its shorter side to {preprocessing.resize} "
                f"would make it {size[0]}x{size[1]}, more than {MAX_RESIZED_PIXELS:,} pixels; "
                "send an image with a less extreme aspect ratio"
            )
        if size != image.size:
            image = image.resize(size, RESAMPLING[preprocessing.interpolation])
    return image


def crop_origin(width: int, height: int, input_size: tuple[int, int]) -> tuple[int, int]:
    """(left, top) of the center crop to ``input_size`` (H, W): ``round((size - crop) / 2.0)``, as training."""
    crop_h, crop_w = input_size
    return round((width - crop_w) / 2.0), round((height - crop_h) / 2.0)


def normalize_into(pixels: np.ndarray, preprocessing: Preprocessing, out: np.ndarray) -> None:
    """uint8 (H, W, C) pixels, already cropped to the input size -> ``(x / 255 - mean) / std`` into ``out``."""
    # Channel planes first (a copy only for RGB): float arithmetic then runs over contiguous memory.
    planes = np.ascontiguousarray(pixels.transpose(2, 0, 1))  # uint8 (C, H, W)
    mean, std = _channel_stats(preprocessing.mean, preprocessing.std)
    np.divide(planes, np.float32(255.0), out=out)  # float32 throughout, in training's order
    np.subtract(out, mean, out=out)
    np.divide(out, std, out=out)


@functools.cache
def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """float32 (C, 1, 1) arrays, made once per model rather than per image."""
    return (
        np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1),
        np.asarray(std, dtype=np.float32).reshape(-1, 1, 1),
    )
