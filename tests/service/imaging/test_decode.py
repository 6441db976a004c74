import os
import time
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from service.imaging import (
    CONVERTIBLE_MODES,
    CorruptImage,
    DecodeLimits,
    EmptyImage,
    ImageError,
    ImageTooLarge,
    ImageTooSmall,
    UnsupportedImageFormat,
    decode_image,
    preprocess,
)
from service.repository.manifest import Preprocessing
from tests.service.imaging.images import encode, png_declaring

LIMITS = DecodeLimits()
GRAY = Preprocessing(color_mode="L", input_size=(8, 8), mean=(0.5,), std=(0.5,))
COLOUR = Preprocessing(color_mode="RGB", input_size=(8, 8), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def noise(mode: str, size: tuple[int, int] = (8, 8), seed: int = 0) -> Image.Image:
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(2) if bands == 1 else pixels, mode="L" if bands == 1 else mode)


# ---------------------------------------------------------------------------------------------------
# Refused inputs
# ---------------------------------------------------------------------------------------------------


def test_empty_bytes():
    with pytest.raises(EmptyImage, match=r"empty \(0 bytes\)"):
        decode_image(b"", LIMITS)


@pytest.mark.parametrize(
    "data", [b"hello, this is text", b'{"image": "cat.jpg"}', os.urandom(4096), b"\x00" * 100, b"x"]
)
def test_bytes_that_are_no_image(data):
    with pytest.raises(UnsupportedImageFormat, match="not an image in a known format; send JPEG or PNG or WEBP"):
        decode_image(data, LIMITS)


@pytest.mark.parametrize("image_format", ["GIF", "BMP", "TIFF", "PPM"])
def test_formats_outside_the_allow_list(image_format):
    data = encode(noise("RGB"), image_format)
    with pytest.raises(UnsupportedImageFormat, match=rf"^{image_format} images are not accepted; send JPEG or PNG"):
        decode_image(data, LIMITS)
    # Allowed, the same bytes decode.
    image = decode_image(data, DecodeLimits(formats=frozenset({image_format})))
    assert image.format == image_format and image.size == (8, 8)


def test_the_allow_list_looks_at_the_bytes_not_the_name():
    png = encode(noise("RGB"), "PNG")
    with pytest.raises(UnsupportedImageFormat, match="PNG images are not accepted; send JPEG"):
        decode_image(png, DecodeLimits(formats=frozenset({"JPEG"})))


def truncated(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


@pytest.mark.parametrize(
    ("image_format", "fraction"),
    [("JPEG", 0.5), ("JPEG", 0.9), ("PNG", 0.5), ("PNG", 0.9), ("WEBP", 0.6)],
)
def test_truncated_files(image_format, fraction):
    data = encode(noise("RGB", (64, 64)), image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # the global the refusal depends on
    with pytest.raises(CorruptImage, match=rf"^{image_format} data is truncated or corrupt \(.+\); send the complete"):
        decode_image(truncated(data, fraction), LIMITS)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_truncated_headers(image_format):
    data = encode(noise("RGB", (64, 64)), image_format)
    with pytest.raises(CorruptImage, match=rf"^{image_format} data is truncated or corrupt \(.+\); send the complete"):
        decode_image(data[:20], LIMITS)


def test_damaged_png_data():
    data = bytearray(encode(noise("RGB", (64, 64)), "PNG"))
    data[100:110] = b"\xff" * 10  # inside the IDAT chunk: its CRC no longer matches
    with pytest.raises(CorruptImage):
        decode_image(bytes(data), LIMITS)


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Any attempt to decode PNG pixels fails the test: the refusal must come from the header alone."""

    def refuse(self: Image.Image) -> None:
        raise AssertionError("decoded pixels of an image that should have been refused from its header")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", refuse)


def test_decompression_bomb_is_refused_from_the_header(no_pixel_decoding):
    bomb = png_declaring(50_000, 50_000)
    assert len(bomb) < 100
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"^PNG declares 2,500,000,000 pixels, the limit is 40,000,000; send a"):
        decode_image(bomb, LIMITS)
    assert time.perf_counter() - start < 0.5  # seconds: generous for a loaded machine; the header alone is read


def test_pixel_cap_below_pil_bomb_limit(no_pixel_decoding):
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"^PNG declares 8000x8000 = 64,000,000 pixels, the limit is 40,000,000"):
        decode_image(png_declaring(8000, 8000), LIMITS)
    with pytest.raises(ImageTooLarge, match=r"declares 11x10 = 110 pixels, the limit is 100; send a smaller image"):
        decode_image(png_declaring(11, 10), DecodeLimits(max_pixels=100))
    assert time.perf_counter() - start < 0.5  # seconds: generous for a loaded machine; the header alone is read


def test_pil_bomb_warning_raised_as_error_is_too_large():
    """Between PIL's limit and twice it, PIL only warns; where warnings are errors, it is still a 413."""
    pixels = Image.MAX_IMAGE_PIXELS + 1 if Image.MAX_IMAGE_PIXELS else 100_000_000
    bomb = png_declaring(pixels, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLarge, match=rf"PNG declares {pixels:,} pixels, the limit is"):
            decode_image(bomb, DecodeLimits(max_pixels=10**12))


def test_webp_over_the_pixel_cap():
    """The WebP plugin parses the whole file while opening; the cap still applies before any decoding."""
    data = encode(Image.new("RGB", (40, 30), "red"), "WEBP", lossless=True)
    with pytest.raises(ImageTooLarge, match=r"^WEBP declares 40x30 = 1,200 pixels, the limit is 1,000"):
        decode_image(data, DecodeLimits(max_pixels=1000))


def test_byte_cap():
    data = encode(noise("L", (32, 32)), "PNG")
    with pytest.raises(ImageTooLarge, match=rf"^the image is {len(data):,} bytes, the limit is 100; send a smaller"):
        decode_image(data, DecodeLimits(max_bytes=100))
    assert decode_image(data, DecodeLimits(max_bytes=len(data))).size == (32, 32)


def test_mode_that_cannot_be_converted():
    data = encode(Image.new("LAB", (4, 4)), "TIFF")
    with pytest.raises(UnsupportedImageFormat, match="TIFF in pixel mode LAB cannot be converted"):
        decode_image(data, DecodeLimits(formats=frozenset({"TIFF"})))


def test_every_error_is_an_image_error_and_a_value_error():
    for error in (EmptyImage, UnsupportedImageFormat, ImageTooLarge, CorruptImage, ImageTooSmall):
        assert issubclass(error, ImageError) and issubclass(error, ValueError)


# ---------------------------------------------------------------------------------------------------
# Accepted inputs
# ---------------------------------------------------------------------------------------------------


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), "blue")
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, show it rotated 90 degrees clockwise
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95), LIMITS)
    assert decoded.size == (20, 40)
    pixels = np.asarray(decoded.convert("RGB"), dtype=int)
    assert pixels[5, 10, 0] > 200 and pixels[5, 10, 2] < 60  # the left half is now on top
    assert pixels[35, 10, 2] > 200
    assert 0x0112 not in decoded.getexif()


def test_exif_orientation_in_png():
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise
    decoded = decode_image(encode(noise("L", (6, 4)), "PNG", exif=exif.tobytes()), LIMITS)
    assert decoded.size == (4, 6)
    assert decoded.tobytes() == noise("L", (6, 4)).transpose(Image.Transpose.ROTATE_90).tobytes()


def test_cmyk_jpeg():
    decoded = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95), LIMITS)
    assert decoded.mode == "CMYK"
    red, green, blue = np.asarray(decoded.convert("RGB"), dtype=int)[4, 4]
    assert red > 240 and green < 15 and blue < 15


def palette_with_transparency() -> Image.Image:
    image = noise("RGB").quantize(colors=4)
    image.info["transparency"] = 0
    return image


SOURCES = {
    "1": lambda: noise("L").point(lambda v: 255 if v > 127 else 0).convert("1"),
    "L": lambda: noise("L"),
    "LA": lambda: noise("LA"),
    "P": palette_with_transparency,
    "RGB": lambda: noise("RGB"),
    "RGBA": lambda: noise("RGBA"),
    "I;16": lambda: Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000),
}


@pytest.mark.parametrize("mode", SOURCES)
def test_png_modes_decode_losslessly_and_preprocess(mode):
    source = SOURCES[mode]()
    decoded = decode_image(encode(source, "PNG"), LIMITS)
    assert decoded.mode == mode and decoded.mode in CONVERTIBLE_MODES
    assert decoded.tobytes() == source.tobytes()
    if mode == "P":
        assert decoded.info["transparency"] == 0
    for preprocessing in (GRAY, COLOUR):
        tensor = preprocess(decoded, preprocessing)
        assert tensor.shape == (preprocessing.channels, 8, 8) and np.isfinite(tensor).all()


def frames(colours: list[str]) -> list[Image.Image]:
    return [Image.new("RGB", (6, 4), colour) for colour in colours]


@pytest.mark.parametrize(
    ("image_format", "params"),
    [("PNG", {}), ("WEBP", {"lossless": True}), ("MPO", {"quality": 95})],
)
def test_multi_frame_images_give_the_first_frame(image_format, params):
    first, *rest = frames(["red", "lime", "blue"])
    data = encode(first, image_format, save_all=True, append_images=rest, **params)
    decoded = decode_image(data, LIMITS)
    assert getattr(decoded, "n_frames", 1) == 3
    assert decoded.size == (6, 4)
    red, green, blue = np.asarray(decoded.convert("RGB"), dtype=int)[2, 3]
    assert red > 240 and green < 15 and blue < 15


# ---------------------------------------------------------------------------------------------------
# DecodeLimits
# ---------------------------------------------------------------------------------------------------


def test_limits_defaults():
    assert LIMITS.formats == {"JPEG", "PNG", "WEBP"}
    assert (LIMITS.max_bytes, LIMITS.max_pixels) == (10 * 1024 * 1024, 40_000_000)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"formats": frozenset({"JPG"})}, "image formats: JPG not readable by PIL; choose from .*JPEG"),
        ({"formats": frozenset({"png"})}, "image formats: png not readable"),
        ({"formats": frozenset()}, "image formats: none given"),
        ({"max_bytes": 0}, "must be positive"),
        ({"max_pixels": -1}, "must be positive"),
    ],
)
def test_limits_are_checked(arguments, message):
    with pytest.raises(ValueError, match=message):
        DecodeLimits(**arguments)
