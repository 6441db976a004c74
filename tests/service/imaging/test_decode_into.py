"""decode_into: the plain-PNG path (libspng) where it applies, PIL otherwise, always with PIL's numbers."""

import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from service.imaging import DecodeLimits, ImageError, decode_image, decode_into, preprocess
from service.imaging.decode import plain_png_pixels
from service.repository.manifest import Preprocessing
from tests.service.imaging.images import encode

LIMITS = DecodeLimits()
GRAY = Preprocessing(color_mode="L", input_size=(28, 28), mean=(0.2860,), std=(0.3530,))
RGB = Preprocessing(color_mode="RGB", input_size=(24, 24), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
RESIZED = Preprocessing(color_mode="L", input_size=(28, 28), resize=32, mean=(0.5,), std=(0.5,))


def noise(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(2) if channels == 1 else pixels, mode=mode)


def served(data: bytes, preprocessing: Preprocessing, limits: DecodeLimits = LIMITS) -> np.ndarray:
    height, width = preprocessing.input_size
    out = np.empty((preprocessing.channels, height, width), dtype=np.float32)
    decode_into(data, limits, preprocessing, out)
    return out


def through_pil(data: bytes, preprocessing: Preprocessing, limits: DecodeLimits = LIMITS) -> np.ndarray:
    return preprocess(decode_image(data, limits), preprocessing)


def outcome(run: Callable[[], np.ndarray]) -> np.ndarray | tuple[type, str]:
    try:
        return run()
    except ImageError as error:
        return type(error), str(error)


def with_chunk_before_iend(png: bytes, kind: bytes, payload: bytes) -> bytes:
    chunk = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return png[:-12] + chunk + png[-12:]


PLAIN = {
    "gray 28x28": (encode(noise("L", (28, 28)), "PNG"), GRAY),
    "gray 31x40, cropped": (encode(noise("L", (31, 40), 1), "PNG"), GRAY),
    "gray with pHYs (dpi)": (encode(noise("L", (28, 28), 2), "PNG", dpi=(72, 72)), GRAY),
    "gray, uncompressed": (encode(noise("L", (28, 28), 3), "PNG", compress_level=0), GRAY),
    "rgb 24x24": (encode(noise("RGB", (24, 24), 4), "PNG"), RGB),
    "rgb 33x25, cropped": (encode(noise("RGB", (33, 25), 5), "PNG"), RGB),
    "gray at the resize size": (encode(noise("L", (32, 32), 6), "PNG"), RESIZED),
}


@pytest.mark.parametrize("case", PLAIN)
def test_plain_pngs_take_the_libspng_path_and_give_pils_numbers(case: str) -> None:
    data, preprocessing = PLAIN[case]
    assert plain_png_pixels(data, LIMITS, preprocessing.color_mode) is not None
    assert np.array_equal(served(data, preprocessing), through_pil(data, preprocessing))


def _png(mode: str, **params: object) -> bytes:
    return encode(noise(mode, (28, 28)), "PNG", **params)


def _flipped(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0xFF
    return bytes(changed)


def _text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "hello")
    return _png("L", pnginfo=info)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    return encode(noise("L", (28, 40)), "PNG", exif=exif)


NOT_PLAIN = {
    "palette": (encode(noise("RGB", (28, 28)).convert("P"), "PNG"), GRAY, LIMITS),
    "16-bit gray": (encode(Image.fromarray(np.arange(784, dtype=np.uint16).reshape(28, 28) * 80), "PNG"), GRAY, LIMITS),
    "gray with alpha": (_png("LA"), GRAY, LIMITS),
    "rgba": (_png("RGBA"), RGB, LIMITS),
    "rgb for a gray model": (_png("RGB"), GRAY, LIMITS),
    "gray for an rgb model": (encode(noise("L", (24, 24)), "PNG"), RGB, LIMITS),
    "a text chunk": (_text(), GRAY, LIMITS),
    "an EXIF orientation": (_exif_rotated(), GRAY, LIMITS),
    "an unknown chunk": (with_chunk_before_iend(_png("L"), b"prVt", b"data"), GRAY, LIMITS),
    "a bad IDAT CRC": (_flipped(_png("L"), -13), GRAY, LIMITS),  # PIL does not check it: it decodes the file
    "a corrupt IDAT": (_flipped(_png("L"), -20), GRAY, LIMITS),  # PIL refuses the broken zlib stream
    "truncated": (_png("L")[:-30], GRAY, LIMITS),
    "bytes after IEND": (_png("L") + b"junk", GRAY, LIMITS),
    "needs a resize": (_png("L"), RESIZED, LIMITS),
    "smaller than the input": (encode(noise("L", (20, 20)), "PNG"), GRAY, LIMITS),
    "PNG not allowed": (_png("L"), GRAY, DecodeLimits(formats=frozenset({"JPEG"}))),
    "over the pixel cap": (_png("L"), GRAY, DecodeLimits(max_pixels=700)),
    "over the byte cap": (_png("L"), GRAY, DecodeLimits(max_bytes=100)),
    "a JPEG": (encode(noise("L", (28, 28)), "JPEG"), GRAY, LIMITS),
}


@pytest.mark.parametrize("case", NOT_PLAIN)
def test_everything_else_goes_through_pil_with_its_numbers_or_its_error(case: str) -> None:
    data, preprocessing, limits = NOT_PLAIN[case]
    plain = plain_png_pixels(data, limits, preprocessing.color_mode)
    needs_pil = case in {"needs a resize", "smaller than the input"}  # plain pixels, but more than a crop to do
    assert (plain is None) != needs_pil
    got, expected = (
        outcome(lambda: served(data, preprocessing, limits)),
        outcome(lambda: through_pil(data, preprocessing, limits)),
    )
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray) and np.array_equal(got, expected)
    else:
        assert got == expected
