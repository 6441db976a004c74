"""Photos of every kind, through training's path and the service's: identical float32 tensors.

240 generated photos: RGB, L, P (with and without a transparent entry), PA, LA, RGBA, CMYK and 16-bit
grayscale, as JPEG (some with an EXIF rotation), PNG, WebP, animated GIF and TIFF, from 1x1 to 1600x1200
(most small, a handful large). Training reads each from a file (``open_image``, ``decode_for_eval``,
``normalize``, as ``load_image_folder`` and the engine do); the service decodes the bytes (``decode_into``,
per upload, libspng's path included). Both must give the same bits, for a photo model's manifest
(resize, crop, background) and for an old-style one (crop only, no background).
"""

# ruff: noqa: E402  (the training imports follow the skip when torch is absent)

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image

from service.imaging import DecodeLimits, ImageError, decode_into
from service.imaging.decode import plain_png_pixels
from service.repository.manifest import Preprocessing
from training.data import decode_for_eval, normalize, open_image
from training.errors import UnusableData

LIMITS = DecodeLimits(formats=frozenset({"JPEG", "PNG", "WEBP", "GIF", "TIFF"}))
PHOTO_RGB = Preprocessing(
    color_mode="RGB",
    input_size=(24, 24),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    resize=28,
    background=(255, 255, 255),
)
PHOTO_GRAY = Preprocessing(
    color_mode="L",
    input_size=(20, 16),
    mean=(0.4,),
    std=(0.3,),
    resize=22,
    interpolation="bicubic",
    background=(0, 128, 255),
)
OLD_STYLE = Preprocessing(color_mode="RGB", input_size=(12, 12), mean=(0.5,) * 3, std=(0.25,) * 3)  # no resize
MANIFESTS = {"photo-rgb": PHOTO_RGB, "photo-gray": PHOTO_GRAY, "old-style": OLD_STYLE}


def picture(width: int, height: int, seed: int) -> Image.Image:
    """RGBA: colour gradients with noise, alpha from opaque to fully transparent across the picture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin((x + y) / 3)], axis=-1)
    alpha = 255 * (x + y) / (width + height)
    pixels = np.concatenate([rgb, alpha[..., None]], axis=-1) + rng.integers(-25, 26, (height, width, 4))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def save(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def palette(image: Image.Image, *, transparent: bool) -> Image.Image:
    quantized = image.convert("RGB").quantize(colors=16)
    if transparent:
        quantized.info["transparency"] = 3
    return quantized


def sixteen_bit(image: Image.Image) -> Image.Image:
    gray = np.asarray(image.convert("L"), dtype=np.uint16)
    return Image.fromarray(gray * 257 + np.uint16(91))  # the whole 16-bit range, low byte not zero


def exif_rotated(image: Image.Image, seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 2 + seed % 7  # orientations 2-8: mirrored, rotated, both
    return save(image.convert("RGB"), "JPEG", quality=90, exif=exif.tobytes())


def animated(image: Image.Image) -> bytes:
    frames = [image.convert("RGB"), Image.new("RGB", image.size, "red"), Image.new("RGB", image.size, "blue")]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


KINDS: dict[str, Callable[[Image.Image, int], bytes]] = {  # name -> encoder of an RGBA picture
    "jpeg-rgb": lambda image, _: save(image.convert("RGB"), "JPEG", quality=90),
    "jpeg-gray": lambda image, _: save(image.convert("L"), "JPEG", quality=90),
    "jpeg-cmyk": lambda image, _: save(image.convert("CMYK"), "JPEG", quality=90),
    "jpeg-exif-rotated": lambda image, seed: exif_rotated(image, seed),
    "png-rgb": lambda image, _: save(image.convert("RGB"), "PNG"),
    "png-gray": lambda image, _: save(image.convert("L"), "PNG"),
    "png-palette": lambda image, _: save(palette(image, transparent=False), "PNG"),
    "png-palette-transparent": lambda image, _: save(palette(image, transparent=True), "PNG"),
    "png-la": lambda image, _: save(image.convert("LA"), "PNG"),
    "png-rgba": lambda image, _: save(image, "PNG"),
    "png-16-bit": lambda image, _: save(sixteen_bit(image), "PNG"),
    "webp-rgb": lambda image, _: save(image.convert("RGB"), "WEBP", quality=80),
    "webp-rgba": lambda image, _: save(image, "WEBP", lossless=True),
    "gif-animated": lambda image, _: animated(image),
    "tiff-pa": lambda image, _: save(image.convert("PA"), "TIFF"),
    "tiff-cmyk": lambda image, _: save(image.convert("CMYK"), "TIFF"),
    "tiff-16-bit": lambda image, _: save(sixteen_bit(image), "TIFF"),
    "tiff-la": lambda image, _: save(image.convert("LA"), "TIFF"),
}
# Most photos small, a handful large; 28 and 22 (the resize) make some PNGs take libspng's path.
SMALL = [
    (1, 1),
    (3, 5),
    (12, 12),
    (16, 9),
    (28, 28),
    (28, 40),
    (40, 28),
    (22, 30),
    (37, 23),
    (64, 48),
    (50, 75),
    (99, 61),
]
LARGE = {  # the largest in formats that encode them fast
    "jpeg-rgb": (1600, 1200),
    "jpeg-exif-rotated": (1200, 1600),
    "tiff-cmyk": (1600, 1200),
    "png-rgba": (640, 480),
    "webp-rgb": (480, 640),
    "png-16-bit": (333, 1000),
}


def photos() -> list[tuple[str, bytes]]:
    """(name, encoded bytes): every kind at every small size, and a few kinds at a large size."""
    made = []
    for number, (kind, encoder) in enumerate(KINDS.items()):
        sizes = [*SMALL, LARGE[kind]] if kind in LARGE else SMALL
        for index, (width, height) in enumerate(sizes):
            seed = 100 * number + index
            made.append((f"{kind}-{width}x{height}", encoder(picture(width, height, seed), seed)))
    return made


@pytest.fixture(scope="module")
def generated() -> list[tuple[str, bytes]]:
    return photos()


def training_path(path: Path, preprocessing: Preprocessing) -> np.ndarray:
    pixels = decode_for_eval(open_image(path), preprocessing=preprocessing)  # uint8 (C, H, W)
    return normalize(pixels, preprocessing=preprocessing).numpy()


def service_path(data: bytes, preprocessing: Preprocessing) -> np.ndarray:
    out = np.empty((preprocessing.channels, *preprocessing.input_size), dtype=np.float32)
    decode_into(data, LIMITS, preprocessing, out)
    return out


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_training_and_serving_give_the_same_tensors(
    tmp_path: Path, generated: list[tuple[str, bytes]], manifest: str
) -> None:
    preprocessing = MANIFESTS[manifest]
    compared = refused = 0
    for name, data in generated:
        path = tmp_path / name
        path.write_bytes(data)
        try:
            trained = training_path(path, preprocessing)
        except UnusableData:  # smaller than the input without a resize: both refuse it
            with pytest.raises(ImageError, match="smaller than the model's input"):
                service_path(data, preprocessing)
            refused += 1
            continue
        served = service_path(data, preprocessing)
        assert served.dtype == trained.dtype == np.float32, name
        assert served.shape == trained.shape == (preprocessing.channels, *preprocessing.input_size), name
        assert np.array_equal(served, trained), f"{name}: max difference {np.abs(served - trained).max()}"
        compared += 1
    assert len(generated) >= 200 and compared + refused == len(generated)
    assert compared >= (100 if preprocessing.resize is None else len(generated))


def test_the_set_covers_every_kind_and_the_fast_path(generated: list[tuple[str, bytes]]) -> None:
    modes = {Image.open(io.BytesIO(data)).mode for _, data in generated}
    assert {"RGB", "L", "P", "PA", "LA", "RGBA", "CMYK", "I;16"} <= modes
    formats = {Image.open(io.BytesIO(data)).format for _, data in generated}
    assert formats == {"JPEG", "PNG", "WEBP", "GIF", "TIFF"}
    fast = [name for name, data in generated if plain_png_pixels(data, LIMITS, "RGB") is not None]
    assert any(name.startswith("png-rgb-28x") for name in fast)  # at the resize already: libspng's path taken
