"""Plain PNG files decoded in one C call (libspng, through pyspng) instead of through PIL.

PIL's PNG reader is mostly Python (chunk parsing, CRC checks, decoder set-up): for a small upload it
was the largest single cost of a classify request, and this path raised the small model's requests per
second by about 19 % (docs/benchmarks.md). It is taken only where its pixels are certain to be PIL's:
PNG is lossless, and the samples of an 8-bit grayscale or truecolour file are exactly the pixels PIL
decodes, with no conversion in between. So the bytes must show, before anything is decoded:

- IHDR first, every chunk whole with a correct CRC (libspng skips CRCs as pyspng calls it), and IEND
  last, with nothing after it;
- no chunk but IHDR, IDAT, IEND and the colour-space and size notes PIL does not apply to pixels (gAMA,
  cHRM, sRGB, pHYs): no palette or transparency, no text, eXIf or XMP that could carry an EXIF
  orientation, no animation;
- bit depth 8, and the colour type the model wants (grayscale for "L", truecolour for "RGB");
- PNG allowed, and the byte and pixel caps respected.

Anything else, and any error from libspng, gives None: the caller then decodes with PIL
(``decode_image``), which either decodes the file or says precisely what is wrong with it.
"""

import struct
import zlib

import numpy as np
import pyspng

from service.imaging.decode import DecodeLimits

SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLAIN_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND", b"gAMA", b"cHRM", b"sRGB", b"pHYs"})
COLOR_TYPES = {"L": 0, "RGB": 2}  # PIL colour mode -> the PNG colour type whose samples are its pixels


def plain_png_pixels(data: bytes, limits: DecodeLimits, color_mode: str) -> np.ndarray | None:
    """uint8 (H, W, C) pixels of a plain PNG in ``color_mode``, or None: decode it with PIL instead."""
    wanted = COLOR_TYPES.get(color_mode)
    if wanted is None or "PNG" not in limits.formats or len(data) > limits.max_bytes:
        return None
    header = plain_header(data)
    if header is None:
        return None
    width, height, bit_depth, color_type = header
    if bit_depth != 8 or color_type != wanted or width * height > limits.max_pixels:
        return None
    try:
        pixels = pyspng.load(data)
    except RuntimeError:  # pyspng's error for anything libspng refuses
        return None
    return pixels.reshape(height, width, -1)


def plain_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) when the chunk layout is plain (above), else None."""
    if not data.startswith(SIGNATURE):
        return None
    view = memoryview(data)
    header = None
    offset = len(SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = bytes(view[offset + 4 : offset + 8])
        end = offset + 12 + length
        if end > len(data) or kind not in PLAIN_CHUNKS:
            return None
        if zlib.crc32(view[offset + 4 : end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            return None
        if (header is None) != (kind == b"IHDR"):  # IHDR first, and only there
            return None
        if kind == b"IHDR":
            if length != 13:
                return None
            width, height, bit_depth, color_type = struct.unpack_from(">IIBB", data, offset + 8)
            header = (width, height, bit_depth, color_type)
        elif kind == b"IEND":
            return header if end == len(data) else None
        offset = end
    return None
