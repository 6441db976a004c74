"""to_color_mode: what decoding does to every kind of photo, and what it leaves as it was."""

import numpy as np
import pytest
from PIL import Image

from service.imaging import decode_image, preprocess
from service.imaging.color import to_color_mode
from service.imaging.decode import DecodeLimits
from service.repository.manifest import Preprocessing
from tests.service.imaging.images import encode

WHITE = (255, 255, 255)
LIMITS = DecodeLimits(formats=frozenset({"PNG", "TIFF", "JPEG"}))


def noise(mode: str, size: tuple[int, int] = (9, 7), seed: int = 0) -> Image.Image:
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if bands == 1 else pixels).convert(mode)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int64)


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "CMYK", "1"])
@pytest.mark.parametrize("color_mode", ["L", "RGB"])
@pytest.mark.parametrize("background", [None, WHITE])
def test_8_bit_opaque_photos_convert_as_pil_does_with_or_without_background(mode, color_mode, background):
    image = noise("RGB").convert(mode)
    converted = to_color_mode(image, color_mode=color_mode, background=background)
    assert converted.mode == color_mode
    assert converted.tobytes() == image.convert(color_mode).tobytes()


def test_an_image_already_in_the_mode_is_returned_as_it_is():
    image = noise("RGB")
    assert to_color_mode(image, color_mode="RGB", background=WHITE) is image


def test_without_background_alpha_is_dropped_as_before():
    rgba = noise("RGBA")
    for color_mode in ("L", "RGB"):
        old = to_color_mode(rgba, color_mode=color_mode, background=None)
        assert old.tobytes() == rgba.convert(color_mode).tobytes()


def test_alpha_is_composited_on_the_background():
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [200, 100, 0, 128]]], dtype=np.uint8)
    composited = pixels(to_color_mode(Image.fromarray(rgba), color_mode="RGB", background=(0, 50, 250)))
    assert composited[0, 0].tolist() == [200, 100, 0]  # opaque: its own colour
    assert composited[0, 1].tolist() == [0, 50, 250]  # transparent: the background
    expected = rgba[0, 2, :3].astype(float) * 128 / 255 + np.array([0, 50, 250]) * 127 / 255
    assert np.abs(composited[0, 2] - expected).max() <= 1  # half: the mix


def test_grayscale_with_alpha_on_white_for_a_gray_model():
    la = Image.fromarray(np.array([[[0, 0], [0, 255], [100, 0]]], dtype=np.uint8), mode="LA")
    gray = to_color_mode(la, color_mode="L", background=WHITE)
    assert pixels(gray).tolist() == [[255, 0, 255]]  # transparent black shows as white, not as black
    assert pixels(la.convert("L")).tolist() == [[0, 0, 100]]  # what PIL's convert (no background) shows


def test_palette_transparency_is_composited():
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255])  # entry 0 red, entry 1 blue
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0  # red marks the transparent pixels
    assert pixels(to_color_mode(image, color_mode="RGB", background=WHITE)).tolist() == [[[255, 255, 255], [0, 0, 255]]]
    decoded = decode_image(encode(image, "PNG"), LIMITS)  # the same through a file
    assert pixels(to_color_mode(decoded, color_mode="RGB", background=WHITE)).tolist() == [
        [[255, 255, 255], [0, 0, 255]]
    ]


def test_16_bit_gray_is_scaled_not_clipped():
    values = np.array([[0, 128, 129, 257, 1000, 32768, 65535]], dtype=np.uint16)
    for background in (None, WHITE):
        scaled = to_color_mode(Image.fromarray(values), color_mode="L", background=background)
        assert pixels(scaled).tolist() == [[0, 0, 1, 1, 4, 128, 255]]  # round(v / 257)
    assert pixels(Image.fromarray(values).convert("L")).tolist() == [[0, 128, 129, 255, 255, 255, 255]]  # PIL clips
    colour = to_color_mode(Image.fromarray(values), color_mode="RGB", background=None)
    assert pixels(colour)[0, :, 0].tolist() == [0, 0, 1, 1, 4, 128, 255]


@pytest.mark.parametrize("image_format", ["PNG", "TIFF"])
def test_16_bit_files_decode_to_the_scaled_values(image_format):
    values = (np.arange(48, dtype=np.uint32).reshape(6, 8) * 1365).astype(np.uint16)
    decoded = decode_image(encode(Image.fromarray(values), image_format), LIMITS)
    assert decoded.mode in ("I;16", "I")
    gray = Preprocessing(color_mode="L", input_size=(6, 8), mean=(0.0,), std=(1.0,))
    tensor = preprocess(decoded, gray)
    np.testing.assert_array_equal(tensor[0] * np.float32(255), np.round(values / 257).astype(np.float32))


def test_32_bit_integer_gray_is_read_as_16_bit_and_clipped_to_its_range():
    values = np.array([[-5, 0, 65535, 70000]], dtype=np.int32)
    gray = to_color_mode(Image.fromarray(values), color_mode="L", background=None)
    assert pixels(gray).tolist() == [[0, 0, 255, 255]]


def test_cmyk_is_converted_by_the_multiplicative_formula():
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 128], [100, 50, 0, 128], [0, 0, 0, 255]]], dtype=np.uint8)
    rgb = pixels(to_color_mode(Image.fromarray(cmyk, mode="CMYK"), color_mode="RGB", background=WHITE))
    expected = (255 - cmyk[..., :3].astype(int)) * (255 - cmyk[..., 3:].astype(int)) / 255
    assert np.abs(rgb - expected).max() <= 0.5  # R = (255 - C)(255 - K) / 255, rounded
    assert rgb[0, 4].tolist() == [0, 0, 0]  # full black ink is black, whatever C, M and Y say


def test_cmyk_jpeg_comes_out_as_its_colour():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 64)), "JPEG", quality=95)  # Adobe-inverted in the file
    rgb = pixels(to_color_mode(decode_image(data, LIMITS), color_mode="RGB", background=None))[8, 8]
    assert abs(rgb[0] - 191) <= 3 and rgb[1] <= 3 and rgb[2] <= 3  # red at 75 %: (255 - 0)(255 - 64) / 255
