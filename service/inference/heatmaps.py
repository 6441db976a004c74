"""Heat maps as a person sees them: scaled to [0, 1], located, and drawn over the image the model saw.

A map arrives at its own coarse resolution (a class activation map is the last feature map's size, 3x3 to
7x7; an occlusion map is its grid), with one cell per region of the input. ``peak`` names the centre of the
hottest cell in input pixels; ``overlay_png`` draws the map, upsampled bilinearly, over the preprocessed
image (normalization undone), enlarged for small inputs so that a 28 px image is still visible.
Numpy and Pillow only.
"""

import io
import math

import numpy as np
from PIL import Image

from service.repository import Preprocessing

OVERLAY_MIN_SIDE = 224  # smaller inputs are enlarged by a whole factor until the longer side reaches this
OVERLAY_ALPHA = 0.5  # the colour's share of each pixel
# A perceptually ordered colour scale (dark blue, blue, cyan, green, yellow, red), RGB at evenly spaced stops.
COLOUR_STOPS = np.array(
    [[48, 18, 59], [70, 131, 248], [27, 229, 181], [164, 252, 59], [251, 185, 56], [215, 53, 6]], dtype=np.float32
)


def normalized(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``values`` scaled so its minimum is 0 and its maximum 1 (all 0 when it is flat), with that minimum
    and maximum."""
    low, high = float(values.min()), float(values.max())
    if not high > low:  # flat (or NaN): nothing stands out
        return np.zeros_like(values, dtype=np.float32), low, high
    return ((values - low) / (high - low)).astype(np.float32), low, high


def peak(values: np.ndarray, input_size: tuple[int, int]) -> tuple[int, int]:
    """(y, x) in input pixels of the centre of the map's hottest cell (the first one on a tie)."""
    rows, columns = values.shape
    row, column = np.unravel_index(int(np.argmax(values)), values.shape)
    height, width = input_size
    return int((row + 0.5) * height / rows), int((column + 0.5) * width / columns)


def upsampled(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) map resized bilinearly to ``size`` (height, width), cell centres on pixel centres."""
    height, width = size
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def _colour_table() -> np.ndarray:
    """(256, 3) uint8: ``COLOUR_STOPS`` interpolated linearly, one entry per 8-bit level."""
    position = np.linspace(0.0, len(COLOUR_STOPS) - 1, 256)
    below = np.minimum(position.astype(np.int64), len(COLOUR_STOPS) - 2)
    share = (position - below)[:, None]
    return np.rint(COLOUR_STOPS[below] * (1 - share) + COLOUR_STOPS[below + 1] * share).astype(np.uint8)


COLOUR_TABLE = _colour_table()


def colours(values: np.ndarray) -> np.ndarray:
    """[0, 1] values (clipped) -> (..., 3) uint8 RGB on ``COLOUR_STOPS``, in 256 levels."""
    return COLOUR_TABLE[np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)]


def seen_image(image: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """A preprocessed (C, H, W) float32 image back to (H, W, 3) uint8 RGB: what the model saw, without its
    normalization."""
    mean = np.asarray(preprocessing.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocessing.std, dtype=np.float32)[:, None, None]
    pixels = np.clip((image * std + mean) * 255.0, 0, 255).round().astype(np.uint8).transpose(1, 2, 0)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def overlay_png(image: np.ndarray, values: np.ndarray, preprocessing: Preprocessing) -> bytes:
    """The map (any size, [0, 1]) drawn over the preprocessed (C, H, W) image, as PNG bytes."""
    height, width = preprocessing.input_size
    scale = max(1, math.ceil(OVERLAY_MIN_SIDE / max(height, width)))
    size = (height * scale, width * scale)
    base = Image.fromarray(seen_image(image, preprocessing))
    if scale > 1:
        base = base.resize((size[1], size[0]), Image.Resampling.NEAREST)  # the model's pixels, kept sharp
    heat = Image.fromarray(colours(upsampled(values, size)))
    buffer = io.BytesIO()
    Image.blend(base, heat, OVERLAY_ALPHA).save(buffer, "PNG", compress_level=1)  # fast: the picture is for now
    return buffer.getvalue()
