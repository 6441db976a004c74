"""Uploaded bytes -> network input: defensive decoding, then training's eval transform in numpy.

``decode_into(data, limits, manifest.preprocessing, out)`` per upload (decode.py): ``decode_image`` then
``preprocess_into`` (preprocess.py), or the plain-PNG path that gives the same numbers faster.
"""

from service.imaging.decode import CONVERTIBLE_MODES, DecodeLimits, decode_image, decode_into
from service.imaging.errors import (
    CorruptImage,
    EmptyImage,
    ImageError,
    ImageTooLarge,
    ImageTooSmall,
    UnsupportedImageFormat,
)
from service.imaging.preprocess import MAX_RESIZED_PIXELS, preprocess, preprocess_into, resized_size, scaled

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
    "decode_into",
    "preprocess",
    "preprocess_into",
    "resized_size",
    "scaled",
]
