"""Uploaded bytes -> network input, decoded defensively and once: ``decode_into`` per upload.

Two decoders give the same pixels. PIL (``decode_image``) reads every allowed format; the order of its
checks matters for safety: byte cap, then the format allow-list (only the allowed PIL plugins ever parse
the bytes), then the pixel cap read from the header (``Image.open`` is lazy), and only then the full
decode. A decompression bomb is therefore refused after reading a few header bytes, before any pixel
buffer is allocated. Truncated files are refused, not padded: this module relies on PIL's default
``ImageFile.LOAD_TRUNCATED_IMAGES = False`` and never changes it, nor ``Image.MAX_IMAGE_PIXELS``.

Plain PNG files go through libspng instead (``plain_png_pixels``, below), where its pixels are certain
to be PIL's. The decoded pixels then take training's eval transform (preprocess.py).
"""

import io
import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import pyspng
from PIL import Image, ImageOps, UnidentifiedImageError

from service.imaging.errors import CorruptImage, EmptyImage, ImageTooLarge, UnsupportedImageFormat
from service.imaging.preprocess import crop_origin, normalize_into, preprocess_into, resized_size
from service.repository.manifest import Preprocessing

# Pixel modes that PIL converts to both "L" and "RGB" (the first step of preprocessing). JPEG, PNG and
# WebP only decode to these; an allowed format that yields another mode (TIFF in LAB, say) is refused.
CONVERTIBLE_MODES = frozenset(
    {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV", "F"}
    | {"I", "I;16", "I;16L", "I;16B", "I;16N"}
)

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")  # in the message of PIL's DecompressionBombError


@dataclass(frozen=True)
class DecodeLimits:
    """What ``decode_image`` accepts: built once at the edge (from the settings), shared by every request."""

    formats: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP"})  # PIL format names, as PIL detects them
    max_bytes: int = 10 * 1024 * 1024  # one encoded image
    max_pixels: int = 40_000_000  # width x height, read from the header before decoding

    def __post_init__(self) -> None:
        Image.init()  # registers every plugin, so Image.OPEN lists every format PIL can read
        unknown = sorted(self.formats - Image.OPEN.keys())
        if unknown or not self.formats:
            raise ValueError(
                f"image formats: {', '.join(unknown) or 'none given'} not readable by PIL; "
                f"choose from {', '.join(sorted(Image.OPEN))}"
            )
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError("image limits: max_bytes and max_pixels must be positive")


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


# ---------------------------------------------------------------- PIL: every allowed format


def decode_image(data: bytes, limits: DecodeLimits) -> Image.Image:
    """The fully decoded first frame of ``data``, upright, in a mode from ``CONVERTIBLE_MODES``.

    Multi-frame files (animated PNG and WebP, multi-picture JPEG from phones, which PIL reports as
    "MPO" and counts as JPEG) give their first frame; the others are never decoded. The EXIF orientation
    is applied, so ``size`` is the upright size. The mode is PIL's own (CMYK, 16-bit "I;16", palette,
    alpha...); ``preprocess`` converts it exactly as training does.

    Raises ``EmptyImage``, ``UnsupportedImageFormat`` (not an image, or a format or mode not allowed),
    ``ImageTooLarge`` (bytes, declared pixels, or PIL's decompression-bomb limit) or ``CorruptImage``
    (truncated or undecodable), each with a message that says what to send instead.
    """
    if not data:
        raise EmptyImage("the image is empty (0 bytes); send the file's contents")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"the image is {len(data):,} bytes, the limit is {limits.max_bytes:,}; "
            "send a smaller or more compressed image"
        )
    image = _open(data, limits)
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{image.format} declares {width}x{height} = {width * height:,} pixels, the limit is "
            f"{limits.max_pixels:,}; send a smaller image"
        )
    if image.mode not in CONVERTIBLE_MODES:
        raise UnsupportedImageFormat(
            f"{image.format} in pixel mode {image.mode} cannot be converted to grayscale or RGB; "
            "send an RGB or grayscale image"
        )
    try:
        image.load()
        # Every orientation source PIL reads (EXIF, PNG's eXIf and text chunks, XMP, TIFF tags with their
        # always-present "compression") shows in `info`; a bare PNG has none, so small uploads skip the parse.
        if image.info:
            ImageOps.exif_transpose(image, in_place=True)  # parses the EXIF block: untrusted input too
    # PIL's decoders raise many types on malformed data (OSError for truncation, SyntaxError, ValueError,
    # EOFError, struct.error, ...); every one of them means this upload cannot be decoded.
    except Exception as error:
        raise _corrupt(image.format, str(error)) from error
    return image


def _open(data: bytes, limits: DecodeLimits) -> Image.Image:
    """``Image.open`` restricted to the allowed plugins: reads the header only, decodes no pixels."""
    allowed = " or ".join(sorted(limits.formats))
    try:
        return Image.open(io.BytesIO(data), formats=tuple(limits.formats))
    except UnidentifiedImageError as error:
        detected = _detect_format(data)
        if detected in limits.formats:  # the right signature, but the header does not parse
            raise _corrupt(detected, "its header does not parse") from error
        if detected is not None:
            raise UnsupportedImageFormat(f"{detected} images are not accepted; send {allowed}") from error
        raise UnsupportedImageFormat(f"the data is not an image in a known format; send {allowed}") from error
    # PIL's own guard fires inside Image.open, before our pixel cap can look at the size: the error above
    # 2 x Image.MAX_IMAGE_PIXELS, the warning above it when warnings are errors.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        match = _BOMB_PIXELS.search(str(error))
        declared = f"{int(match[1]):,} pixels" if match else f"too many pixels ({error})"
        raise ImageTooLarge(
            f"{_detect_format(data) or 'the image'} declares {declared}, the limit is {limits.max_pixels:,}; "
            "send a smaller image"
        ) from error
    # An allowed plugin failed on malformed data (OSError, ValueError, ...); the WebP plugin decodes
    # while opening, so its truncated files fail here rather than in load().
    except Exception as error:
        raise _corrupt(_detect_format(data) or "the image", str(error)) from error


def _corrupt(image_format: str | None, detail: str) -> CorruptImage:
    return CorruptImage(f"{image_format} data is truncated or corrupt ({detail}); send the complete, unmodified file")


def _detect_format(data: bytes) -> str | None:
    """The format whose signature ``data`` starts with, over every PIL plugin; only for error messages.

    Uses the plugins' ``accept`` checks (a few bytes compared, nothing parsed), exactly as ``Image.open``
    does on the same 16-byte prefix.
    """
    Image.init()
    prefix = data[:16]
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            if accept is not None and accept(prefix) is True:
                return name
        except Exception:  # some checks index past a short prefix; that plugin simply does not match
            continue
    return None


# ---------------------------------------------------------------- plain PNG: one C call
# Plain PNG files decoded in one C call (libspng, through pyspng) instead of through PIL.
#
# PIL's PNG reader is mostly Python (chunk parsing, CRC checks, decoder set-up): for a small upload it
# was the largest single cost of a classify request, and this path raised the small model's requests per
# second by about 19 % (docs/benchmarks.md). It is taken only where its pixels are certain to be PIL's:
# PNG is lossless, and the samples of an 8-bit grayscale or truecolour file are exactly the pixels PIL
# decodes, with no conversion in between. So the bytes must show, before anything is decoded:
#
# - IHDR first, every chunk whole with a correct CRC (libspng skips CRCs as pyspng calls it), and IEND
#   last, with nothing after it;
# - no chunk but IHDR, IDAT, IEND and the colour-space and size notes PIL does not apply to pixels (gAMA,
#   cHRM, sRGB, pHYs): no palette or transparency, no text, eXIf or XMP that could carry an EXIF
#   orientation, no animation;
# - bit depth 8, and the colour type the model wants (grayscale for "L", truecolour for "RGB");
# - PNG allowed, and the byte and pixel caps respected.
#
# Anything else, and any error from libspng, gives None: the caller then decodes with PIL
# (``decode_image``), which either decodes the file or says precisely what is wrong with it.

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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
    if not data.startswith(PNG_SIGNATURE):
        return None
    view = memoryview(data)
    header = None
    offset = len(PNG_SIGNATURE)
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
