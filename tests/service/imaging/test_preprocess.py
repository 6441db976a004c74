import msgspec
import numpy as np
import pytest
from PIL import Image

from service.imaging import ImageTooLarge, ImageTooSmall, preprocess, preprocess_into, resized_size
from service.repository.manifest import Preprocessing


def gray(size: tuple[int, int] = (28, 28), mean: float = 0.5, std: float = 0.25, resize: int | None = None):
    return Preprocessing(color_mode="L", input_size=size, mean=(mean,), std=(std,), resize=resize)


def colour(size: tuple[int, int] = (8, 8), resize: int | None = None):
    return Preprocessing(color_mode="RGB", input_size=size, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125), resize=resize)


def columns(width: int, height: int) -> Image.Image:
    """An "L" image whose pixel value is its column index: the crop offset can be read back."""
    return Image.fromarray(np.tile(np.arange(width, dtype=np.uint8), (height, 1)))


def test_gray_values_shape_and_layout():
    pixels = np.arange(28 * 28, dtype=np.int64).reshape(28, 28) % 256
    tensor = preprocess(Image.fromarray(pixels.astype(np.uint8)), gray())
    assert tensor.shape == (1, 28, 28) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    expected = (pixels.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.25)
    np.testing.assert_array_equal(tensor[0], expected)
    assert tensor.reshape(-1)[0] == -2.0 and tensor.reshape(-1)[255] == 2.0  # pixels 0 and 255


def test_rgb_channels_keep_their_own_mean_and_std():
    image = Image.new("RGB", (8, 8), (255, 0, 51))
    tensor = preprocess(image, colour())
    assert tensor.shape == (3, 8, 8) and tensor.flags.c_contiguous
    np.testing.assert_allclose(tensor[:, 0, 0], [(1 - 0.1) / 0.5, (0 - 0.2) / 0.25, (0.2 - 0.3) / 0.125], rtol=1e-6)
    assert (tensor == tensor[:, :1, :1]).all()


def test_colour_conversion_is_pils():
    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8), mode="RGBA")
    as_gray = preprocess(rgba, gray((8, 8), mean=0.0, std=1.0))
    np.testing.assert_array_equal(as_gray[0] * np.float32(255), np.asarray(rgba.convert("L"), dtype=np.float32))
    as_colour = preprocess(rgba.convert("L"), colour())  # gray to RGB: the same value in every channel
    assert np.allclose(as_colour[0] * 0.5 + 0.1, as_colour[1] * 0.25 + 0.2, atol=1e-6)


@pytest.mark.parametrize(("width", "crop", "left"), [(28, 28, 0), (31, 28, 2), (29, 28, 0), (33, 28, 2), (30, 28, 1)])
def test_center_crop_rounds_half_to_even(width, crop, left):
    tensor = preprocess(columns(width, 28), gray((28, crop), mean=0.0, std=1.0))
    first = round(float(tensor[0, 0, 0]) * 255)
    assert first == left
    assert round(float(tensor[0, 0, -1]) * 255) == left + crop - 1


def test_rectangular_input_size_is_height_by_width():
    tensor = preprocess(Image.new("L", (40, 30)), gray((20, 24)))
    assert tensor.shape == (1, 20, 24)


def test_resize_then_crop_matches_pil():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    preprocessing = msgspec.structs.replace(colour((16, 16), resize=20), interpolation="bicubic")
    assert resized_size(50, 30, 20) == (33, 20)
    expected = np.asarray(image.resize((33, 20), Image.Resampling.BICUBIC).crop((8, 2, 24, 18)), dtype=np.float32)
    tensor = preprocess(image, preprocessing)
    np.testing.assert_allclose(tensor[0] * 0.5 + 0.1, expected[:, :, 0] / 255, atol=1e-6)
    np.testing.assert_allclose(tensor[2] * 0.125 + 0.3, expected[:, :, 2] / 255, atol=1e-6)


def test_resize_up_to_the_input():
    tensor = preprocess(Image.new("L", (10, 14), 255), gray((28, 28), resize=28))
    assert tensor.shape == (1, 28, 28) and (tensor == 2.0).all()


@pytest.mark.parametrize(
    ("size", "shorter", "expected"),
    [
        ((100, 100), 32, (32, 32)),
        ((640, 480), 256, (341, 256)),
        ((480, 640), 256, (256, 341)),
        ((3, 1000), 2, (2, 666)),
    ],
)
def test_resized_size(size, shorter, expected):
    assert resized_size(size[0], size[1], shorter) == expected


def test_too_small_without_resize():
    with pytest.raises(ImageTooSmall, match=r"^the image is 20x28 \(w x h\), smaller than the model's input 28x28"):
        preprocess(Image.new("L", (20, 28)), gray())


def test_too_small_after_resize():
    with pytest.raises(ImageTooSmall, match="after resizing its shorter side to 24, smaller than the model's input"):
        preprocess(Image.new("L", (40, 40)), gray((28, 28), resize=24))


def test_extreme_aspect_ratio_is_refused_before_resizing():
    with pytest.raises(ImageTooLarge, match=r"^the image is 1x200000; resizing its shorter side to 224 would make it"):
        preprocess(Image.new("L", (1, 200_000)), gray((224, 224), resize=224))


def test_preprocess_into_fills_rows_of_a_batch_like_preprocess():
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(8, 8), (12, 9), (9, 20)]]
    batch = np.empty((3, 3, 8, 8), dtype=np.float32)
    for image, row in zip(images, batch, strict=True):
        preprocess_into(image, colour(), row)
    np.testing.assert_array_equal(batch, np.stack([preprocess(image, colour()) for image in images]))
