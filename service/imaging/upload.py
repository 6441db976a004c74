"""One upload -> its network input: the plain-PNG path (``png.py``) when it applies, else PIL.

Both give the same numbers: the plain path only takes files whose decoded pixels are PIL's and that
need no resize, and then crops and normalizes them with the same functions (``preprocess.py``).
"""

import numpy as np

from service.imaging.decode import DecodeLimits, decode_image
from service.imaging.png import plain_png_pixels
from service.imaging.preprocess import crop_origin, normalize_into, preprocess_into, resized_size
from service.repository.manifest import Preprocessing


def decode_into(data: bytes, limits: DecodeLimits, preprocessing: Preprocessing, out: np.ndarray) -> None:
    """Decode ``data`` and write its float32 (C, H, W) network input into ``out`` (a row of a batch).

    Raises what ``decode_image`` and ``preprocess_into`` raise, with the same messages.
    """
    pixels = plain_png_pixels(data, limits, preprocessing.color_mode)
    if pixels is None or not _needs_only_a_crop(pixels, preprocessing):
        preprocess_into(decode_image(data, limits), preprocessing, out)
        return
    height, width = pixels.shape[:2]
    crop_h, crop_w = preprocessing.input_size
    left, top = crop_origin(width, height, preprocessing.input_size)
    normalize_into(pixels[top : top + crop_h, left : left + crop_w], preprocessing, out)


def _needs_only_a_crop(pixels: np.ndarray, preprocessing: Preprocessing) -> bool:
    """At least the input size, and already at the size the resize step (if any) would give."""
    height, width = pixels.shape[:2]
    crop_h, crop_w = preprocessing.input_size
    if height < crop_h or width < crop_w:
        return False  # PIL's path refuses it, with its message
    return preprocessing.resize is None or resized_size(width, height, preprocessing.resize) == (width, height)
