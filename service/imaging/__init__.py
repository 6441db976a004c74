"""Uploaded bytes -> network input: defensive decoding, then training's eval transform in numpy.

``decode_image(data, limits)`` once per upload, then ``preprocess(image, manifest.preprocessing)``.
"""

from service.imaging.decode import CONVERTIBLE_MODES, DecodeLimits, decode_image
from service.imaging.errors import (
    CorruptImage,
    EmptyImage,
    ImageError,
    ImageTooLarge,
    ImageTooSmall,
    UnsupportedImageFormat,
)
from service.imaging.preprocess import MAX_RESIZED_PIXELS, preprocess, preprocess_into, resized_size

__all__ = [
    "CONVERTIBLE_MODES",
    "MAX_RESIZED_PIXELS",
    "CorruptImage",
    "DecodeLimits",
    "EmptyImage",
    "ImageError",
    "ImageTooLarge",
    "ImageTooSmall",
    "UnsupportedImageFormat",
    "decode_image",
    "preprocess",
    "preprocess_into",
    "resized_size",
]
